package esl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callctl/callctl/internal/sockq"
)

// Conn is one Event Socket connection, inbound (Dial) or outbound (Accept).
// It replaces eslgo's Conn, whose SendCommand takes "the next reply" from a
// channel shared by every caller (two commands in flight swap replies; a
// reply that arrives after its caller timed out is handed to the next one)
// and whose event listeners run in a goroutine per event (a channel's events
// are handled out of order).
//
// Here one goroutine reads the socket and handles every frame in the order
// FreeSWITCH sent it. FreeSWITCH answers the commands of one connection
// strictly in order, so each command pushes a waiter on a FIFO under the same
// lock as its write, and each reply pops the oldest waiter. A caller that
// gives up leaves its waiter in place, marked abandoned: the late reply is
// consumed by it, never by the next command.
//
// A Conn never reconnects: when it closes, its Handler is told once, and
// whoever opened it decides what comes next.
type Conn struct {
	nc net.Conn
	rd *Reader
	h  Handler

	wmu     sync.Mutex // guards writes and the order of pending
	pending []*waiter
	closed  bool
	err     error              // why it closed
	jobs    map[string]*waiter // bgapi jobs waiting for their BACKGROUND_JOB

	done chan struct{} // closed when the reader has stopped

	// readIdle, when set, probes a connection that sent nothing for that long
	// and closes it if it stays silent as long again.
	readIdle time.Duration
}

// Handler receives, on the connection's reader goroutine and in the order
// FreeSWITCH sent them, what is not a reply to a command. Its methods must
// not block, nor keep the event or frame they are given (their bytes are
// reused for the next frame).
type Handler interface {
	// OnEvent gets each event (a BACKGROUND_JOB of a job BGAPI waits for
	// goes to BGAPI instead). at is when it was read.
	OnEvent(ev *Event, at time.Time)
	// OnNotice gets text/disconnect-notice, text/rude-rejection and
	// auth/request frames.
	OnNotice(f *Frame, at time.Time)
	// OnClose runs once, after the socket is closed and every command
	// waiting on it has failed.
	OnClose(err error)
}

type waiter struct {
	ch        chan Reply
	abandoned atomic.Bool
}

// Reply is a command's answer: Reply-Text of a command/reply (and its
// Job-UUID, for bgapi), the body of an api/response, or the body of a
// BACKGROUND_JOB.
type Reply struct {
	Text  string
	JobID string
	err   error
}

// Failed reports whether the reply says the command failed (-ERR, -USAGE).
func (r Reply) Failed() bool {
	return strings.HasPrefix(r.Text, "-ERR") || strings.HasPrefix(r.Text, "-USAGE")
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan Reply, 1)} }}

// ErrClosed is returned for commands on a connection that is gone.
var ErrClosed = errors.New("event socket connection closed")

// ErrJobLost is returned by BGAPI when the connection closes before the
// job's BACKGROUND_JOB arrived (the job may still run on the server).
var ErrJobLost = fmt.Errorf("%w: connection lost before the job finished", ErrClosed)

// ErrCommandFailed wraps a -ERR reply.
var ErrCommandFailed = errors.New("command failed")

// NewConn wraps a connected socket; rd, when not nil, is the Reader the
// handshake used (it may hold bytes already read). Start runs it.
func NewConn(nc net.Conn, rd *Reader) *Conn {
	if rd == nil {
		rd = NewReader(nc)
	}
	return &Conn{nc: nc, rd: rd, done: make(chan struct{})}
}

// SetReadIdle makes the connection probe its peer ("api status") after d
// without a frame, and close when the peer stays silent as long again (the
// inbound connection normally gets a HEARTBEAT every 20 s). Call it before
// Start.
func (c *Conn) SetReadIdle(d time.Duration) { c.readIdle = d }

// Start runs the reader goroutine, handing h what it reads.
func (c *Conn) Start(h Handler) {
	c.h = h
	go c.readLoop()
}

// Done is closed once the reader has stopped (after Handler.OnClose).
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the connection closed (nil while it is open).
func (c *Conn) Err() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.err
}

// Unread is how many bytes the peer has sent that are not read yet; ok is
// false when the system cannot say.
func (c *Conn) Unread() (n int, ok bool) { return sockq.Unread(c.nc) }

func (c *Conn) readLoop() {
	var err error
	// One Event for the connection's life: handlers must not keep it (nor
	// the slices in it) after they return.
	ev := new(Event)
	probing := false
	for {
		if c.readIdle > 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.readIdle))
		}
		var f Frame
		f, err = c.rd.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !probing && c.readIdle > 0 {
				// Silent for a while (heartbeats may be turned off): ask
				// something; a live peer answers within another period.
				probing = true
				if c.Post([]byte("api status\n\n")) == nil {
					continue
				}
			}
			break
		}
		probing = false
		at := time.Now()
		ct, _ := f.Header.Lookup("Content-Type")
		switch string(ct) {
		case TypeReply:
			c.deliver(Reply{Text: f.Header.Get("Reply-Text"), JobID: f.Header.Get("Job-UUID")})
		case TypeAPIResponse:
			c.deliver(Reply{Text: string(f.Body)})
		case TypeEventPlain, TypeEventJSON:
			var perr error
			if *ev, perr = ParseEvent(&f); perr != nil {
				// One bad event is dropped; the stream itself is still in step.
				continue
			}
			if c.jobDone(ev) {
				continue
			}
			if c.h != nil {
				c.h.OnEvent(ev, at)
			}
		case TypeDisconnect, TypeRudeReject, TypeAuthRequest:
			if c.h != nil {
				c.h.OnNotice(&f, at)
			}
		}
	}
	c.shutdown(err)
	c.rd.Release()
	if c.h != nil {
		c.h.OnClose(c.Err())
	}
	close(c.done)
}

// deliver hands a reply to the oldest waiter.
func (c *Conn) deliver(r Reply) {
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

// jobDone hands a BACKGROUND_JOB to the BGAPI waiting for it, if any.
func (c *Conn) jobDone(ev *Event) bool {
	if !ev.Is("Event-Name", "BACKGROUND_JOB") {
		return false
	}
	id := ev.Get("Job-UUID")
	c.wmu.Lock()
	w := c.jobs[id]
	delete(c.jobs, id)
	c.wmu.Unlock()
	if w == nil {
		return false
	}
	w.ch <- Reply{Text: string(ev.Body), JobID: id}
	return true
}

// shutdown closes the socket and fails every pending command and job.
func (c *Conn) shutdown(err error) {
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
	jobs := c.jobs
	c.jobs = nil
	c.wmu.Unlock()
	_ = c.nc.Close()
	for _, w := range pend {
		if !w.abandoned.Load() {
			w.ch <- Reply{err: fmt.Errorf("%w: %v", ErrClosed, err)}
		}
	}
	for _, w := range jobs {
		w.ch <- Reply{err: ErrJobLost}
	}
}

// Close closes the connection; the reader goroutine ends soon after.
func (c *Conn) Close() { c.shutdown(ErrClosed) }

// Closed reports whether the connection is closed.
func (c *Conn) Closed() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.closed
}

const writeTimeout = 5 * time.Second

// Send writes n commands (already encoded, each ending with a blank line, see
// AppendCommand and friends) in one write, and waits for their replies in
// order. It returns the replies read so far; a -ERR reply is not an error
// here (callers decide).
func (c *Conn) Send(ctx context.Context, n int, msg []byte) ([]Reply, error) {
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
	out := make([]Reply, n)
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

// Command sends one command and returns its reply; a -ERR reply is an error
// wrapping ErrCommandFailed.
func (c *Conn) Command(ctx context.Context, msg []byte) (Reply, error) {
	rs, err := c.Send(ctx, 1, msg)
	if err != nil {
		return Reply{}, err
	}
	r := rs[0]
	if r.Failed() {
		return r, fmt.Errorf("%w: %s", ErrCommandFailed, strings.TrimSpace(r.Text))
	}
	return r, nil
}

// Post writes one command without waiting for its reply: for the reader
// goroutine (a Handler), which cannot wait for a reply it would have to read
// itself. The reply is consumed and dropped in order like any other.
func (c *Conn) Post(msg []byte) error {
	w := &waiter{ch: make(chan Reply, 1)}
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

// API runs "api <cmd> <args...>" and returns its output; a -ERR output is an
// error wrapping ErrCommandFailed (the output is returned too). Only for
// commands that answer at once: FreeSWITCH runs an api command on the
// connection's own thread, holding back every event and reply behind it.
func (c *Conn) API(ctx context.Context, cmd string, args ...string) (string, error) {
	buf := GetBuf()
	defer PutBuf(buf)
	parts := make([]string, 0, 2+len(args))
	parts = append(append(parts, "api", cmd), args...)
	var err error
	if *buf, err = AppendCommand(*buf, parts...); err != nil {
		return "", err
	}
	r, err := c.Command(ctx, *buf)
	return r.Text, err
}

// BGAPI runs "bgapi <cmd>" with the caller's Job-UUID and waits for its
// BACKGROUND_JOB (the connection must be subscribed to it); it returns the
// job's output. A -ERR output is an error wrapping ErrCommandFailed (the
// output is returned too). Job ids are the caller's, so that the result is
// matched by id, never by the order of replies.
func (c *Conn) BGAPI(ctx context.Context, jobID, cmd string) (string, error) {
	msg, err := AppendBGAPI(nil, jobID, cmd)
	if err != nil {
		return "", err
	}
	w := &waiter{ch: make(chan Reply, 1)}
	c.wmu.Lock()
	if c.jobs == nil {
		c.jobs = map[string]*waiter{}
	}
	c.jobs[jobID] = w
	c.wmu.Unlock()
	forget := func() {
		c.wmu.Lock()
		if c.jobs[jobID] == w {
			delete(c.jobs, jobID)
		}
		c.wmu.Unlock()
	}
	if _, err := c.Command(ctx, msg); err != nil {
		forget()
		return "", err
	}
	select {
	case r := <-w.ch:
		if r.err != nil {
			return "", r.err
		}
		if strings.HasPrefix(r.Text, "-ERR") {
			return r.Text, fmt.Errorf("%w: %s", ErrCommandFailed, strings.TrimSpace(r.Text))
		}
		return r.Text, nil
	case <-ctx.Done():
		forget()
		return "", ctx.Err()
	}
}

// cmdPool holds command buffers: a command is encoded, written and done with
// before Send returns, so its buffer can serve the next one.
var cmdPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// GetBuf returns an empty command buffer from a pool; PutBuf gives it back
// once the command is written.
func GetBuf() *[]byte { b := cmdPool.Get().(*[]byte); *b = (*b)[:0]; return b }

// PutBuf returns a buffer from GetBuf to the pool.
func PutBuf(b *[]byte) {
	if cap(*b) <= 4096 {
		cmdPool.Put(b)
	}
}
