// Package esltest plays FreeSWITCH's side of Event Socket connections, for
// unit tests of code written over package esl: a Server fakes one
// FreeSWITCH, with outbound connections (Socket, a channel the dialplan
// handed over) and an inbound one (Inbound, api and bgapi), without a
// network.
//
// The test scripts it: each command callctl sends is recorded (Commands,
// WaitCommand) and answered by the first pending rule it matches (On), which
// may emit frames afterwards; frames can also be emitted directly (Emit).
// The frames emitted to the connections of a Server are handled in the
// order emitted, each on its connection's own goroutine (as a real
// connection's reader), which is one order FreeSWITCH could have used; Emit
// returns once the handlers have seen them. ReadTrace loads the recordings
// of real FreeSWITCH sessions, so that scripts replay what a real server
// sent.
package esltest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/callctl/callctl/adapters/freeswitch/esl"
)

// Command is one command as FreeSWITCH reads it: its first line ("sendmsg",
// "api uuid_kill <uuid> NORMAL_CLEARING", "bgapi originate ...") and its
// header lines.
type Command struct {
	Line    string
	Headers []string // "Name: value"
	// On is the connection it was sent on.
	On *Conn
}

// Get returns the value of header name, or "".
func (c Command) Get(name string) string {
	for _, h := range c.Headers {
		if k, v, ok := strings.Cut(h, ": "); ok && strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// String is the command as written, without the blank line ending it.
func (c Command) String() string {
	if len(c.Headers) == 0 {
		return c.Line
	}
	return c.Line + "\n" + strings.Join(c.Headers, "\n")
}

// Has reports whether the command's text contains every one of parts.
func (c Command) Has(parts ...string) bool {
	s := c.String()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// parseCommands splits what one write carried into its commands.
func parseCommands(msg []byte, on *Conn) []Command {
	var out []Command
	for _, block := range strings.Split(string(msg), "\n\n") {
		if block == "" {
			continue
		}
		lines := strings.Split(block, "\n")
		out = append(out, Command{Line: lines[0], Headers: lines[1:], On: on})
	}
	return out
}

// Rule answers the first command that matches it, once.
type Rule struct {
	// Match selects the command (on any connection of the server).
	Match func(Command) bool
	// Reply is the Reply-Text or api output ("+OK" when empty); for bgapi,
	// the job's output. A reply starting with -ERR fails the command.
	Reply string
	// Then is emitted, in order, after the reply.
	Then []Emit
}

// Emit is a frame to deliver on a connection: an event, or a notice.
type Emit struct {
	To    *Conn
	Frame esl.Frame
}

// Server is one fake FreeSWITCH.
type Server struct {
	mu    sync.Mutex
	rules []*Rule
	used  []bool
	cmds  []Command
	seen  chan struct{} // closed and replaced at each command

	// Default answers a command no rule matches ("+OK" when nil).
	Default func(Command) string

	queue chan func()
}

// NewServer starts a fake server; Close stops it.
func NewServer() *Server {
	s := &Server{seen: make(chan struct{}), queue: make(chan func(), 1024)}
	go func() {
		for fn := range s.queue {
			fn()
		}
	}()
	return s
}

// Close stops the server's emitter once what was emitted is delivered (its
// connections end when they are closed or dropped).
func (s *Server) Close() { close(s.queue) }

// On adds a rule: the first command that has every one of parts (see
// Command.Has) is answered with reply, then events are emitted.
func (s *Server) On(parts []string, reply string, then ...Emit) {
	s.OnFunc(func(c Command) bool { return c.Has(parts...) }, reply, then...)
}

// OnFunc adds a rule with its own matcher.
func (s *Server) OnFunc(match func(Command) bool, reply string, then ...Emit) {
	s.mu.Lock()
	s.rules = append(s.rules, &Rule{Match: match, Reply: reply, Then: then})
	s.used = append(s.used, false)
	s.mu.Unlock()
}

// answer records cmd and finds its reply and what follows it.
func (s *Server) answer(cmd Command) (string, []Emit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cmds = append(s.cmds, cmd)
	close(s.seen)
	s.seen = make(chan struct{})
	for i, r := range s.rules {
		if !s.used[i] && r.Match(cmd) {
			s.used[i] = true
			reply := r.Reply
			if reply == "" {
				reply = "+OK"
			}
			return reply, r.Then
		}
	}
	if s.Default != nil {
		return s.Default(cmd), nil
	}
	return "+OK", nil
}

// Commands returns every command received so far, in order.
func (s *Server) Commands() []Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Command(nil), s.cmds...)
}

// WaitCommand waits until a command with every one of parts has been
// received (it may have been already) and returns the first such.
func (s *Server) WaitCommand(ctx context.Context, parts ...string) (Command, error) {
	for {
		s.mu.Lock()
		for _, c := range s.cmds {
			if c.Has(parts...) {
				s.mu.Unlock()
				return c, nil
			}
		}
		seen := s.seen
		s.mu.Unlock()
		select {
		case <-seen:
		case <-ctx.Done():
			return Command{}, fmt.Errorf("no command with %q: %w", parts, ctx.Err())
		}
	}
}

// Emit delivers frames in order, each to its connection's handler, and
// returns once the last was handled.
func (s *Server) Emit(es ...Emit) {
	done := make(chan struct{})
	s.emit(es, done)
	<-done
}

// emit queues frames: the emitter hands each to its connection's own
// goroutine and waits until it is handled before the next, so that frames
// are handled in the order emitted across connections, while a connection's
// end (Drop) runs on that connection's goroutine as a real reader's does.
func (s *Server) emit(es []Emit, done chan struct{}) {
	s.queue <- func() {
		for _, e := range es {
			handled := make(chan struct{})
			select {
			case e.To.q <- func() { e.To.deliver(e.Frame); close(handled) }:
				select {
				case <-handled:
				case <-e.To.done: // it ended before this frame's turn
				}
			case <-e.To.done:
			}
		}
		if done != nil {
			close(done)
		}
	}
}

// Conn is one fake connection of a Server: it implements what package esl's
// Conn offers callctl's adapter (commands, api, bgapi, events, its end).
type Conn struct {
	srv *Server
	// Data is an outbound connection's channel data (the connect reply's
	// headers).
	Data esl.Headers

	mu      sync.Mutex
	h       esl.Handler
	closed  bool // no more commands
	ended   bool // no more frames: the handler was told it closed
	err     error
	done    chan struct{}
	q       chan func()       // run in order on the connection's goroutine
	appUUID map[string]string // application -> the Event-UUID it was sent with
}

func (s *Server) newConn(data esl.Headers) *Conn {
	c := &Conn{srv: s, Data: data, done: make(chan struct{}), q: make(chan func(), 64), appUUID: map[string]string{}}
	go func() {
		for {
			select {
			case fn := <-c.q:
				fn()
			case <-c.done:
				return
			}
		}
	}()
	return c
}

// Socket returns an outbound connection for the channel whose connect reply
// is data (a command/reply frame, as ReadTrace returns it).
func (s *Server) Socket(data esl.Frame) *Conn { return s.newConn(data.Header) }

// Inbound returns an inbound connection (already authenticated and
// subscribed).
func (s *Server) Inbound() *Conn { return s.newConn(nil) }

// Start sets the handler frames are delivered to.
func (c *Conn) Start(h esl.Handler) {
	c.mu.Lock()
	c.h = h
	c.mu.Unlock()
}

// Subscribe sends myevents and linger, as esl.Conn.Subscribe does.
func (c *Conn) Subscribe(ctx context.Context) error {
	rs, err := c.Send(ctx, 2, []byte("myevents plain\n\nlinger\n\n"))
	if err != nil {
		return err
	}
	for _, r := range rs {
		if !strings.HasPrefix(r.Text, "+OK") {
			return fmt.Errorf("%w: %s", esl.ErrCommandFailed, r.Text)
		}
	}
	return nil
}

// Send records n commands and answers each by the script; what the rules
// emit is queued behind the replies.
func (c *Conn) Send(ctx context.Context, n int, msg []byte) ([]esl.Reply, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cmds := parseCommands(msg, c)
	if len(cmds) != n {
		return nil, fmt.Errorf("esltest: %d commands written, %d replies awaited", len(cmds), n)
	}
	c.mu.Lock()
	if c.closed {
		err := c.err
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %v", esl.ErrClosed, err)
	}
	for _, cmd := range cmds {
		if app := cmd.Get("execute-app-name"); app != "" {
			c.appUUID[app] = cmd.Get("Event-UUID")
		}
	}
	c.mu.Unlock()
	out := make([]esl.Reply, 0, n)
	for _, cmd := range cmds {
		reply, then := c.srv.answer(cmd)
		out = append(out, esl.Reply{Text: reply})
		if len(then) > 0 {
			c.srv.emit(then, nil)
		}
	}
	return out, nil
}

// Command sends one command; a -ERR reply is an error wrapping
// esl.ErrCommandFailed.
func (c *Conn) Command(ctx context.Context, msg []byte) (esl.Reply, error) {
	rs, err := c.Send(ctx, 1, msg)
	if err != nil {
		return esl.Reply{}, err
	}
	if rs[0].Failed() {
		return rs[0], fmt.Errorf("%w: %s", esl.ErrCommandFailed, strings.TrimSpace(rs[0].Text))
	}
	return rs[0], nil
}

// Post sends a command without waiting for its reply.
func (c *Conn) Post(msg []byte) error {
	_, err := c.Send(context.Background(), len(parseCommands(msg, c)), msg)
	return err
}

// API runs "api <cmd> <args...>".
func (c *Conn) API(ctx context.Context, cmd string, args ...string) (string, error) {
	msg, err := esl.AppendCommand(nil, append([]string{"api", cmd}, args...)...)
	if err != nil {
		return "", err
	}
	r, err := c.Command(ctx, msg)
	return r.Text, err
}

// BGAPI runs "bgapi <cmd>": the matching rule's reply is the job's output.
func (c *Conn) BGAPI(ctx context.Context, jobID, cmd string) (string, error) {
	msg, err := esl.AppendBGAPI(nil, jobID, cmd)
	if err != nil {
		return "", err
	}
	r, err := c.Command(ctx, msg)
	if err != nil && !strings.HasPrefix(r.Text, "-ERR") {
		return "", err
	}
	return r.Text, err
}

// Drop closes the connection from FreeSWITCH's side (the socket is lost),
// after the frames already handed to it; its handler's OnClose runs on its
// own goroutine.
func (c *Conn) Drop(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.err = err
	c.mu.Unlock()
	c.q <- c.closeNow
}

// Close closes the connection from callctl's side.
func (c *Conn) Close() { c.Drop(esl.ErrClosed) }

func (c *Conn) closeNow() {
	c.mu.Lock()
	h, err := c.h, c.err
	c.ended = true
	c.mu.Unlock()
	if h != nil {
		h.OnClose(err)
	}
	close(c.done)
}

// Closed reports whether the connection is closed.
func (c *Conn) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Done is closed once the handler has been told the connection closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the connection closed.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Unread is 0: a fake has no socket buffer.
func (c *Conn) Unread() (int, bool) { return 0, true }

// deliver hands one frame to the handler, on the server's delivery
// goroutine. An event of an application callctl executed with an Event-UUID
// carries that id as Application-UUID, as FreeSWITCH's do.
func (c *Conn) deliver(f esl.Frame) {
	c.mu.Lock()
	h, ended := c.h, c.ended
	c.mu.Unlock()
	if h == nil || ended {
		return
	}
	switch f.ContentType() {
	case esl.TypeEventPlain, esl.TypeEventJSON:
		ev, err := esl.ParseEvent(&f)
		if err != nil {
			panic(fmt.Sprintf("esltest: emitted a malformed event: %v", err))
		}
		if app := ev.Get("Application"); app != "" && f.ContentType() == esl.TypeEventPlain {
			c.mu.Lock()
			id := c.appUUID[app]
			c.mu.Unlock()
			if id != "" {
				f = Edit(f, "Application-UUID: "+id)
				ev, _ = esl.ParseEvent(&f)
			}
		}
		h.OnEvent(&ev, time.Now())
	default:
		h.OnNotice(&f, time.Now())
	}
}
