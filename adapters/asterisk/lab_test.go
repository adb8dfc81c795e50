package asterisk

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/memory"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
	simari "github.com/callctl/callctl/integration/sim/ari"
	"github.com/callctl/callctl/integration/sim/callmodel"
	"github.com/prometheus/client_golang/prometheus"
)

// The lab: two simulated Asterisk servers (srv12, srv13) over one call model,
// each with its callctl Client, one Engine, the in-process limiter. Phones
// and PSTN numbers behave as each test sets them.

const labPlan = `
settings:
  ring_timeout: 20s
servers:
  - name: srv12
    kind: asterisk
    prefix: "12"
    channel_limit: %[3]d
    asterisk: {url: "%[1]s", user: ari, password: ari, app: callctl, context: features}
    pstn: {dial: "PJSIP/{dest}@pstn", from: ["pstn"]}
    trunks:
      srv13: {dial: "PJSIP/{dest}@srv13", from: ["srv13"]}
  - name: srv13
    kind: asterisk
    prefix: "13"
    channel_limit: 100
    asterisk: {url: "%[2]s", user: ari, password: ari, app: callctl, context: default}
    pstn: {dial: "PJSIP/{dest}@pstn", from: ["pstn"]}
    trunks:
      srv12: {dial: "PJSIP/{dest}@srv12", from: ["srv12"]}
orgs:
  - id: acme
    name: ACME
    country_code: "49"
    national_prefix: "0"
    international_prefix: "00"
    default_outgoing_number: "+4930100100"
    feature_codes: ["*98"]
    outbound_rules:
      - {name: world, countries: ["*"]}
    users:
      - {extension: "2001", name: "Ann Caller", server: srv12, endpoint: "PJSIP/2001", outbound_rule: world}
      - {extension: "2002", name: "Bob", server: srv12, endpoint: "PJSIP/2002", outbound_rule: world}
      - {extension: "2003", name: "Dora", server: srv12, endpoint: "PJSIP/2003"}
      - {extension: "2005", name: "Local Five", server: srv12, endpoint: "Local/501@targets"}
      - {extension: "3001", name: "Cem", server: srv13, endpoint: "PJSIP/3001"}
    sip_numbers:
      - {number: "77700001", server: srv12, endpoint: "PJSIP/2101", next: "77700002"}
      - {number: "77700002", server: srv12, endpoint: "PJSIP/2102", next: "77700003"}
      - {number: "77700003", server: srv12, endpoint: "PJSIP/2103", next: "77700004", ring_timeout: 1s}
      - {number: "77700004", server: srv12, endpoint: "PJSIP/2104", next: "0000"}
      - {number: "77700011", server: srv12, endpoint: "PJSIP/2111", next: "77700012"}
      - {number: "77700012", server: srv12, endpoint: "PJSIP/2112", next: "0000"}
      - {number: "77700021", server: srv12, endpoint: "PJSIP/2121", next: "77700022"}
      - {number: "77700022", server: srv12, endpoint: "PJSIP/2122", next: "77700023"}
      - {number: "77700023", server: srv12, endpoint: "PJSIP/2123", next: "0000"}
      - {number: "77700031", server: srv12, endpoint: "Local/201@targets", next: "77700032"}
      - {number: "77700032", server: srv12, endpoint: "Local/401@targets", next: "77700033"}
      - {number: "77700033", server: srv12, endpoint: "Local/301@targets", next: "77700034", ring_timeout: 1s}
      - {number: "77700034", server: srv12, endpoint: "Local/501@targets", next: "0000"}
    service_numbers:
      - {number: "8008001", start: "77700001"}
      - {number: "8008011", start: "77700011"}
      - {number: "8008021", start: "77700021"}
      - {number: "8008031", start: "77700031"}
numbers:
  - {number: "+4930100100", owner: acme, destination: "2001"}
  - {number: "+4930100200", owner: acme, destination: "8008001"}
`

type labOptions struct {
	channelLimit int
	logger       *slog.Logger
	// lostAfter, when set, is the clients' LostAfter.
	lostAfter time.Duration
	// requestTimeout, when set, is the clients' RequestTimeout (3 s).
	requestTimeout time.Duration
	// handler, when set, gets the calls instead of the engine.
	handler func(eng *controller.Engine) Handler
}

type lab struct {
	t      testing.TB
	fleet  *callmodel.Fleet
	model  map[string]*callmodel.Server
	ast    map[string]*simari.Server
	cli    map[string]*Client
	eng    *controller.Engine
	reg    *prometheus.Registry // the engine's metrics
	store  *memory.Store
	recs   *recordSink
	logs   *logBuffer
	cancel context.CancelFunc
	runs   sync.WaitGroup
	active atomic.Int32 // Runs not returned yet
	obs    *observer
	closed bool
}

func newLab(t testing.TB, o labOptions) *lab {
	t.Helper()
	if o.channelLimit == 0 {
		o.channelLimit = 100
	}
	l := &lab{t: t, model: map[string]*callmodel.Server{}, ast: map[string]*simari.Server{}, cli: map[string]*Client{},
		recs: &recordSink{}, logs: &logBuffer{}, obs: newObserver()}
	log := o.logger
	if log == nil {
		var w io.Writer = l.logs
		if path := os.Getenv("CALLCTL_TEST_LOG"); path != "" {
			// The whole log, for a failure the tail does not explain.
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			w = io.MultiWriter(l.logs, f)
		}
		log = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	l.fleet = callmodel.NewFleet(callmodel.WithLogger(quietLogger()))
	urls := map[string]string{}
	for i, name := range []string{"srv12", "srv13"} {
		m, err := l.fleet.AddServer(callmodel.ServerConfig{Name: name, Kind: callmodel.Asterisk, IP: fmt.Sprintf("127.0.0.%d", 12+i)})
		if err != nil {
			t.Fatal(err)
		}
		s, err := simari.Attach(m, simari.Config{App: "callctl", EntityID: fmt.Sprintf("02:00:00:00:00:%02d", 12+i), Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		l.model[name], l.ast[name] = m, s
		urls[name] = s.URL()
		m.Subscribe(l.obs.observe)
	}
	plan, problems, err := provision.Load("lab.yaml", fmt.Appendf(nil, labPlan, urls["srv12"], urls["srv13"], o.channelLimit))
	if err != nil {
		t.Fatalf("lab plan: %v\n%v", err, problems)
	}
	l.store = memory.New(memory.Options{Node: "lab", Logger: quietLogger()})
	l.reg = prometheus.NewRegistry()
	l.eng = controller.NewEngine(plan, controller.Options{Node: "lab", Limiter: l.store, Records: l.recs, Stories: l.store, Logger: log,
		LegGrace: 5 * time.Second, Metrics: controller.NewMetrics(l.reg)})
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	var h Handler = l.eng
	if o.handler != nil {
		h = o.handler(l.eng)
	}
	for _, name := range []string{"srv12", "srv13"} {
		cfg, err := FromServer(plan.Server(name), log)
		if err != nil {
			t.Fatal(err)
		}
		cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
		cfg.RequestTimeout = 3 * time.Second
		if o.requestTimeout > 0 {
			cfg.RequestTimeout = o.requestTimeout
		}
		if o.lostAfter > 0 {
			cfg.LostAfter = o.lostAfter
		}
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		l.cli[name] = c
		l.runs.Add(1)
		l.active.Add(1)
		go func() {
			defer l.runs.Done()
			defer l.active.Add(-1)
			if err := c.Run(ctx, h); err != nil {
				t.Errorf("Run %s: %v", name, err)
			}
		}()
	}
	for name, c := range l.cli {
		waitFor(t, 10*time.Second, func() bool { return c.Connected() }, name+" connected")
	}
	t.Cleanup(func() {
		l.close()
		if t.Failed() {
			t.Logf("callctl log:\n%s", l.logs.tail(200))
		}
	})
	return l
}

// close stops callctl (ending any call still up), then the simulator.
func (l *lab) close() {
	if l.closed {
		return
	}
	l.closed = true
	l.cancel()
	stopped := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = l.eng.Drain(ctx)
		l.runs.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		buf := make([]byte, 1<<20)
		l.t.Errorf("callctl did not stop:\n%s", buf[:runtime.Stack(buf, true)])
	}
	for _, s := range l.ast {
		_ = s.Close()
	}
	l.fleet.Close()
}

// call places a call from phone ext of srv12 to dialed.
func (l *lab) call(ext, dialed string, plan callmodel.CallerPlan) string {
	l.t.Helper()
	return l.callOn("srv12", ext, dialed, plan)
}

func (l *lab) callOn(server, ext, dialed string, plan callmodel.CallerPlan) string {
	l.t.Helper()
	uuid, err := l.fleet.PlaceCall(server, callmodel.InboundCall{Origin: callmodel.OriginPhone, FromExt: ext,
		Caller: callmodel.Party{Number: ext, Name: "Caller " + ext}, Destination: dialed, Plan: plan})
	if err != nil {
		l.t.Fatalf("place call %s -> %s: %v", ext, dialed, err)
	}
	return uuid
}

// ariCaller returns the ARI channel id of the tracked call from caller.
func (l *lab) ariCaller(server, caller string) string {
	c := l.cli[server]
	c.mu.RLock()
	defer c.mu.RUnlock()
	for cl := range c.calls {
		if cl.info.Caller == caller {
			return cl.id
		}
	}
	return ""
}

// hangup makes the caller's phone hang up now.
func (l *lab) hangup(server, uuid string) {
	_ = l.model[server].Do(func(tx *callmodel.Tx) error {
		tx.Hangup(uuid, callmodel.CauseNormalClearing, callmodel.ByRemote)
		return nil
	})
}

// settled waits until nothing of any call is left: no channel or bridge on
// the servers, nothing tracked by the clients, no call in the engine, no
// counted leg.
func (l *lab) settled(timeout time.Duration) {
	l.t.Helper()
	last := ""
	deadline := time.Now().Add(timeout)
	for {
		if last = l.leftovers(); last == "" {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("after %s, still left: %s", timeout, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *lab) leftovers() string {
	var b strings.Builder
	if n := l.eng.Active(); n != 0 {
		fmt.Fprintf(&b, "engine: %d active calls; ", n)
	}
	for name, c := range l.cli {
		if s := c.Stats(); s.Active != 0 || s.Channels != 0 {
			fmt.Fprintf(&b, "%s client: %d calls, %d channels; ", name, s.Active, s.Channels)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if ids, err := c.LiveChannels(ctx); err != nil || len(ids) != 0 {
			fmt.Fprintf(&b, "%s channels: %v %v; ", name, ids, err)
		}
		if br := l.bridges(ctx, name); len(br) != 0 {
			fmt.Fprintf(&b, "%s bridges: %v; ", name, br)
		}
		cancel()
		if n := l.model[name].ChannelCount(); n != 0 {
			fmt.Fprintf(&b, "%s model: %d channels; ", name, n)
		}
		for _, scope := range []string{"server"} {
			if n, err := l.store.Count(context.Background(), scope, name); err != nil || n != 0 {
				fmt.Fprintf(&b, "%s counted legs: %d %v; ", name, n, err)
			}
		}
	}
	if n, _ := l.store.Count(context.Background(), "org", "acme"); n != 0 {
		fmt.Fprintf(&b, "acme counted legs: %d; ", n)
	}
	return b.String()
}

func (l *lab) bridges(ctx context.Context, server string) []string {
	var out []struct {
		ID string `json:"id"`
	}
	if err := l.cli[server].rest.do(ctx, http.MethodGet, "/bridges", nil, nil, &out); err != nil {
		return []string{"error: " + err.Error()}
	}
	ids := make([]string, 0, len(out))
	for _, b := range out {
		ids = append(ids, b.ID)
	}
	return ids
}

// record waits for the call record of the call from caller to dialed (the
// simulator's channel ids are not the ARI ids callctl records).
func (l *lab) record(caller, dialed string) *controller.Record {
	l.t.Helper()
	var r *controller.Record
	waitFor(l.t, 30*time.Second, func() bool { r = l.recs.find(caller, dialed); return r != nil },
		"call record of "+caller+" -> "+dialed)
	return r
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recordSink keeps call records by call id.
type recordSink struct {
	mu   sync.Mutex
	recs map[string]*controller.Record
	n    int
}

func (s *recordSink) Write(_ context.Context, r *controller.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recs == nil {
		s.recs = map[string]*controller.Record{}
	}
	cp := *r
	s.recs[r.CallID] = &cp
	s.n++
	return nil
}

func (s *recordSink) find(caller, dialed string) *controller.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.recs {
		if r.Caller == caller && r.Dialed == dialed {
			return r
		}
	}
	return nil
}

// unanswered summarises the records of calls nobody answered.
func (s *recordSink) unanswered() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, r := range s.recs {
		if r.Answer == nil {
			k := r.HangupCause
			for _, a := range r.Attempts {
				k += " " + a.Outcome.String() + "(" + a.Cause + ")"
			}
			out[k]++
		}
	}
	return out
}

func (s *recordSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// logBuffer collects callctl's log for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 8<<20 {
		b.buf.Reset()
	}
	return b.buf.Write(p)
}

func (b *logBuffer) contains(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Contains(b.buf.Bytes(), []byte(s))
}

func (b *logBuffer) lines(s string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, line := range strings.Split(b.buf.String(), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

func (b *logBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := strings.Split(b.buf.String(), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// observer follows the model's channels: when each was answered, bridged,
// hung up and with which cause.
type observer struct {
	mu    sync.Mutex
	chans map[string]*seen
}

type seen struct {
	server   string
	answered time.Time
	bridged  string
	hungup   time.Time
	cause    callmodel.Cause
	changed  chan struct{} // closed and replaced on every change
}

func newObserver() *observer { return &observer{chans: map[string]*seen{}} }

func (o *observer) entry(id string) *seen {
	s := o.chans[id]
	if s == nil {
		s = &seen{changed: make(chan struct{})}
		o.chans[id] = s
	}
	return s
}

func (o *observer) observe(_ *callmodel.Tx, ev *callmodel.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	id := ev.Channel.UUID
	if id == "" {
		return
	}
	s := o.entry(id)
	s.server = ev.Server
	switch ev.Kind {
	case callmodel.ChannelAnswered:
		s.answered = ev.Time
	case callmodel.ChannelBridged:
		s.bridged = ev.Other.UUID
		other := o.entry(ev.Other.UUID)
		other.bridged = id
		close(other.changed)
		other.changed = make(chan struct{})
	case callmodel.ChannelHangup:
		s.hungup, s.cause = ev.Time, ev.Channel.Cause
	default:
		return
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

func (o *observer) get(id string) seen {
	o.mu.Lock()
	defer o.mu.Unlock()
	if s := o.chans[id]; s != nil {
		return *s
	}
	return seen{}
}

// wait blocks until cond holds for channel id or timeout passes, and
// returns the last state seen.
func (o *observer) wait(id string, timeout time.Duration, cond func(seen) bool) (seen, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		o.mu.Lock()
		s := *o.entry(id)
		o.mu.Unlock()
		if cond(s) {
			return s, true
		}
		select {
		case <-s.changed:
		case <-t.C:
			return s, false
		}
	}
}

// forget drops what was seen of a channel.
func (o *observer) forget(id string) {
	o.mu.Lock()
	delete(o.chans, id)
	o.mu.Unlock()
}

// goroutines counts goroutines; leaked compares with a baseline, polling
// until stragglers (closing connections) are gone.
func goroutinesSettled(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, %d before the test:\n%s", n, base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
