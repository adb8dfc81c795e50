package freeswitch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/memory"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
	simlab "github.com/callctl/callctl/integration/sim"
	"github.com/callctl/callctl/integration/sim/callmodel"
	simesl "github.com/callctl/callctl/integration/sim/esl"
)

// testPlan: two FreeSWITCH servers joined by trunks, a group of three SIP
// numbers behind service number 8008001, phones on srv11, 2099 on srv12.
const testPlan = `
settings:
  server_prefixes: {min: 1, max: 98, exclude: [7, 8, 9]}
  ring_timeout: 20s
servers:
  - name: srv11
    kind: freeswitch
    prefix: "11"
    channel_limit: %d
    freeswitch: {address: "127.0.0.1:1", password: ClueCon, context: default}
    endpoint: "user/{ext}"
    pstn: {dial: "sofia/gateway/pstn/{dest}", from: ["127.0.0.99"]}
    trunks:
      srv12: {dial: "sofia/gateway/srv12/{dest}", from: ["127.0.0.12"]}
  - name: srv12
    kind: freeswitch
    prefix: "12"
    channel_limit: 100
    freeswitch: {address: "127.0.0.1:1", password: ClueCon, context: default}
    endpoint: "user/{ext}"
    pstn: {dial: "sofia/gateway/pstn/{dest}", from: ["127.0.0.99"]}
    trunks:
      srv11: {dial: "sofia/gateway/srv11/{dest}", from: ["127.0.0.11"]}
orgs:
  - id: acme
    name: ACME
    country_code: "49"
    national_prefix: "0"
    international_prefix: "00"
    default_outgoing_number: "+4930100100"
    hunt: {ring_timeout: %s}
    feature_codes: ["*97"]
    outbound_rules:
      - name: world
        countries: ["*"]
    users:
      - {extension: "3999", name: "Aiko Sato", server: srv11, outbound_rule: world}
      - {extension: "3998", name: "Ben Ode", server: srv11, outbound_rule: world}
      - {extension: "2099", name: "Chen Li", server: srv12}
      - {extension: "2098", name: "Dan Loop", server: srv11, endpoint: "loopback/501/targets"}
    sip_numbers:
      - {number: "77721401", server: srv11, next: "77721402"}
      - {number: "77721402", server: srv11, next: "77721403"}
      - {number: "77721403", server: srv11, next: "0000"}
      - {number: "77721501", server: srv11, endpoint: "loopback/201/targets", next: "77721502"}
      - {number: "77721502", server: srv11, endpoint: "loopback/202/targets", next: "77721503"}
      - {number: "77721503", server: srv11, endpoint: "loopback/503/targets", next: "0000"}
    service_numbers:
      - {number: "8008001", start: "77721401"}
      - {number: "8008005", start: "77721501"}
numbers:
  - {number: "+4930100100", owner: acme, destination: "8008001"}
`

type labServer struct {
	name, ip string
}

type testLab struct {
	t       testing.TB
	plan    *provision.Plan
	fleet   *callmodel.Fleet
	sims    map[string]*simesl.Server
	ms      map[string]*MediaServer
	srv     *Server
	engine  *controller.Engine
	store   *memory.Store
	events  *eventLog
	records *recordSink

	ctx       context.Context
	cancel    context.CancelFunc
	runs      sync.WaitGroup
	serveDone chan error
	closeOnce sync.Once
	proc      *simProcess
}

type labOptions struct {
	channelLimit int
	ringTimeout  string
	servers      []labServer
	options      Options
	logger       *slog.Logger
	engineOpts   func(*controller.Options)
	simConfig    func(*simesl.Config)
	// remote runs the simulator in a child process (benchmarks).
	remote *childConfig
	// handler replaces the engine as the server's handler.
	handler Handler
}

func quietLogger() *slog.Logger {
	if os.Getenv("CALLCTL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newTestLab(t testing.TB, o labOptions) *testLab {
	t.Helper()
	if o.channelLimit == 0 {
		o.channelLimit = 100
	}
	if o.ringTimeout == "" {
		o.ringTimeout = "3s"
	}
	if len(o.servers) == 0 {
		o.servers = []labServer{{"srv11", "127.0.0.11"}, {"srv12", "127.0.0.12"}}
	}
	if o.logger == nil {
		o.logger = quietLogger()
	}
	plan, problems, err := provision.Load("test.yaml", []byte(fmt.Sprintf(testPlan, o.channelLimit, o.ringTimeout)))
	if err != nil {
		t.Fatalf("plan: %v\n%v", err, problems)
	}
	l := &testLab{t: t, plan: plan, sims: map[string]*simesl.Server{}, ms: map[string]*MediaServer{},
		serveDone: make(chan error, 1)}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.store = memory.New(memory.Options{Logger: o.logger})
	l.records = &recordSink{byCall: map[string]controller.Record{}, countOnly: o.remote != nil}
	eo := controller.Options{Node: "n1", Limiter: l.store, Records: l.records, Stories: l.store, Logger: o.logger,
		LegGrace: 5 * time.Second}
	if o.engineOpts != nil {
		o.engineOpts(&eo)
	}
	l.engine = controller.NewEngine(plan, eo)
	if o.options.Logger == nil {
		o.options.Logger = o.logger
	}
	var h Handler = l.engine
	if o.handler != nil {
		h = o.handler
	}
	l.srv = NewServer(h, nil, o.options)
	if err := l.srv.Listen(l.ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{}
	if o.remote != nil {
		cfg := *o.remote
		cfg.Controller = l.srv.Addr().String()
		for _, s := range o.servers {
			cfg.Servers = append(cfg.Servers, childServer{s.name, s.ip})
		}
		l.proc = startSimProcess(t, cfg)
		addrs = l.proc.addrs
	} else {
		l.fleet = callmodel.NewFleet(callmodel.WithLogger(o.logger))
		l.events = &eventLog{}
		gateways := map[string]string{}
		for _, s := range o.servers {
			gateways[s.name] = s.name
		}
		for _, s := range o.servers {
			m, err := l.fleet.AddServer(callmodel.ServerConfig{Name: s.name, Kind: callmodel.FreeSWITCH, IP: s.ip})
			if err != nil {
				t.Fatal(err)
			}
			m.Subscribe(l.events.observe)
			cfg := simesl.Config{Switchname: s.name, Controllers: []string{l.srv.Addr().String()},
				Gateways: gateways, Heartbeat: -1, Logger: o.logger}
			if o.simConfig != nil {
				o.simConfig(&cfg)
			}
			sim, err := simesl.New(m, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := sim.Start(); err != nil {
				t.Fatal(err)
			}
			l.sims[s.name] = sim
			addrs[s.name] = sim.Addr()
		}
	}
	for _, s := range o.servers {
		ms := NewMediaServer(MediaServerConfig{Name: s.name, Address: addrs[s.name], Password: "ClueCon",
			Logger: o.logger, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
		l.ms[s.name] = ms
		l.srv.servers = append(l.srv.servers, ms)
		l.runs.Add(1)
		go func() { defer l.runs.Done(); _ = ms.Run(l.ctx) }()
	}
	for _, ms := range l.ms {
		ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
		if err := ms.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	go func() { l.serveDone <- l.srv.Serve() }()
	t.Cleanup(l.close)
	return l
}

func (l *testLab) close() { l.closeOnce.Do(l.doClose) }

func (l *testLab) doClose() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.srv.Shutdown(ctx); err != nil {
		l.t.Errorf("shutdown: %v", err)
	}
	if err := <-l.serveDone; !errors.Is(err, ErrServerClosed) {
		l.t.Errorf("serve: %v", err)
	}
	l.engine.Stop()
	l.cancel()
	l.runs.Wait()
	for _, s := range l.sims {
		_ = s.Close()
	}
	if l.fleet != nil {
		l.fleet.Close()
	}
	if l.proc != nil {
		l.proc.stop()
	}
}

// call places a call from phone ext of server to dialed.
func (l *testLab) call(server, ext, name, dialed string, plan callmodel.CallerPlan) string {
	l.t.Helper()
	uuid, err := l.fleet.PlaceCall(server, callmodel.InboundCall{Origin: callmodel.OriginPhone,
		Caller: callmodel.Party{Number: ext, Name: name}, Destination: dialed, FromExt: ext,
		NetworkIP: "127.0.0.50", Plan: plan})
	if err != nil {
		l.t.Fatal(err)
	}
	return uuid
}

// waitHangup waits for the channel's hangup and returns its cause.
func (l *testLab) waitHangup(uuid string, within time.Duration) string {
	l.t.Helper()
	var cause string
	if !waitFor(within, func() bool {
		var ok bool
		cause, ok = l.events.hangupCause(uuid)
		return ok
	}) {
		l.t.Fatalf("channel %s did not hang up within %v", uuid, within)
	}
	return cause
}

// waitIdle waits until nothing is left: no call on the engine or the
// server, no counted leg, no watched leg, no channel on the sims.
func (l *testLab) waitIdle(within time.Duration) {
	l.t.Helper()
	var why string
	ok := waitFor(within, func() bool {
		why = l.busy()
		return why == ""
	})
	if !ok {
		l.t.Fatalf("not idle after %v: %s", within, why)
	}
}

func (l *testLab) busy() string {
	if n := l.engine.Active(); n != 0 {
		return fmt.Sprintf("%d calls on the engine", n)
	}
	if n := l.srv.ActiveCalls(); n != 0 {
		return fmt.Sprintf("%d connections on the server", n)
	}
	for name, ms := range l.ms {
		if n := ms.watched(); n != 0 {
			return fmt.Sprintf("%d legs watched on %s", n, name)
		}
		if n, _ := l.store.Count(context.Background(), "server", name); n != 0 {
			return fmt.Sprintf("%d legs counted on %s", n, name)
		}
	}
	for name, s := range l.sims {
		if n := s.Model().ChannelCount(); n != 0 {
			return fmt.Sprintf("%d channels left on sim %s", n, name)
		}
	}
	return ""
}

func waitFor(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventLog records the model's events of every server.
type eventLog struct {
	mu     sync.Mutex
	hangup map[string]string
	sip    map[string]int // the SIP final response an unanswered caller got
	// causes is each channel's originate_causes when it hung up: the legs
	// its bridges rang, one bridge's.
	causes map[string]string
	events []loggedEvent
}

type loggedEvent struct {
	at     time.Time
	server string
	kind   callmodel.EventKind
	uuid   string
	name   string
	cause  string
}

func (e *eventLog) observe(tx *callmodel.Tx, ev *callmodel.Event) {
	if ev.Kind == callmodel.Note {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.hangup == nil {
		e.hangup = map[string]string{}
	}
	le := loggedEvent{at: time.Now(), kind: ev.Kind}
	le.server, le.uuid, le.name, le.cause = ev.Server, ev.Channel.UUID, ev.Channel.Name, ev.Channel.Cause.Name
	if ev.Kind == callmodel.ChannelHangup {
		e.hangup[le.uuid] = le.cause
		if e.sip == nil {
			e.sip = map[string]int{}
		}
		// As the simulator's Lab reads it: the code "respond" sent, else
		// FreeSWITCH's mapping of the cause.
		code := simlab.SIPStatus(ev.Channel.Cause)
		if v, ok := ev.Channel.Vars.Get("sip_term_status"); ok {
			if n, err := strconv.Atoi(v); err == nil {
				code = n
			}
		}
		if !ev.Channel.Answered.IsZero() {
			code = 200
		}
		e.sip[le.uuid] = code
		if v, ok := ev.Channel.Vars.Get("originate_causes"); ok {
			if e.causes == nil {
				e.causes = map[string]string{}
			}
			e.causes[le.uuid] = v
		}
	}
	if len(e.events) < 100000 {
		e.events = append(e.events, le)
	}
}

func (e *eventLog) sipStatus(uuid string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sip[uuid]
}

func (e *eventLog) originateCauses(uuid string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.causes[uuid]
}

func (e *eventLog) hangupCause(uuid string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.hangup[uuid]
	return c, ok
}

// goroutines waits until the number of goroutines is back to base (or
// below), dumping them if not.
func checkGoroutines(t testing.TB, base int) {
	t.Helper()
	if waitFor(10*time.Second, func() bool { return runtime.NumGoroutine() <= base }) {
		return
	}
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), base, filterStacks(string(buf[:n])))
}

func filterStacks(s string) string {
	var out []string
	for _, g := range strings.Split(s, "\n\n") {
		if strings.Contains(g, "testing.") && !strings.Contains(g, "callctl") {
			continue
		}
		out = append(out, g)
	}
	return strings.Join(out, "\n\n")
}

// recordSink keeps the call records.
type recordSink struct {
	mu     sync.Mutex
	byCall map[string]controller.Record
	all    []controller.Record
	// countOnly: benchmarks count records without keeping them, so the
	// test's bookkeeping does not count as callctl's memory.
	countOnly bool
	n         int
}

func (r *recordSink) Write(ctx context.Context, rec *controller.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.countOnly {
		r.n++
		return nil
	}
	r.byCall[rec.CallID] = *rec
	r.all = append(r.all, *rec)
	return nil
}

// record waits for the call's record.
func (l *testLab) record(id string) controller.Record {
	l.t.Helper()
	var rec controller.Record
	if !waitFor(10*time.Second, func() bool {
		l.records.mu.Lock()
		defer l.records.mu.Unlock()
		var ok bool
		rec, ok = l.records.byCall[id]
		return ok
	}) {
		l.t.Fatalf("no record for call %s", id)
	}
	return rec
}

// outcomes lists the record's attempts as "target:outcome".
func outcomes(rec controller.Record) []string {
	var out []string
	for _, a := range rec.Attempts {
		out = append(out, a.Target+":"+a.Outcome.String())
	}
	return out
}

// ringed lists the targets of server that rang (in order).
func (l *testLab) ringed(server string, targets ...string) map[string][]callmodel.Ring {
	out := map[string][]callmodel.Ring{}
	for _, t := range targets {
		out[t] = l.fleet.RingsOf(server, t)
	}
	return out
}

// recordsOf lists every record written for a channel, in order.
func (l *testLab) recordsOf(id string) []controller.Record {
	l.records.mu.Lock()
	defer l.records.mu.Unlock()
	var out []controller.Record
	for _, r := range l.records.all {
		if r.CallID == id {
			out = append(out, r)
		}
	}
	return out
}
