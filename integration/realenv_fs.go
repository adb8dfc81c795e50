package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// fsSide is the suite's inbound event socket connection to one FreeSWITCH.
// A test call is an originate of loopback/<dialed>/<context> with the
// caller's number: the -b half runs the context, whose socket application
// hands it to callctl as a call from a phone; the -a half is the caller, and
// its events say what the caller experiences. Every CHANNEL_CREATE,
// CHANNEL_ANSWER and CHANNEL_HANGUP_COMPLETE of the server goes to the
// channel log.
//
// It is written from the recorded transcripts (traces/freeswitch, a2 and
// d2 above all) and shares no code with callctl's adapter, so that a
// misreading there is not copied here.
type fsSide struct {
	server string
	rs     *RealServer
	log    *slog.Logger
	conn   net.Conn

	cmdMu   sync.Mutex // one command at a time: FreeSWITCH replies in order
	replies chan eslFrame

	chans *chanLog
	mu    sync.Mutex // calls, jobs, originates
	calls map[string]*RealCall
	jobs  map[string]chan map[string]any
	// originates maps an originate's Job-UUID to its call.
	originates map[string]*RealCall

	switchname string
	done       chan struct{}
	doneOnce   sync.Once
	doneErr    error
	wg         sync.WaitGroup
}

// eslFrame is one frame: its header block and its body.
type eslFrame struct {
	hdr  map[string]string
	body []byte
}

const (
	eslMaxLine  = 64 << 10
	eslMaxBody  = 16 << 20
	eslMaxLines = 4096
)

// readESLFrame reads a header block (ended by an empty line) and the
// Content-Length bytes after it.
func readESLFrame(r *bufio.Reader) (eslFrame, error) {
	f := eslFrame{hdr: map[string]string{}}
	for lines := 0; ; lines++ {
		if lines > eslMaxLines {
			return f, errors.New("event socket: header block too long")
		}
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return f, fmt.Errorf("event socket: header line over %d bytes", eslMaxLine)
		}
		if err != nil {
			return f, err
		}
		s := strings.TrimRight(string(line), "\r\n")
		if s == "" {
			if len(f.hdr) == 0 {
				continue // stray blank line between frames
			}
			break
		}
		k, v, ok := strings.Cut(s, ":")
		if !ok {
			return f, fmt.Errorf("event socket: malformed header line %q", s)
		}
		f.hdr[k] = strings.TrimSpace(v)
	}
	if cl, ok := f.hdr["Content-Length"]; ok {
		n, err := strconv.Atoi(cl)
		if err != nil || n < 0 || n > eslMaxBody {
			return f, fmt.Errorf("event socket: bad Content-Length %q", cl)
		}
		f.body = make([]byte, n)
		if _, err := io.ReadFull(r, f.body); err != nil {
			return f, fmt.Errorf("event socket: body: %w", err)
		}
	}
	return f, nil
}

// dialFS connects, authenticates, subscribes and learns the server's
// switchname.
func dialFS(ctx context.Context, server string, rs *RealServer, log *slog.Logger) (*fsSide, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", rs.Addr)
	if err != nil {
		return nil, fmt.Errorf("%s: event socket %s: %w", rs.Var, rs.Addr, err)
	}
	c := &fsSide{server: server, rs: rs, log: log.With("side", "freeswitch", "server", server), conn: conn,
		replies: make(chan eslFrame, 4), chans: newChanLog(), calls: map[string]*RealCall{},
		jobs: map[string]chan map[string]any{}, originates: map[string]*RealCall{}, done: make(chan struct{})}
	r := bufio.NewReaderSize(conn, eslMaxLine)
	if err := c.login(ctx, r); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: %w", rs.Var, err)
	}
	c.wg.Add(1)
	go c.readLoop(r)
	fail := func(err error) (*fsSide, error) {
		c.Close()
		return nil, fmt.Errorf("%s: %w", rs.Var, err)
	}
	if f, err := c.command(ctx, "event json CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE BACKGROUND_JOB"); err != nil {
		return fail(err)
	} else if !strings.HasPrefix(f.hdr["Reply-Text"], "+OK") {
		return fail(fmt.Errorf("event subscription refused: %s", f.hdr["Reply-Text"]))
	}
	// Every event carries FreeSWITCH-Switchname; a background job's is the
	// first one the suite can ask for.
	ev, err := c.job(ctx, "status")
	if err != nil {
		return fail(err)
	}
	c.switchname, _ = ev["FreeSWITCH-Switchname"].(string)
	return c, nil
}

// job runs a background api command and returns its BACKGROUND_JOB event.
func (c *fsSide) job(ctx context.Context, cmd string) (map[string]any, error) {
	job := newID()
	wait := make(chan map[string]any, 1)
	c.mu.Lock()
	c.jobs[job] = wait
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.jobs, job)
		c.mu.Unlock()
	}()
	if _, err := c.command(ctx, "bgapi "+cmd, "Job-UUID: "+job); err != nil {
		return nil, err
	}
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case ev := <-wait:
		return ev, nil
	case <-c.done:
		return nil, c.doneErr
	case <-t.C:
		return nil, fmt.Errorf("no BACKGROUND_JOB for bgapi %s within 10 s", cmd)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Sync: FreeSWITCH delivers a connection's events in the order it raised
// them, so once a job started now reports, everything before it was read.
func (c *fsSide) Sync(ctx context.Context) error {
	_, err := c.job(ctx, "status")
	return err
}

func (c *fsSide) login(ctx context.Context, r *bufio.Reader) error {
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.conn.SetDeadline(deadline)
	defer c.conn.SetDeadline(time.Time{})
	f, err := readESLFrame(r)
	if err != nil {
		return fmt.Errorf("event socket greeting: %w", err)
	}
	if f.hdr["Content-Type"] != "auth/request" {
		return fmt.Errorf("event socket greeting is %q, not auth/request", f.hdr["Content-Type"])
	}
	if strings.ContainsAny(c.rs.Password, "\r\n") {
		return errors.New("the event socket password holds a line break")
	}
	if _, err := io.WriteString(c.conn, "auth "+c.rs.Password+"\n\n"); err != nil {
		return err
	}
	f, err = readESLFrame(r)
	if err != nil {
		return fmt.Errorf("event socket auth: %w", err)
	}
	if f.hdr["Reply-Text"] != "+OK accepted" {
		return fmt.Errorf("event socket refused the password (%s=...): %q", EnvFSPassword, f.hdr["Reply-Text"])
	}
	return nil
}

func (c *fsSide) readLoop(r *bufio.Reader) {
	defer c.wg.Done()
	for {
		f, err := readESLFrame(r)
		if err != nil {
			c.fail(fmt.Errorf("event socket: %w", err))
			return
		}
		switch f.hdr["Content-Type"] {
		case "command/reply", "api/response":
			select {
			case c.replies <- f:
			default:
				// Only a command that gave up waiting leaves a reply behind,
				// and giving up closes the connection.
				c.log.Warn("event socket reply nobody waits for", "reply", f.hdr["Reply-Text"])
			}
		case "text/event-json":
			c.event(f.body)
		case "text/disconnect-notice":
			c.fail(errors.New("FreeSWITCH closed the event socket"))
			return
		}
	}
}

// fail ends the connection once; calls still up end with the reason.
func (c *fsSide) fail(err error) {
	c.doneOnce.Do(func() {
		c.doneErr = err
		close(c.done)
		c.conn.Close()
		c.mu.Lock()
		calls := make([]*RealCall, 0, len(c.calls))
		for _, call := range c.calls {
			calls = append(calls, call)
		}
		c.mu.Unlock()
		for _, call := range calls {
			call.markEnded(-1, "suite lost the event socket: "+err.Error())
		}
	})
}

// command sends one command (and extra header lines) and returns its reply.
func (c *fsSide) command(ctx context.Context, cmd string, extra ...string) (eslFrame, error) {
	if strings.ContainsAny(cmd, "\r\n") {
		return eslFrame{}, fmt.Errorf("command %q holds a line break", cmd)
	}
	c.cmdMu.Lock()
	defer c.cmdMu.Unlock()
	var b strings.Builder
	b.WriteString(cmd)
	b.WriteByte('\n')
	for _, h := range extra {
		b.WriteString(h)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.conn, b.String()); err != nil {
		c.fail(fmt.Errorf("write %q: %w", cmd, err))
		return eslFrame{}, fmt.Errorf("%s: %w", cmd, err)
	}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case f := <-c.replies:
		return f, nil
	case <-c.done:
		return eslFrame{}, fmt.Errorf("%s: %w", cmd, c.doneErr)
	case <-ctx.Done():
		c.fail(fmt.Errorf("gave up waiting for the reply to %q", cmd))
		return eslFrame{}, fmt.Errorf("%s: %w", cmd, ctx.Err())
	case <-t.C:
		c.fail(fmt.Errorf("no reply to %q within 30 s", cmd))
		return eslFrame{}, fmt.Errorf("%s: no reply within 30 s", cmd)
	}
}

func (c *fsSide) event(body []byte) {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		c.log.Warn("event socket: undecodable event", "err", err)
		return
	}
	str := func(k string) string { s, _ := m[k].(string); return s }
	uuid := str("Unique-ID")
	now := time.Now()
	var call *RealCall
	switch str("Event-Name") {
	case "CHANNEL_CREATE":
		c.chans.mu.Lock()
		c.chans.touch(uuid, str("Channel-Name"), str("Caller-Caller-ID-Number"), now)
		c.chans.mu.Unlock()
	case "CHANNEL_ANSWER":
		c.chans.mu.Lock()
		ch := c.chans.touch(uuid, str("Channel-Name"), str("Caller-Caller-ID-Number"), now)
		if ch.Answered.IsZero() {
			ch.Answered = now
		}
		c.chans.mu.Unlock()
		c.mu.Lock()
		call = c.calls[uuid]
		c.mu.Unlock()
		if call != nil {
			call.markAnswered()
		}
	case "CHANNEL_HANGUP_COMPLETE":
		cause, _ := strconv.Atoi(str("variable_hangup_cause_q850"))
		c.chans.mu.Lock()
		ch := c.chans.touch(uuid, str("Channel-Name"), str("Caller-Caller-ID-Number"), now)
		ch.Ended, ch.Cause = now, cause
		c.chans.mu.Unlock()
		c.mu.Lock()
		call = c.calls[uuid]
		delete(c.calls, uuid)
		c.mu.Unlock()
		if call != nil {
			call.markEnded(cause, str("Hangup-Cause"))
		}
	case "BACKGROUND_JOB":
		job := str("Job-UUID")
		c.mu.Lock()
		w := c.jobs[job]
		delete(c.jobs, job)
		call = c.originates[job]
		delete(c.originates, job)
		c.mu.Unlock()
		if w != nil {
			w <- m
		}
		if call == nil {
			return
		}
		// An originate that failed before its channel existed has no
		// CHANNEL_HANGUP_COMPLETE to end the call: its job's -ERR does.
		res := strings.TrimSpace(str("_body"))
		if name, failed := strings.CutPrefix(res, "-ERR "); failed {
			c.chans.mu.Lock()
			_, seen := c.chans.byID[call.ID]
			c.chans.mu.Unlock()
			if !seen {
				c.mu.Lock()
				delete(c.calls, call.ID)
				c.mu.Unlock()
				call.markEnded(q850ByName[name], name)
			}
		}
	}
}

// q850ByName maps the causes an originate may report to their Q.850 codes.
var q850ByName = map[string]int{
	"UNALLOCATED_NUMBER": 1, "NO_ROUTE_DESTINATION": 3, "NORMAL_CLEARING": 16, "USER_BUSY": 17,
	"NO_USER_RESPONSE": 18, "NO_ANSWER": 19, "SUBSCRIBER_ABSENT": 20, "CALL_REJECTED": 21,
	"DESTINATION_OUT_OF_ORDER": 27, "INVALID_NUMBER_FORMAT": 28, "NORMAL_UNSPECIFIED": 31,
	"NORMAL_CIRCUIT_CONGESTION": 34, "NORMAL_TEMPORARY_FAILURE": 41, "ORIGINATOR_CANCEL": 487,
	"USER_NOT_REGISTERED": 606,
}

// Place originates the test call: {origination_uuid, caller's number}
// loopback/<dialed>/<context> &park(). The -a leg (our uuid) is the caller.
func (c *fsSide) Place(ctx context.Context, from, dialed string) (*RealCall, error) {
	if err := checkDigits(from, dialed); err != nil {
		return nil, err
	}
	id, job := newID(), newID()
	call := newRealCall(c.server, from, dialed, id)
	call.hangup = func(ctx context.Context) error {
		f, err := c.command(ctx, "api uuid_kill "+id)
		if err != nil {
			return err
		}
		if res := strings.TrimSpace(string(f.body)); !strings.HasPrefix(res, "+OK") && !call.Ended() {
			return fmt.Errorf("uuid_kill %s: %s", id, res)
		}
		return nil
	}
	c.mu.Lock()
	c.calls[id] = call
	c.originates[job] = call
	c.mu.Unlock()
	cmd := fmt.Sprintf("bgapi originate {origination_uuid=%s,origination_caller_id_number=%s}loopback/%s/%s &park()",
		id, from, dialed, c.rs.Context)
	f, err := c.command(ctx, cmd, "Job-UUID: "+job)
	if err == nil && !strings.HasPrefix(f.hdr["Reply-Text"], "+OK") {
		err = fmt.Errorf("bgapi originate refused: %s", f.hdr["Reply-Text"])
	}
	if err != nil {
		c.mu.Lock()
		delete(c.calls, id)
		delete(c.originates, job)
		c.mu.Unlock()
		return nil, fmt.Errorf("%s: call %s -> %s: %w", c.rs.Var, from, dialed, err)
	}
	c.log.Debug("test call placed", "call", id, "from", from, "dialed", dialed)
	return call, nil
}

func (c *fsSide) Channels() []Channel { return c.chans.list() }

// Kill hangs a channel up from the server (the far end of a SIP caller then
// gets a BYE).
func (c *fsSide) Kill(ctx context.Context, id string) error {
	if !validChannelID(id) {
		return fmt.Errorf("channel id %q", id)
	}
	f, err := c.command(ctx, "api uuid_kill "+id)
	if err != nil {
		return err
	}
	if res := strings.TrimSpace(string(f.body)); !strings.HasPrefix(res, "+OK") {
		return fmt.Errorf("uuid_kill %s: %s", id, res)
	}
	return nil
}

// Transfer is uuid_transfer <id> <dest> XML <context>.
func (c *fsSide) Transfer(ctx context.Context, id, dest, context string) error {
	if !validChannelID(id) || checkDigits("0", dest) != nil || !validAppName(context) {
		return fmt.Errorf("uuid_transfer %q %q %q: not a channel, digits and a context", id, dest, context)
	}
	f, err := c.command(ctx, "api uuid_transfer "+id+" "+dest+" XML "+context)
	if err != nil {
		return err
	}
	if res := strings.TrimSpace(string(f.body)); !strings.HasPrefix(res, "+OK") {
		return fmt.Errorf("uuid_transfer %s: %s", id, res)
	}
	return nil
}

// AttXfer makes the phone on channel id consult dialed as an attended
// transfer, as an operator's binding does: uuid_broadcast <id>
// att_xfer::loopback/<dialed>/<context>. FreeSWITCH originates the
// consultation from that channel into callctl (the phones' context); the
// phone's channel hanging up joins its partner with the consulted party.
func (c *fsSide) AttXfer(ctx context.Context, id, dialed string) error {
	if !validChannelID(id) || checkDigits("0", dialed) != nil {
		return fmt.Errorf("att_xfer %q %q: not a channel and digits", id, dialed)
	}
	f, err := c.command(ctx, "api uuid_broadcast "+id+" att_xfer::loopback/"+dialed+"/"+c.rs.Context+" aleg")
	if err != nil {
		return err
	}
	if res := strings.TrimSpace(string(f.body)); !strings.HasPrefix(res, "+OK") {
		return fmt.Errorf("uuid_broadcast %s att_xfer: %s", id, res)
	}
	return nil
}

// RecvDTMF makes channel id receive digits as if its phone pressed them
// (uuid_recv_dtmf): att_xfer's keys (# cancels the consultation).
func (c *fsSide) RecvDTMF(ctx context.Context, id, digits string) error {
	if !validChannelID(id) || checkDigits("0", digits) != nil {
		return fmt.Errorf("uuid_recv_dtmf %q %q: not a channel and digits", id, digits)
	}
	f, err := c.command(ctx, "api uuid_recv_dtmf "+id+" "+digits)
	if err != nil {
		return err
	}
	if res := strings.TrimSpace(string(f.body)); !strings.HasPrefix(res, "+OK") {
		return fmt.Errorf("uuid_recv_dtmf %s: %s", id, res)
	}
	return nil
}

// Close closes the connection and waits for its reader.
func (c *fsSide) Close() {
	c.fail(errors.New("closed by the suite"))
	c.wg.Wait()
}
