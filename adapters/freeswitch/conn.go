package freeswitch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callctl/callctl/adapters/freeswitch/esl"
)

// conn is one Event Socket connection, inbound or outbound. It replaces
// eslgo's Conn, whose SendCommand takes "the next reply" from a channel shared
// by every caller (two commands in flight swap replies; a reply that arrives
// after its caller timed out is handed to the next one) and whose event
// listeners run in a goroutine per event (a call's events are handled out of
// order).
//
// Here one goroutine reads the socket and handles every frame in the order
// FreeSWITCH sent it. FreeSWITCH answers the commands of one connection
// strictly in order, so each command pushes a waiter on a FIFO under the same
// lock as its write, and each reply pops the oldest waiter. A caller that
// gives up leaves its waiter in place, marked abandoned: the late reply is
// consumed by it, never by the next command.
type conn struct {
	nc net.Conn
	rd *esl.Reader

	wmu     sync.Mutex // guards writes and the order of pending
	pending []*waiter
	closed  bool
	err     error // why it closed

	done chan struct{} // closed when the reader has stopped

	// onEvent and onNotice run on the reader goroutine; they must not block,
	// nor keep the event or frame they are given.
	onEvent  func(ev *esl.Event, at time.Time)
	onNotice func(f *esl.Frame, at time.Time)
	// onClose runs once on the reader goroutine after the socket is closed.
	onClose func(err error)
	// readIdle, when set, probes a connection that sent nothing for that long
	// and closes it if it stays silent as long again (the inbound connection
	// normally gets a HEARTBEAT every 20 s).
	readIdle time.Duration
}

type waiter struct {
	ch        chan reply
	abandoned atomic.Bool
}

// reply is a command's answer: Reply-Text for command/reply, the body for
// api/response.
type reply struct {
	text  string
	jobID string
	err   error
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan reply, 1)} }}

// ErrClosed is returned for commands on a connection that is gone.
var ErrClosed = errors.New("event socket connection closed")

// ErrCommandFailed wraps a -ERR reply.
var ErrCommandFailed = errors.New("command failed")

func newConn(nc net.Conn, rd *esl.Reader) *conn {
	if rd == nil {
		rd = esl.NewReader(nc)
	}
	return &conn{nc: nc, rd: rd, done: make(chan struct{})}
}

// start runs the reader goroutine.
func (c *conn) start() { go c.readLoop() }

func (c *conn) readLoop() {
	var err error
	// One Event for the connection's life: handlers must not keep it (nor
	// the slices in it) after they return.
	ev := new(esl.Event)
	probing := false
	for {
		if c.readIdle > 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.readIdle))
		}
		var f esl.Frame
		f, err = c.rd.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !probing && c.readIdle > 0 {
				// Silent for a while (heartbeats may be turned off): ask
				// something; a live peer answers within another period.
				probing = true
				if c.post([]byte("api status\n\n")) == nil {
					continue
				}
			}
			break
		}
		probing = false
		at := time.Now()
		ct, _ := f.Header.Lookup("Content-Type")
		switch string(ct) {
		case esl.TypeReply:
			c.deliver(reply{text: f.Header.Get("Reply-Text"), jobID: f.Header.Get("Job-UUID")})
		case esl.TypeAPIResponse:
			c.deliver(reply{text: string(f.Body)})
		case esl.TypeEventPlain, esl.TypeEventJSON:
			var perr error
			if *ev, perr = esl.ParseEvent(&f); perr != nil {
				// One bad event is dropped; the stream itself is still in step.
				continue
			}
			if c.onEvent != nil {
				c.onEvent(ev, at)
			}
		case esl.TypeDisconnect, esl.TypeRudeReject, esl.TypeAuthRequest:
			if c.onNotice != nil {
				c.onNotice(&f, at)
			}
		}
	}
	c.shutdown(err)
	c.rd.Release()
	if c.onClose != nil {
		c.onClose(c.err)
	}
	close(c.done)
}

// deliver hands a reply to the oldest waiter.
func (c *conn) deliver(r reply) {
	c.wmu.Lock()
	if len(c.pending) == 0 {
		c.wmu.Unlock()
		return // a reply nobody asked for: nothing to match it with
	}
	w := c.pending[0]
	copy(c.pending, c.pending[1:])
	c.pending[len(c.pending)-1] = nil
	c.pending = c.pending[:len(c.pending)-1]
	c.wmu.Unlock()
	if w.abandoned.Load() {
		return // its caller gave up; the reply dies with it
	}
	w.ch <- r
}

// shutdown closes the socket and fails every pending command.
func (c *conn) shutdown(err error) {
	c.wmu.Lock()
	if c.closed {
		c.wmu.Unlock()
		return
	}
	c.closed = true
	if err == nil {
		err = ErrClosed
	}
	c.err = err
	pend := c.pending
	c.pending = nil
	c.wmu.Unlock()
	_ = c.nc.Close()
	for _, w := range pend {
		if !w.abandoned.Load() {
			w.ch <- reply{err: fmt.Errorf("%w: %v", ErrClosed, err)}
		}
	}
}

// Close closes the connection; the reader goroutine ends soon after.
func (c *conn) Close() { c.shutdown(ErrClosed) }

// isClosed reports whether the connection is closed.
func (c *conn) isClosed() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.closed
}

const writeTimeout = 5 * time.Second

// send writes one or more commands (already encoded, each ending with a blank
// line) in one write, and waits for their replies in order. It returns the
// replies; a -ERR reply is not an error here (callers decide).
func (c *conn) send(ctx context.Context, n int, msg []byte) ([]reply, error) {
	ws := make([]*waiter, n)
	for i := range ws {
		w := waiterPool.Get().(*waiter)
		w.abandoned.Store(false)
		ws[i] = w
	}
	c.wmu.Lock()
	if c.closed {
		err := c.err
		c.wmu.Unlock()
		for _, w := range ws {
			waiterPool.Put(w)
		}
		return nil, fmt.Errorf("%w: %v", ErrClosed, err)
	}
	c.pending = append(c.pending, ws...)
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.nc.Write(msg)
	c.wmu.Unlock()
	if err != nil {
		// A partial write leaves the peer mid-command: the connection is done.
		c.shutdown(fmt.Errorf("write: %w", err))
	}
	out := make([]reply, n)
	for i, w := range ws {
		select {
		case r := <-w.ch:
			out[i] = r
			waiterPool.Put(w)
		case <-ctx.Done():
			for _, w := range ws[i:] {
				// The reader will consume and drop its reply; the waiter is not
				// reused (it may still receive).
				w.abandoned.Store(true)
			}
			return out[:i], ctx.Err()
		}
		if out[i].err != nil {
			for _, w := range ws[i+1:] {
				w.abandoned.Store(true)
			}
			return out[:i+1], out[i].err
		}
	}
	return out, nil
}

// command sends one command and returns its reply text; a -ERR reply is an
// error wrapping ErrCommandFailed.
func (c *conn) command(ctx context.Context, msg []byte) (reply, error) {
	rs, err := c.send(ctx, 1, msg)
	if err != nil {
		return reply{}, err
	}
	r := rs[0]
	if strings.HasPrefix(r.text, "-ERR") || strings.HasPrefix(r.text, "-USAGE") {
		return r, fmt.Errorf("%w: %s", ErrCommandFailed, strings.TrimSpace(r.text))
	}
	return r, nil
}

// post writes one command without waiting for its reply: for the reader
// goroutine, which cannot wait for a reply it would have to read itself. The
// reply is consumed and dropped in order like any other.
func (c *conn) post(msg []byte) error {
	w := &waiter{ch: make(chan reply, 1)}
	w.abandoned.Store(true)
	c.wmu.Lock()
	if c.closed {
		err := c.err
		c.wmu.Unlock()
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	c.pending = append(c.pending, w)
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.nc.Write(msg)
	c.wmu.Unlock()
	if err != nil {
		c.shutdown(fmt.Errorf("write: %w", err))
		return err
	}
	return nil
}

// msgPool holds command buffers: a command is encoded, written and done with
// before send returns, so its buffer can serve the next one.
var msgPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func getMsg() *[]byte { b := msgPool.Get().(*[]byte); *b = (*b)[:0]; return b }

func putMsg(b *[]byte) {
	if cap(*b) <= 4096 {
		msgPool.Put(b)
	}
}
