package freeswitch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/callctl/callctl/adapters/freeswitch/esl"
	"github.com/callctl/callctl/controller"
)

// MediaServerConfig describes one FreeSWITCH server.
type MediaServerConfig struct {
	// Name is the server's name in the plan (CallInfo.Server).
	Name string
	// Address and Password of its inbound Event Socket (":8021", ClueCon).
	Address  string
	Password string
	// Context is the dialplan context Handoff transfers calls to
	// (default "default").
	Context string
	// Switchname is the FreeSWITCH-Switchname its outbound connections carry;
	// empty means Name.
	Switchname string
	// Domain completes user/<ext> endpoints without a domain for
	// sofia_contact.
	Domain string

	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the reconnection delay (doubling, with
	// jitter); defaults 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// IdleTimeout closes a connection that sent nothing (FreeSWITCH sends a
	// HEARTBEAT every 20 s by default); default 60s.
	IdleTimeout time.Duration
	// MaxResponse bounds one api response or event (a "show channels" of a
	// busy server is large); default 64 MiB.
	MaxResponse int
}

// ErrNotConnected is returned while the inbound connection is down.
var ErrNotConnected = errors.New("not connected to the FreeSWITCH event socket")

// MediaServer is the inbound Event Socket connection to one FreeSWITCH: api
// and bgapi commands, registration checks, and the events callctl needs
// (CHANNEL_HANGUP_COMPLETE of the legs it creates, BACKGROUND_JOB). Run keeps
// it connected. It implements controller.MediaServer.
type MediaServer struct {
	cfg MediaServerConfig
	log *slog.Logger

	mu       sync.Mutex
	cur      inbound
	up       chan struct{} // closed while connected; replaced when it drops
	coreUUID string
	legs     map[string]*legWatch
	// dial opens the inbound connection (dialESL; a fake in tests).
	dial func(ctx context.Context) (inbound, error)
}

var _ controller.MediaServer = (*MediaServer)(nil)

// legWatch follows one leg callctl created: gone is closed on its
// CHANNEL_HANGUP_COMPLETE (or once it is known to be gone otherwise).
type legWatch struct {
	id    string
	gone  chan struct{}
	cause string    // Hangup-Cause, set before gone is closed
	at    time.Time // when that became known
	// answered: its hangup event says it had answered (set before gone is
	// closed).
	answered bool
	// armed: the leg answered, so it exists and a reconciliation that does not
	// find it may declare it gone.
	armed  bool
	closed bool
}

// NewMediaServer returns a MediaServer; call Run to connect it.
func NewMediaServer(cfg MediaServerConfig) *MediaServer {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Context == "" {
		cfg.Context = "default"
	}
	if cfg.Switchname == "" {
		cfg.Switchname = cfg.Name
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	if cfg.MaxResponse <= 0 {
		cfg.MaxResponse = 64 << 20
	}
	m := &MediaServer{
		cfg:  cfg,
		log:  cfg.Logger.With("server", cfg.Name, "esl", cfg.Address),
		up:   make(chan struct{}),
		legs: map[string]*legWatch{},
	}
	m.dial = m.dialESL
	return m
}

// Name is the server's name in the plan.
func (m *MediaServer) Name() string { return m.cfg.Name }

// Connected reports whether the inbound connection is up.
func (m *MediaServer) Connected() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur != nil
}

// EventQueue is how many bytes of events FreeSWITCH has sent on the inbound
// connection that callctl has not read yet; ok is false while it is down
// (or the system cannot say).
func (m *MediaServer) EventQueue() (n int, ok bool) {
	m.mu.Lock()
	c := m.cur
	m.mu.Unlock()
	if c == nil {
		return 0, false
	}
	return c.Unread()
}

// WaitConnected waits until the inbound connection is up or ctx is done.
func (m *MediaServer) WaitConnected(ctx context.Context) error {
	m.mu.Lock()
	up := m.up
	m.mu.Unlock()
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w: %w", m.cfg.Name, ErrNotConnected, ctx.Err())
	}
}

// Run keeps the connection up until ctx is done: connect, authenticate,
// subscribe, reconcile the legs it watches, read until the connection drops,
// then wait (doubling backoff with jitter) and again. Every state change is
// logged.
func (m *MediaServer) Run(ctx context.Context) error {
	backoff := m.cfg.MinBackoff
	attempt := 0
	for ctx.Err() == nil {
		attempt++
		c, err := m.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			// Equal jitter: half the delay fixed, half random, so a fleet of
			// nodes does not reconnect in step after a restart.
			d := backoff/2 + rand.N(backoff/2+1)
			m.log.Warn("freeswitch inbound connection failed", "attempt", attempt, "err", err, "retry_in", d.Round(time.Millisecond))
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
			backoff = min(2*backoff, m.cfg.MaxBackoff)
			continue
		}
		m.log.Info("freeswitch inbound connection up", "attempt", attempt, "core_uuid", m.coreUUIDValue())
		up := time.Now()
		attempt = 0
		m.reconcile(ctx)
		select {
		case <-c.Done():
		case <-ctx.Done():
			c.Close()
			<-c.Done()
		}
		m.log.Warn("freeswitch inbound connection down", "err", c.Err(), "was_up", time.Since(up).Round(time.Millisecond))
		if time.Since(up) > m.cfg.MaxBackoff {
			backoff = m.cfg.MinBackoff
			continue
		}
		// A connection that drops at once must not turn into a tight loop.
		d := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(2*backoff, m.cfg.MaxBackoff)
	}
	return ctx.Err()
}

func (m *MediaServer) coreUUIDValue() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.coreUUID
}

// connect dials, authenticates and subscribes; on success the connection is
// current and its reader runs.
func (m *MediaServer) connect(ctx context.Context) (inbound, error) {
	c, err := m.dial(ctx)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.cur = c
	close(m.up)
	m.mu.Unlock()
	c.Start(inboundEvents{m: m, c: c})
	return c, nil
}

// dialESL opens the inbound connection: the end of the legs callctl creates
// (marked with callctl_leg, so FreeSWITCH itself filters a busy server's
// other channels out: positive filters pass an event that matches any of
// them), background job results, and heartbeats.
func (m *MediaServer) dialESL(ctx context.Context) (inbound, error) {
	c, err := esl.Dial(ctx, esl.DialConfig{
		Address:  m.cfg.Address,
		Password: m.cfg.Password,
		Events:   []string{"CHANNEL_HANGUP_COMPLETE", "BACKGROUND_JOB", "HEARTBEAT"},
		Filters: []esl.Filter{
			{Header: "variable_" + legMarkVar, Value: "true"},
			{Header: "Event-Name", Value: "BACKGROUND_JOB"},
			{Header: "Event-Name", Value: "HEARTBEAT"},
		},
		MaxBody:  m.cfg.MaxResponse,
		ReadIdle: m.cfg.IdleTimeout,
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// dropped runs on the reader goroutine when the connection ends (its bgapi
// jobs waiting for a result have failed already).
func (m *MediaServer) dropped(c inbound) {
	m.mu.Lock()
	if m.cur == c {
		m.cur = nil
		m.up = make(chan struct{})
	}
	m.mu.Unlock()
}

// onEvent dispatches the inbound connection's events, in order, on its reader
// goroutine.
func (m *MediaServer) onEvent(ev *esl.Event, at time.Time) {
	switch {
	case ev.Is("Event-Name", "CHANNEL_HANGUP_COMPLETE"):
		id, _ := ev.Headers.Lookup("Unique-ID")
		m.mu.Lock()
		w := m.legs[string(id)]
		if w != nil {
			if t := ev.Get("Caller-Channel-Answered-Time"); t != "" && t != "0" {
				w.answered = true
			}
			m.closeWatchLocked(w, ev.Get("Hangup-Cause"), at)
		}
		m.mu.Unlock()
	case ev.Is("Event-Name", "HEARTBEAT"):
		if id := ev.Get("Core-UUID"); id != "" {
			m.mu.Lock()
			m.coreUUID = id
			m.mu.Unlock()
		}
	}
}

func (m *MediaServer) closeWatchLocked(w *legWatch, cause string, at time.Time) {
	if w.closed {
		return
	}
	w.closed = true
	w.cause = cause
	w.at = at
	close(w.gone)
	if m.legs[w.id] == w {
		delete(m.legs, w.id)
	}
}

// watch starts following leg id (before it is dialed, so no event of it can be
// missed).
func (m *MediaServer) watch(id string) *legWatch {
	w := &legWatch{id: id, gone: make(chan struct{})}
	m.mu.Lock()
	m.legs[id] = w
	m.mu.Unlock()
	return w
}

// unwatch stops following a leg (its call no longer cares).
func (m *MediaServer) unwatch(w *legWatch) {
	m.mu.Lock()
	if m.legs[w.id] == w {
		delete(m.legs, w.id)
	}
	m.mu.Unlock()
}

// arm marks a watched leg as existing (it answered).
func (m *MediaServer) arm(w *legWatch) {
	m.mu.Lock()
	w.armed = true
	m.mu.Unlock()
}

// markGone declares a watched leg gone for a reason other than its own
// hangup event (it became a call of its own after a transfer; it no longer
// exists on the server).
func (m *MediaServer) markGone(w *legWatch, cause string) {
	m.mu.Lock()
	m.closeWatchLocked(w, cause, time.Now())
	m.mu.Unlock()
}

// watched is the number of legs being followed (tests check it returns to 0).
func (m *MediaServer) watched() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.legs)
}

// reconcile runs after each (re)connection: hangup events of answered legs
// may have been missed while the connection was down, so the legs the server
// no longer has are declared gone.
func (m *MediaServer) reconcile(ctx context.Context) {
	m.mu.Lock()
	var armed []*legWatch
	for _, w := range m.legs {
		if w.armed {
			armed = append(armed, w)
		}
	}
	m.mu.Unlock()
	if len(armed) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	live, err := m.LiveChannels(rctx)
	if err != nil {
		m.log.Warn("reconciling legs after reconnect failed", "legs", len(armed), "err", err)
		return
	}
	set := make(map[string]struct{}, len(live))
	for _, id := range live {
		set[id] = struct{}{}
	}
	n := 0
	for _, w := range armed {
		if _, ok := set[w.id]; !ok {
			m.markGone(w, "GONE_WHILE_DISCONNECTED")
			n++
		}
	}
	m.log.Info("legs reconciled after reconnect", "watched", len(armed), "gone", n)
}

func (m *MediaServer) current() (inbound, error) {
	m.mu.Lock()
	c := m.cur
	m.mu.Unlock()
	if c == nil {
		return nil, fmt.Errorf("%s: %w", m.cfg.Name, ErrNotConnected)
	}
	return c, nil
}

// API runs "api <cmd> <args...>" and returns its output. Only for commands
// that answer at once: FreeSWITCH runs an api command on the connection's own
// thread, holding back every event and reply behind it. A -ERR output is an
// error wrapping ErrCommandFailed.
func (m *MediaServer) API(ctx context.Context, cmd string, args ...string) (string, error) {
	c, err := m.current()
	if err != nil {
		return "", err
	}
	out, err := c.API(ctx, cmd, args...)
	if err != nil && !errors.Is(err, esl.ErrUnsafe) {
		return out, fmt.Errorf("api %s: %w", cmd, err)
	}
	return out, err
}

// BGAPI runs "bgapi <cmd>" with a Job-UUID of callctl's own and waits for its
// BACKGROUND_JOB. A -ERR output is an error wrapping ErrCommandFailed.
func (m *MediaServer) BGAPI(ctx context.Context, cmd string) (string, error) {
	c, err := m.current()
	if err != nil {
		return "", err
	}
	out, err := c.BGAPI(ctx, controller.NewID(), cmd)
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, esl.ErrUnsafe):
		return "", err
	case errors.Is(err, esl.ErrJobLost):
		err = fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	return out, fmt.Errorf("bgapi %s: %w", firstWord(cmd), err)
}

func firstWord(s string) string {
	w, _, _ := strings.Cut(s, " ")
	return w
}

// Registered says whether endpoint can be rung: user/<ext>[@domain] is asked
// to sofia_contact (error/user_not_registered means no); other endpoints
// (loopback, gateways, SIP URIs) have no registration and are taken as
// reachable.
func (m *MediaServer) Registered(ctx context.Context, endpoint string) (bool, error) {
	arg, isUser, err := contactArg(endpoint, m.cfg.Domain)
	if err != nil {
		return false, err
	}
	if !isUser {
		return true, nil
	}
	out, err := m.API(ctx, "sofia_contact", arg)
	out = strings.TrimSpace(out)
	if strings.Contains(out, "user_not_registered") {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if strings.HasPrefix(out, "error/") {
		return false, fmt.Errorf("sofia_contact %s: %s", arg, out)
	}
	return out != "", nil
}

// LiveChannels lists the uuids of the server's channels ("show channels as
// json", in the background so that a long list does not hold up events).
func (m *MediaServer) LiveChannels(ctx context.Context) ([]string, error) {
	out, err := m.BGAPI(ctx, "show channels as json")
	if err != nil {
		return nil, err
	}
	return parseChannels(out)
}

func parseChannels(out string) ([]string, error) {
	var res struct {
		RowCount int `json:"row_count"`
		Rows     []struct {
			UUID string `json:"uuid"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &res); err != nil {
		return nil, fmt.Errorf("show channels: %w", err)
	}
	ids := make([]string, 0, len(res.Rows))
	for _, r := range res.Rows {
		if r.UUID != "" {
			ids = append(ids, r.UUID)
		}
	}
	if len(ids) != res.RowCount {
		return nil, fmt.Errorf("show channels: row_count %d but %d rows", res.RowCount, len(ids))
	}
	return ids, nil
}

// Originate places a call from the server to spec.Target and parks it once
// answered ("bgapi originate {...}<target> &park()", with callctl's own
// Job-UUID: an originate can ring for the whole ring time, which an api
// command would spend holding up every event and reply of the connection).
// It returns the new channel's uuid (spec.LegID) once answered, or an error
// wrapping ErrCommandFailed with FreeSWITCH's cause (-ERR USER_BUSY, ...).
// The dial string is built and checked exactly as for a bridge.
func (m *MediaServer) Originate(ctx context.Context, spec controller.DialSpec) (string, error) {
	arg, _, err := BridgeArg(spec)
	if err != nil {
		return "", fmt.Errorf("originate: %w", err)
	}
	out, err := m.BGAPI(ctx, "originate "+arg+" &park()")
	if err != nil {
		return "", fmt.Errorf("originate %s: %w", spec.Target, err)
	}
	id := strings.TrimSpace(strings.TrimPrefix(out, "+OK"))
	if id != spec.LegID {
		return id, fmt.Errorf("originate %s: unexpected reply %q", spec.Target, strings.TrimSpace(out))
	}
	return id, nil
}

// Kill hangs a channel up through the inbound connection, waiting up to ctx
// for the connection to be up. A channel that no longer exists is not an
// error.
func (m *MediaServer) Kill(ctx context.Context, uuid, cause string) error {
	if !validUUID(uuid) || !validName(cause) {
		return fmt.Errorf("%w: uuid_kill %q %q", ErrUnsafeInput, uuid, cause)
	}
	for {
		if err := m.WaitConnected(ctx); err != nil {
			return err
		}
		_, err := m.API(ctx, "uuid_kill", uuid, cause)
		switch {
		case err == nil:
			return nil
		case strings.Contains(err.Error(), "No such channel"):
			return nil
		case errors.Is(err, ErrCommandFailed) || ctx.Err() != nil:
			return err
		}
		// The connection was lost under the command (it may not have been
		// noticed yet when the wait above returned): try again once it is
		// back, within ctx.
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Exists asks whether a channel exists.
func (m *MediaServer) Exists(ctx context.Context, uuid string) (bool, error) {
	if !validUUID(uuid) {
		return false, fmt.Errorf("%w: uuid %q", ErrUnsafeInput, uuid)
	}
	out, err := m.API(ctx, "uuid_exists", uuid)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(out) == "true", nil
}
