package esl

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/percipia/eslgo/command"
)

// What is used of eslgo v1.5.2: its command types (command.Auth, Event,
// Filter, Connect, MyEvents, Linger), to format the setup commands of both
// kinds of connection. They are plain string builders and sound, though
// they check nothing: every line they build goes through the same check as
// callctl's own commands (AppendCommand), so that a password or value
// carrying a line break cannot smuggle a second command in. Its Linger
// formats a number of seconds as a Duration's nanoseconds, so it is used
// without one (linger until the socket closes).
//
// What is not used: its connections (see Conn) and its frame reader (see
// Reader), for the reasons given there; its inbound client does not
// reconnect and its outbound listener cannot be stopped.

// setup builds one command line with eslgo and frames it.
func setup(c command.Command) ([]byte, error) {
	line := c.BuildMessage()
	parts := strings.Split(line, " ")
	msg, err := AppendCommand(nil, parts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", parts[0], err)
	}
	return msg, nil
}

// Outbound socket: connect (the reply is the channel data), then this
// channel's events and lingering, so that the last events arrive after the
// hangup.
var (
	connectCmd      = must(setup(command.Connect{}))
	eventsAndLinger = must(setupAll(command.MyEvents{Format: "plain"}, command.Linger{Enabled: true}))
)

// setupAll frames several commands, for one write.
func setupAll(cs ...command.Command) ([]byte, error) {
	var out []byte
	for _, c := range cs {
		msg, err := setup(c)
		if err != nil {
			return nil, err
		}
		out = append(out, msg...)
	}
	return out, nil
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err) // constant commands: a failure is a programming error
	}
	return b
}

// Filter is one "filter <header> <value>" of an inbound subscription:
// FreeSWITCH passes an event that matches any of them.
type Filter struct{ Header, Value string }

// DialConfig describes an inbound connection (FreeSWITCH's :8021).
type DialConfig struct {
	Address, Password string
	// Events are subscribed to as "event plain <names...>"; Filters follow.
	Events  []string
	Filters []Filter
	// MaxBody bounds one api response or event (DefaultMaxBody when 0).
	MaxBody int
	// ReadIdle: see Conn.SetReadIdle.
	ReadIdle time.Duration
}

// Dial connects to FreeSWITCH's inbound Event Socket, authenticates and
// subscribes, and returns the connection, not yet started (see Start). The
// handshake is bounded by 10 s and by ctx.
func Dial(ctx context.Context, cfg DialConfig) (*Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", cfg.Address)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) })
	defer stop()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	rd := NewReader(nc)
	if cfg.MaxBody > 0 {
		rd.MaxBody = cfg.MaxBody
	}
	fail := func(err error) (*Conn, error) {
		rd.Release()
		_ = nc.Close()
		return nil, err
	}
	f, err := rd.ReadFrame()
	if err != nil {
		return fail(fmt.Errorf("reading the greeting: %w", err))
	}
	if ct := f.ContentType(); ct != TypeAuthRequest {
		return fail(fmt.Errorf("greeting is %q, not auth/request", ct))
	}
	msg, err := setup(command.Auth{Password: cfg.Password})
	if err != nil {
		return fail(fmt.Errorf("password: %w", err))
	}
	if err := exchange(nc, rd, msg, "auth"); err != nil {
		return fail(err)
	}
	subs := []command.Command{command.Event{Format: "plain", Listen: cfg.Events}}
	for _, f := range cfg.Filters {
		subs = append(subs, command.Filter{EventHeader: f.Header, FilterValue: f.Value})
	}
	for _, cmd := range subs {
		msg, err := setup(cmd)
		if err != nil {
			return fail(err)
		}
		if err := exchange(nc, rd, msg, strings.Fields(cmd.BuildMessage())[0]); err != nil {
			return fail(err)
		}
	}
	_ = nc.SetDeadline(time.Time{})
	c := NewConn(nc, rd)
	c.readIdle = cfg.ReadIdle
	return c, nil
}

// exchange sends msg and reads its command/reply during the handshake (no
// events are subscribed yet, so the next frame is the reply).
func exchange(nc net.Conn, rd *Reader, msg []byte, what string) error {
	if _, err := nc.Write(msg); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		switch f.ContentType() {
		case TypeReply:
			if r := f.Header.Get("Reply-Text"); !strings.HasPrefix(r, "+OK") {
				return fmt.Errorf("%s refused: %s", what, strings.TrimSpace(r))
			}
			return nil
		case TypeDisconnect, TypeRudeReject:
			return fmt.Errorf("%s: %s %s", what, f.ContentType(), strings.TrimSpace(string(f.Body)))
		}
	}
}

// Accept starts an outbound connection (FreeSWITCH's socket application
// connected to callctl): it sends connect and returns the connection, not yet
// started, with the reply's headers, the channel data. The headers are valid
// until Start. The socket's deadline stays set to deadline until Subscribe.
// log, when set, gets the frames that come before the reply.
func Accept(nc net.Conn, deadline time.Time, log *slog.Logger) (*Conn, Headers, error) {
	_ = nc.SetDeadline(deadline)
	if _, err := nc.Write(connectCmd); err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	rd := NewReader(nc)
	var f Frame
	var err error
	for {
		if f, err = rd.ReadFrame(); err != nil {
			rd.Release()
			return nil, nil, fmt.Errorf("connect reply: %w", err)
		}
		if f.ContentType() == TypeReply {
			break
		}
		if log != nil {
			log.Debug("frame before the connect reply", "content_type", f.ContentType(), "body", string(f.Body))
		}
	}
	if r := f.Header.Get("Reply-Text"); !strings.HasPrefix(r, "+OK") {
		rd.Release()
		return nil, nil, fmt.Errorf("connect refused: %q", strings.TrimSpace(r))
	}
	return NewConn(nc, rd), f.Header, nil
}

// Subscribe asks, on a started outbound connection, for the channel's events
// (myevents plain) and for lingering (the socket stays open after the hangup
// until callctl closes it, so no event of the end is lost), in one write,
// then clears the deadline Accept set.
func (c *Conn) Subscribe(ctx context.Context) error {
	replies, err := c.Send(ctx, 2, eventsAndLinger)
	if err == nil {
		for _, r := range replies {
			if !strings.HasPrefix(r.Text, "+OK") {
				err = fmt.Errorf("%w: %s", ErrCommandFailed, strings.TrimSpace(r.Text))
			}
		}
	}
	_ = c.nc.SetDeadline(time.Time{})
	return err
}

// Abort closes a connection that was never started (a handshake that
// failed), releasing its reader.
func (c *Conn) Abort() {
	c.shutdown(ErrClosed)
	c.rd.Release()
}
