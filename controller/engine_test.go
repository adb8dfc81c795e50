package controller_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callctl/callctl/adapters/memory"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/hunt"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/controller/routing"
	"github.com/callctl/callctl/examples"
)

// These tests drive the engine with a scripted call: what each endpoint does
// is written in the test. The adapters' own tests and the scenario suite run
// the same paths against the simulated media servers over the real protocols.

type script struct {
	outcome hunt.Outcome
	after   time.Duration // ring time before the outcome
	talk    time.Duration // how long an answered leg stays
	panics  bool
	// legEnd, when set, ends the answered leg instead of talk and the
	// caller's end: a leg joined elsewhere lives on.
	legEnd chan struct{}
}

type fakeMS struct {
	name       string
	registered map[string]bool
}

func (m *fakeMS) Name() string { return m.name }
func (m *fakeMS) Registered(_ context.Context, ep string) (bool, error) {
	if r, ok := m.registered[ep]; ok {
		return r, nil
	}
	return true, nil
}
func (m *fakeMS) LiveChannels(context.Context) ([]string, error) { return nil, nil }

type fakeLeg struct {
	id    string
	ended chan struct{}
}

func (l *fakeLeg) ID() string             { return l.id }
func (l *fakeLeg) Ended() <-chan struct{} { return l.ended }

type fakeCall struct {
	id     string
	info   controller.CallInfo
	script map[string]script
	ctx    context.Context
	hangup context.CancelFunc
	// joined: the media server joined the caller to another call; Hangup
	// and Reject refuse (ErrCallJoined).
	joined bool

	mu       sync.Mutex
	dialed   []string
	specs    []controller.DialSpec
	rejected routing.Cause
	cause    string
}

func newCall(id string, info controller.CallInfo, s map[string]script) *fakeCall {
	ctx, cancel := context.WithCancel(context.Background())
	return &fakeCall{id: id, info: info, script: s, ctx: ctx, hangup: cancel}
}

func (c *fakeCall) ID() string                            { return c.id }
func (c *fakeCall) Info() controller.CallInfo             { return c.info }
func (c *fakeCall) Context() context.Context              { return c.ctx }
func (c *fakeCall) Handoff(context.Context, string) error { return nil }
func (c *fakeCall) EndCause() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}

func (c *fakeCall) Dial(ctx context.Context, spec controller.DialSpec) (controller.Leg, controller.DialResult, error) {
	c.mu.Lock()
	c.dialed = append(c.dialed, spec.Target)
	c.specs = append(c.specs, spec)
	s, ok := c.script[spec.Target]
	c.mu.Unlock()
	if !ok {
		return nil, controller.DialResult{Outcome: hunt.Failed, Cause: "NO_ROUTE_DESTINATION"}, nil
	}
	if s.panics {
		panic("adapter bug")
	}
	select {
	case <-ctx.Done():
		return nil, controller.DialResult{Outcome: hunt.Cancelled, Cause: "ORIGINATOR_CANCEL"}, nil
	case <-time.After(s.after):
	}
	if s.outcome != hunt.Answered {
		return nil, controller.DialResult{Outcome: s.outcome, Cause: s.outcome.String()}, nil
	}
	leg := &fakeLeg{id: spec.LegID, ended: make(chan struct{})}
	go func() {
		switch {
		case s.legEnd != nil:
			<-s.legEnd
		default:
			select {
			case <-time.After(s.talk):
			case <-c.ctx.Done():
			}
		}
		close(leg.ended)
	}()
	return leg, controller.DialResult{Outcome: hunt.Answered}, nil
}

func (c *fakeCall) Reject(_ context.Context, cause routing.Cause) error {
	c.mu.Lock()
	c.rejected = cause
	c.cause = cause.String()
	c.mu.Unlock()
	c.hangup()
	return nil
}

func (c *fakeCall) Hangup(_ context.Context, cause routing.Cause) error {
	if c.joined {
		return controller.ErrCallJoined
	}
	c.mu.Lock()
	c.cause = cause.String()
	c.mu.Unlock()
	c.hangup()
	return nil
}

func (c *fakeCall) dials() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.dialed...)
}

type sink struct {
	mu   sync.Mutex
	recs []*controller.Record
}

func (s *sink) Write(_ context.Context, r *controller.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := *r
	s.recs = append(s.recs, &cp)
	return nil
}

func (s *sink) last(t *testing.T) *controller.Record {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.recs) == 0 {
		t.Fatal("no record written")
	}
	return s.recs[len(s.recs)-1]
}

type harness struct {
	eng   *controller.Engine
	store *memory.Store
	recs  *sink
	ms    *fakeMS
}

func newHarness(t *testing.T, edit func(string) string) *harness {
	t.Helper()
	return newHarnessGrace(t, edit, time.Second)
}

// newHarnessGrace is newHarness with the engine's LegGrace set: a test that
// a leg stays counted past it watches for longer than the grace.
func newHarnessGrace(t *testing.T, edit func(string) string, grace time.Duration) *harness {
	t.Helper()
	doc := string(examples.Lab)
	if edit != nil {
		doc = edit(doc)
	}
	plan, _, err := provision.Load("lab.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{store: memory.New(memory.Options{}), recs: &sink{}, ms: &fakeMS{name: "srv11", registered: map[string]bool{}}}
	h.eng = controller.NewEngine(plan, controller.Options{Node: "test", Limiter: h.store, Records: h.recs, Stories: h.store,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), LegGrace: grace})
	return h
}

func (h *harness) count(t *testing.T, scope, name string) int {
	t.Helper()
	n, err := h.store.Count(context.Background(), scope, name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func phone(caller, dialed string) controller.CallInfo {
	return controller.CallInfo{Server: "srv11", Caller: caller, Dialed: dialed}
}

func outcomes(r *controller.Record) string {
	var s []string
	for _, a := range r.Attempts {
		s = append(s, a.Target+":"+a.Outcome.String())
	}
	return strings.Join(s, " ")
}

func TestHuntUntilAnswered(t *testing.T) {
	h := newHarness(t, nil)
	h.ms.registered["user/77721404"] = false
	c := newCall("c1", phone("1100", "8008003"), map[string]script{
		"user/77721403": {outcome: hunt.Busy},
		"user/77721405": {outcome: hunt.NoAnswer, after: 10 * time.Millisecond},
		"user/77721406": {outcome: hunt.Answered, talk: 20 * time.Millisecond},
	})
	if err := h.eng.Handle(h.ms, c); err != nil {
		t.Fatal(err)
	}
	r := h.recs.last(t)
	if got := outcomes(r); got != "77721403:busy 77721404:not-registered 77721405:no-answer 77721406:answered" {
		t.Errorf("attempts: %s", got)
	}
	if got := strings.Join(c.dials(), " "); got != "user/77721403 user/77721405 user/77721406" {
		t.Errorf("dialed %s: the unregistered member must not ring", got)
	}
	if r.Answered != "77721406" || r.Answer == nil || r.Route != "hunt" || r.Billing != "grp1" {
		t.Errorf("record: %+v", r)
	}
}

func TestNobodyAnswersGivesBusy(t *testing.T) {
	h := newHarness(t, nil)
	c := newCall("c2", phone("1400", "8008001"), map[string]script{"user/77721401": {outcome: hunt.NoAnswer}})
	h.eng.Handle(h.ms, c)
	if c.rejected != routing.CauseBusy {
		t.Errorf("caller got %s, want USER_BUSY", c.rejected)
	}
	if r := h.recs.last(t); r.HangupCause != "USER_BUSY" || len(r.Attempts) != 1 {
		t.Errorf("record %+v", r)
	}
}

func TestCallerHangsUpMidHunt(t *testing.T) {
	h := newHarness(t, nil)
	c := newCall("c3", phone("1100", "8008001"), map[string]script{
		"user/77721401": {outcome: hunt.Busy},
		"user/77721402": {outcome: hunt.NoAnswer, after: time.Hour},
		"user/77721403": {outcome: hunt.Answered},
	})
	done := make(chan struct{})
	go func() { h.eng.Handle(h.ms, c); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(c.dials()) < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	c.hangup()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the engine did not stop the hunt")
	}
	if got := strings.Join(c.dials(), " "); got != "user/77721401 user/77721402" {
		t.Errorf("dialed %s: nothing may ring after the caller left", got)
	}
	if r := h.recs.last(t); outcomes(r) != "77721401:busy 77721402:cancelled" {
		t.Errorf("attempts %s", outcomes(r))
	}
}

func TestChannelLimitRefusesTheNextCall(t *testing.T) {
	h := newHarness(t, func(s string) string { return strings.Replace(s, "channel_limit: 30", "channel_limit: 1", 1) })
	first := newCall("c4", phone("3999", "030123456"), map[string]script{"sofia/gateway/pstn/+4930123456": {outcome: hunt.Answered, talk: time.Hour}})
	done := make(chan struct{})
	go func() { h.eng.Handle(h.ms, first); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for h.count(t, "server", "srv11") != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	second := newCall("c5", phone("3998", "030999999"), map[string]script{"sofia/gateway/pstn/+4930999999": {outcome: hunt.Answered}})
	h.eng.Handle(h.ms, second)
	if second.rejected != routing.CauseCongestion || len(second.dials()) != 0 {
		t.Errorf("second call: rejected %s, dialed %v; want NORMAL_CIRCUIT_CONGESTION before dialing", second.rejected, second.dials())
	}
	if n := h.count(t, "server", "srv11"); n != 1 {
		t.Errorf("srv11 count %d while the first call is up, want 1", n)
	}
	first.hangup()
	<-done
	if n := h.count(t, "server", "srv11"); n != 0 {
		t.Errorf("srv11 count %d after both calls, want 0", n)
	}
	if n := h.count(t, "org", "acme"); n != 0 {
		t.Errorf("acme count %d after both calls, want 0", n)
	}
}

func TestRejectedRoute(t *testing.T) {
	h := newHarness(t, nil)
	c := newCall("c6", phone("3999", "555"), nil)
	h.eng.Handle(h.ms, c)
	if c.rejected != routing.CauseUnallocated {
		t.Errorf("got %s, want UNALLOCATED_NUMBER", c.rejected)
	}
	if r := h.recs.last(t); r.Route != "rejected" || r.Reason == "" {
		t.Errorf("record %+v", r)
	}
}

// A panic costs one call: the caller gets NORMAL_TEMPORARY_FAILURE, and the
// record and the metrics say so (not the NORMAL_CLEARING of a call that
// ended by itself).
func TestPanicCostsOneCall(t *testing.T) {
	h := newHarness(t, nil)
	reg := prometheus.NewRegistry()
	h.eng = controller.NewEngine(h.eng.Plan(), controller.Options{Node: "test", Limiter: h.store, Records: h.recs, Stories: h.store,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), LegGrace: time.Second, Metrics: controller.NewMetrics(reg)})
	c := newCall("c7", phone("3999", "030123456"), map[string]script{"sofia/gateway/pstn/+4930123456": {panics: true}})
	if err := h.eng.Handle(h.ms, c); err != nil {
		t.Fatal(err)
	}
	if c.rejected != routing.CauseFailure {
		t.Errorf("caller got %s after the panic, want NORMAL_TEMPORARY_FAILURE", c.rejected)
	}
	if n := h.count(t, "server", "srv11"); n != 0 {
		t.Errorf("count %d after the panic, want 0", n)
	}
	r := h.recs.last(t)
	if r.CallID != "c7" || r.HangupCause != "NORMAL_TEMPORARY_FAILURE" || !strings.Contains(r.Reason, "internal error") {
		t.Errorf("record of the panicked call: id %s cause %s reason %q, want NORMAL_TEMPORARY_FAILURE, internal error",
			r.CallID, r.HangupCause, r.Reason)
	}
	if got := callsByCause(t, reg); got != "NORMAL_TEMPORARY_FAILURE=1" {
		t.Errorf("callctl_calls_total by cause: %s, want NORMAL_TEMPORARY_FAILURE=1", got)
	}
	// The engine still handles calls.
	ok := newCall("c8", phone("3999", "3998"), map[string]script{"user/3998": {outcome: hunt.Answered}})
	h.eng.Handle(h.ms, ok)
	if h.recs.last(t).Answered != "3998" {
		t.Error("the engine stopped handling calls after a panic")
	}
}

// callsByCause is callctl_calls_total summed by cause, "CAUSE=n ...".
func callsByCause(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "callctl_calls_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cause" {
					by[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	var out []string
	for c, n := range by {
		out = append(out, fmt.Sprintf("%s=%g", c, n))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func TestTrunkLegCarriesMarkAndPrefixedCallerID(t *testing.T) {
	h := newHarness(t, nil)
	c := newCall("c9", phone("3999", "122099"), map[string]script{"sofia/gateway/srv12/2099": {outcome: hunt.Answered}})
	h.eng.Handle(h.ms, c)
	if len(c.specs) != 1 {
		t.Fatalf("specs %v", c.specs)
	}
	s := c.specs[0]
	if s.CallerIDNumber != "113999" || s.MarkOrg != "acme" || !s.Trunk || s.LegID == "" {
		t.Errorf("dial spec %+v", s)
	}
	if r := h.recs.last(t); len(r.Legs) != 1 || r.Legs[0].Kind.String() != "trunk-out" {
		t.Errorf("counted legs %+v", r.Legs)
	}
}

func TestDrain(t *testing.T) {
	h := newHarness(t, nil)
	c := newCall("c10", phone("3999", "3998"), map[string]script{"user/3998": {outcome: hunt.Answered, talk: 50 * time.Millisecond}})
	done := make(chan struct{})
	go func() { h.eng.Handle(h.ms, c); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for h.eng.Active() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.eng.Drain(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	<-done
	late := newCall("c11", phone("3999", "3998"), nil)
	if err := h.eng.Handle(h.ms, late); !errors.Is(err, controller.ErrDraining) || late.rejected != routing.CauseOutOfOrder {
		t.Errorf("call during drain: %v, %s", err, late.rejected)
	}
}

// callctl times the ring itself: a member that never answers is cancelled at
// the plan's ring timeout, not when the media server's whole-second timer
// runs out, and the attempt is recorded as no-answer.
func TestRingTimeoutIsCallctls(t *testing.T) {
	h := newHarness(t, func(s string) string { return strings.Replace(s, "ring_timeout: 20s", "ring_timeout: 300ms", 1) })
	c := newCall("c12", phone("1400", "8008001"), map[string]script{"user/77721401": {outcome: hunt.Answered, after: time.Hour}})
	done := make(chan struct{})
	go func() { h.eng.Handle(h.ms, c); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the attempt did not end at its ring timeout")
	}
	r := h.recs.last(t)
	if got := outcomes(r); got != "77721401:no-answer" {
		t.Fatalf("attempts %s, want 77721401:no-answer", got)
	}
	if ring := r.Attempts[0].Ring; ring < 300*time.Millisecond || ring > 600*time.Millisecond {
		t.Errorf("rang %s, want the 300ms ring timeout", ring)
	}
	if c.specs[0].Timeout != 300*time.Millisecond || c.specs[0].BackstopSeconds() != 3 {
		t.Errorf("dial spec timeout %s, backstop %d s", c.specs[0].Timeout, c.specs[0].BackstopSeconds())
	}
	if c.rejected != routing.CauseBusy {
		t.Errorf("caller got %s, want USER_BUSY", c.rejected)
	}
}

// An emergency call goes out even with the server or the org at its limit,
// and its leg is counted.
func TestEmergencyCallIgnoresTheLimit(t *testing.T) {
	for scope, limit := range map[string]string{"server": "channel_limit: 30", "org": "channel_limit: 20"} {
		t.Run(scope, func(t *testing.T) {
			emergencyAtLimit(t, func(s string) string { return strings.Replace(s, limit, "channel_limit: 1", 1) })
		})
	}
}

// emergencyAtLimit: 3999 (acme, srv11) holds the one channel the edited
// plan allows; 3998 (acme, srv11) dials 112.
func emergencyAtLimit(t *testing.T, edit func(string) string) {
	h := newHarness(t, edit)
	first := newCall("e1", phone("3999", "030123456"), map[string]script{"sofia/gateway/pstn/+4930123456": {outcome: hunt.Answered, talk: time.Hour}})
	done := make(chan struct{})
	go func() { h.eng.Handle(h.ms, first); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	// The leg is counted before it is dialed: wait for both.
	for (h.count(t, "server", "srv11") != 1 || len(first.dials()) != 1) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	sos := newCall("e2", phone("3998", "112"), map[string]script{"sofia/gateway/pstn/112": {outcome: hunt.Answered, talk: time.Hour}})
	sdone := make(chan struct{})
	go func() { h.eng.Handle(h.ms, sos); close(sdone) }()
	for (h.count(t, "server", "srv11") != 2 || len(sos.dials()) != 1) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := h.count(t, "server", "srv11"); n != 2 || len(sos.dials()) != 1 {
		t.Fatalf("emergency call at the limit: count %d, dialed %v", n, sos.dials())
	}
	sos.hangup()
	first.hangup()
	<-done
	<-sdone
	if n := h.count(t, "server", "srv11"); n != 0 {
		t.Errorf("count %d after both calls", n)
	}
}

// A transfer that does not name its transferer (a REFER whose Referred-By
// is the phone's device name, an Asterisk transfer of the answered leg)
// routes as dialed by the phone user the channel was connected to.
func TestTransferByTheConnectedPhone(t *testing.T) {
	h := newHarness(t, nil)
	first := newCall("x1", controller.CallInfo{Server: "srv11", Caller: "+4989123456", Dialed: "+4930100100", Source: "127.0.0.99"},
		map[string]script{"user/3999": {outcome: hunt.Answered, talk: 10 * time.Millisecond}})
	h.eng.Handle(h.ms, first)
	if r := h.recs.last(t); r.Answered != "3999" {
		t.Fatalf("first call answered by %q", r.Answered)
	}
	transfer := func(id, from string) *fakeCall {
		return newCall(id, controller.CallInfo{Server: "srv11", Caller: "+4989123456", Dialed: "122099", Source: "127.0.0.99",
			Transfer: routing.Blind, OriginalCaller: "+4989123456", TransferredFrom: from},
			map[string]script{"sofia/gateway/srv12/2099": {outcome: hunt.Answered, talk: 10 * time.Millisecond}})
	}
	c := transfer("x2", "x1")
	h.eng.Handle(h.ms, c)
	if got := c.dials(); len(got) != 1 || got[0] != "sofia/gateway/srv12/2099" || c.specs[0].CallerIDNumber != "+4989123456" {
		t.Errorf("transfer by 3999: dialed %v, specs %+v; want 2099 over the trunk showing the transferred caller", got, c.specs)
	}
	// A channel callctl never connected to a phone: nobody known transferred
	// it, and 122099 is no DID.
	c = transfer("x3", "never-connected")
	h.eng.Handle(h.ms, c)
	if len(c.dials()) != 0 || c.rejected != routing.CauseUnallocated {
		t.Errorf("unknown transferer: dialed %v, rejected %s", c.dials(), c.rejected)
	}
}

// An IVR's or the media server's own transfer of an external call (no user
// transferred it) routes in the org of the call it came from, here the org
// that received the DID, links the record to that call's, and counts the
// transferred party's PSTN leg with the trunk leg (2 + 1).
func TestIVRTransferRoutesInTheCallsOrg(t *testing.T) {
	h := newHarness(t, nil)
	const caller, did = "+4989123456", "+4930100100"
	first := newCall("i1", controller.CallInfo{Server: "srv11", Caller: caller, Dialed: did, Source: "127.0.0.99"},
		map[string]script{"user/3999": {outcome: hunt.Answered, talk: 10 * time.Millisecond}})
	h.eng.Handle(h.ms, first)
	firstRec := h.recs.last(t)
	ivr := func(id, previous string) *fakeCall {
		return newCall(id, controller.CallInfo{Server: "srv11", Caller: caller, Dialed: "122099", Source: "127.0.0.99",
			Transfer: routing.IVR, OriginalCaller: caller, Previous: previous},
			map[string]script{"sofia/gateway/srv12/2099": {outcome: hunt.Answered, talk: 200 * time.Millisecond}})
	}
	// The same channel comes back: its story names the org (acme).
	c := ivr("i1", "")
	done := make(chan struct{})
	go func() { h.eng.Handle(h.ms, c); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(c.dials()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	deadline = time.Now().Add(5 * time.Second)
	for h.count(t, "server", "srv11") != 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := h.count(t, "server", "srv11"); n != 2 {
		t.Errorf("srv11 counts %d during the transferred call, want 2 (the PSTN leg and the trunk leg)", n)
	}
	<-done
	if got := c.dials(); len(got) != 1 || got[0] != "sofia/gateway/srv12/2099" || c.specs[0].CallerIDNumber != caller {
		t.Fatalf("ivr transfer: dialed %v specs %+v; want 2099 over the trunk showing the PSTN caller", got, c.specs)
	}
	rec := h.recs.last(t)
	if rec.Transfer != "ivr" || rec.TransferFrom != firstRec.ID || rec.TransferBy != "" || rec.Org != "acme" || rec.Route != "inter-server" {
		t.Errorf("record: transfer %q from %q by %q org %s route %s; want ivr from %q, nobody, acme, inter-server",
			rec.Transfer, rec.TransferFrom, rec.TransferBy, rec.Org, rec.Route, firstRec.ID)
	}
	if n := h.count(t, "server", "srv11"); n != 0 {
		t.Errorf("srv11 counts %d after the call", n)
	}
	// A channel callctl never routed: the previous destination, a DID, names
	// the org.
	c = ivr("i9", did)
	h.eng.Handle(h.ms, c)
	if got := c.dials(); len(got) != 1 || got[0] != "sofia/gateway/srv12/2099" {
		t.Errorf("ivr transfer from DID %s: dialed %v, rejected %s", did, got, c.rejected)
	}
	// Neither: nothing to route it in, and 122099 is no DID.
	c = ivr("i8", "1000")
	h.eng.Handle(h.ms, c)
	if len(c.dials()) != 0 || c.rejected != routing.CauseUnallocated {
		t.Errorf("ivr transfer of an unknown call: dialed %v, rejected %s", c.dials(), c.rejected)
	}
}

// A call handed back to the media server's dialplan (a feature code: park,
// voicemail) stays callctl's (SPEC §4): its PSTN leg stays counted, and
// the live calls show it in the dialplan, until its channel ends.
func TestHandOffKeepsCounting(t *testing.T) {
	h := newHarness(t, func(doc string) string {
		return strings.Replace(doc, "    default_outgoing_number: \"+4930100100\"\n",
			"    default_outgoing_number: \"+4930100100\"\n    feature_codes: [\"*98\"]\n", 1)
	})
	// 3999 took a PSTN call and transfers it (blind) to *98.
	c := newCall("p1", controller.CallInfo{Server: "srv11", Caller: "3999", Dialed: "*98", Source: "127.0.0.99",
		Transfer: routing.Blind, OriginalCaller: "+4989123456"}, nil)
	done := make(chan struct{})
	go func() { h.eng.Handle(h.ms, c); close(done) }()
	handedOff := func() bool {
		for _, v := range h.eng.Calls() {
			if v.ID == "p1" && v.HandedOff {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(5 * time.Second)
	for !handedOff() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !handedOff() {
		t.Fatalf("the handed-off call is not live as handed off: %+v", h.eng.Calls())
	}
	select {
	case <-done:
		t.Fatal("the handler let the handed-off call go while its channel is up")
	default:
	}
	if n := h.count(t, "server", "srv11"); n != 1 {
		t.Errorf("srv11 counts %d while the call is in the dialplan, want 1 (its PSTN leg)", n)
	}
	c.hangup() // the channel ends in the dialplan
	<-done
	if n := h.count(t, "server", "srv11"); n != 0 {
		t.Errorf("srv11 counts %d after the channel ended", n)
	}
	rec := h.recs.last(t)
	if rec.Route != "feature" || !rec.HandedOff || rec.HangupCause != "HANDOFF" || len(rec.Legs) != 1 {
		t.Errorf("record: route %s handed off %v cause %s legs %+v", rec.Route, rec.HandedOff, rec.HangupCause, rec.Legs)
	}
	// The engine stopping ends a handed-off call too.
	c = newCall("p2", controller.CallInfo{Server: "srv11", Caller: "3999", Dialed: "*98"}, nil)
	done = make(chan struct{})
	go func() { h.eng.Handle(h.ms, c); close(done) }()
	for h.eng.Active() == 0 && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(5 * time.Millisecond)
	}
	h.eng.Stop()
	<-done
	if c.EndCause() != routing.CauseNormal.String() {
		t.Errorf("handed-off call at stop: end cause %q, want hung up", c.EndCause())
	}
}

// An attended transfer (SPEC §4, §5): a PSTN call answered by 3999, who
// consults 2099 on server 12 and transfers (a REFER with Replaces). The
// media server joins the PSTN caller to the trunk leg of the consult call
// and ends 3999's two legs: the joined legs stay counted (2 on server 11:
// the PSTN leg and the trunk leg), the consult call's record says attended
// by 3999 from the PSTN call's record, and everything goes when the joined
// call ends.
func TestAttendedTransferKeepsTheJoinedLegsCounted(t *testing.T) {
	// A short grace: the joined legs must outlive it (they are not legs
	// whose end went unreported).
	h := newHarnessGrace(t, nil, 50*time.Millisecond)
	phoneEnd := make(chan struct{})
	pstn := newCall("a1", controller.CallInfo{Server: "srv11", Caller: "+4989123456", Dialed: "+4930100100", Source: "127.0.0.99"},
		map[string]script{"user/3999": {outcome: hunt.Answered, legEnd: phoneEnd}})
	pstn.joined = true
	trunkEnd := make(chan struct{})
	consult := newCall("c1", phone("3999", "122099"),
		map[string]script{"sofia/gateway/srv12/2099": {outcome: hunt.Answered, legEnd: trunkEnd}})
	pdone, cdone := make(chan struct{}), make(chan struct{})
	go func() { h.eng.Handle(h.ms, pstn); close(pdone) }()
	waitCalls := func(n int) {
		deadline := time.Now().Add(5 * time.Second)
		for {
			answered := 0
			for _, v := range h.eng.Calls() {
				if v.Answered != "" {
					answered++
				}
			}
			if answered >= n || time.Now().After(deadline) {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitCalls(1)
	go func() { h.eng.Handle(h.ms, consult); close(cdone) }()
	waitCalls(2)
	if n := h.count(t, "server", "srv11"); n != 2 {
		t.Fatalf("srv11 counts %d while 3999 consults, want 2", n)
	}
	// The transfer: 3999's consult call is replaced, its phone leg ends.
	consult.mu.Lock()
	consult.cause = controller.CauseAttendedTransfer
	consult.mu.Unlock()
	consult.hangup()
	close(phoneEnd)
	// Both handlers keep what the joined call counts until it ends (a
	// while is watched: nothing is to happen).
	deadline := time.Now().Add(500 * time.Millisecond)
	for h.eng.Active() == 2 && time.Now().Before(deadline) {
		if n := h.count(t, "server", "srv11"); n != 2 {
			t.Fatalf("srv11 counts %d after the transfer, want 2 (the joined PSTN and trunk legs)", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-pdone:
		t.Fatal("the PSTN call was let go while its channel is joined to the trunk leg")
	case <-cdone:
		t.Fatal("the consult call was let go while its trunk leg is joined to the PSTN caller")
	default:
	}
	// The joined call ends: the trunk leg and the PSTN caller go.
	close(trunkEnd)
	<-cdone
	consultRec := h.recs.last(t)
	if consultRec.CallID != "c1" || consultRec.Transfer != "attended" || consultRec.TransferBy != "3999" || consultRec.TransferFrom == "" {
		t.Errorf("consult record: call %s transfer %q by %q from %q; want attended by 3999 from the PSTN call's record",
			consultRec.CallID, consultRec.Transfer, consultRec.TransferBy, consultRec.TransferFrom)
	}
	if n := h.count(t, "server", "srv11"); n != 1 {
		t.Errorf("srv11 counts %d once the trunk leg ended, want 1 (the PSTN leg, still up)", n)
	}
	pstn.hangup()
	<-pdone
	rec := h.recs.last(t)
	if rec.CallID != "a1" || consultRec.TransferFrom != rec.ID {
		t.Errorf("consult record links to %q, want the PSTN call's record %q (%s)", consultRec.TransferFrom, rec.ID, rec.CallID)
	}
	if n := h.count(t, "server", "srv11"); n != 0 {
		t.Errorf("srv11 counts %d after the joined call ended", n)
	}
}

// A phone's own consultation (FreeSWITCH's att_xfer originates it from the
// phone's channel, carrying the held party's number) routes as dialed by
// the user callctl connected that channel to: shown as 113999 over the
// trunk, recorded as attended by 3999 from the held call's record. A call
// that names a channel callctl did not connect to a user is routed as its
// caller id says (here refused: no user).
func TestConsultationRoutesAsTheConnectedUser(t *testing.T) {
	h := newHarness(t, nil)
	const caller = "+4989123456"
	legEnd := make(chan struct{})
	first := newCall("p1", controller.CallInfo{Server: "srv11", Caller: caller, Dialed: "+4930100100", Source: "127.0.0.99"},
		map[string]script{"user/3999": {outcome: hunt.Answered, legEnd: legEnd}})
	done := make(chan struct{})
	go func() { h.eng.Handle(h.ms, first); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for !answeredBy(h.eng, "p1", "3999") && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	leg := first.specs[0].LegID
	consult := func(id, of string) *fakeCall {
		return newCall(id, controller.CallInfo{Server: "srv11", Caller: caller, CallerName: caller, Dialed: "122099", ConsultationOf: of},
			map[string]script{"sofia/gateway/srv12/2099": {outcome: hunt.Answered, talk: 10 * time.Millisecond}})
	}
	c := consult("c1", leg)
	h.eng.Handle(h.ms, c)
	rec := h.recs.last(t)
	if got := c.dials(); len(got) != 1 || got[0] != "sofia/gateway/srv12/2099" || c.specs[0].CallerIDNumber != "113999" {
		t.Errorf("consultation: dialed %v, specs %+v; want 2099 over the trunk showing 113999", got, c.specs)
	}
	close(legEnd)
	<-done
	firstRec := h.recs.last(t)
	if rec.Caller != "3999" || rec.CallerOrg != "acme" || rec.Transfer != "attended" || rec.TransferBy != "3999" ||
		firstRec.ID == "" || rec.TransferFrom != firstRec.ID {
		t.Errorf("consultation record: caller %s of %s, transfer %q from %q by %q; want 3999 of acme, attended from %q by 3999",
			rec.Caller, rec.CallerOrg, rec.Transfer, rec.TransferFrom, rec.TransferBy, firstRec.ID)
	}
	c = consult("c2", "not-a-leg-of-callctl")
	h.eng.Handle(h.ms, c)
	if len(c.dials()) != 0 || c.rejected != routing.CauseRejected {
		t.Errorf("consultation from an unknown channel: dialed %v, rejected %s; want refused", c.dials(), c.rejected)
	}
}

// answeredBy says whether the engine shows call id answered by user.
func answeredBy(e *controller.Engine, id, user string) bool {
	for _, v := range e.Calls() {
		if v.ID == id && v.Answered == user {
			return true
		}
	}
	return false
}
