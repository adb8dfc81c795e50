package asterisk

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/hunt"
	"github.com/callctl/callctl/controller/routing"
	"github.com/callctl/callctl/integration/sim/callmodel"
)

// connectedTrunkCall sets up 2001 (srv12) talking to 3001 (srv13) over the
// trunk: one counted leg on each server.
func connectedTrunkCall(t *testing.T, l *lab) (caller, far string) {
	t.Helper()
	l.fleet.SetPhone("srv13", "3001", callmodel.Answer(0))
	caller = l.call("2001", "133001", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool { return l.obs.get(caller).bridged != "" }, "caller bridged")
	waitFor(t, 10*time.Second, func() bool {
		r := l.fleet.RingsOf("srv13", "3001")
		return len(r) == 1 && l.obs.get(r[0].UUID).bridged != ""
	}, "3001 bridged")
	for _, srv := range []string{"srv12", "srv13"} {
		waitFor(t, 5*time.Second, func() bool { n, _ := l.store.Count(context.Background(), "server", srv); return n == 1 },
			srv+" counts the trunk leg")
	}
	return caller, l.fleet.RingsOf("srv13", "3001")[0].UUID
}

// The WebSocket drops and stays down while the caller hangs up: callctl
// reconnects, learns from GET /channels that the caller is gone, and ends
// the call, its leg, bridge and counts.
func TestWebSocketDropCallerLeavesMeanwhile(t *testing.T) {
	base := runtime.NumGoroutine()
	l := newLab(t, labOptions{})
	caller, _ := connectedTrunkCall(t, l)
	c := l.cli["srv12"]
	before := c.Stats()
	ast := l.ast["srv12"]
	ast.FailREST(503, 700*time.Millisecond) // upgrades fail too: the socket stays down
	ast.DropWebSockets()
	waitFor(t, 5*time.Second, func() bool { return !c.Connected() }, "socket down")
	l.hangup("srv12", caller)
	waitFor(t, 10*time.Second, func() bool { return c.Connected() }, "socket back")
	l.settled(15 * time.Second)
	after := c.Stats()
	if after.Reconciles <= before.Reconciles || after.Disconnects <= before.Disconnects {
		t.Errorf("stats before %+v after %+v", before, after)
	}
	if !l.logs.contains("ARI WebSocket lost; reconnecting") || !l.logs.contains("ARI reconnected: events may have been missed") {
		t.Errorf("connection changes not logged")
	}
	if len(l.logs.lines("caller's channel vanished while events were missed")) == 0 {
		t.Errorf("reconcile did not find the caller gone")
	}
	rec := l.record("2001", "133001")
	if rec.Answer == nil {
		t.Errorf("record %+v", rec)
	}
	l.close()
	goroutinesSettled(t, base)
}

// The far end hangs up while the socket is down: the leg's end is found by
// reconcile and the caller is hung up.
func TestWebSocketDropLegLeavesMeanwhile(t *testing.T) {
	l := newLab(t, labOptions{})
	caller, far := connectedTrunkCall(t, l)
	c := l.cli["srv12"]
	ast := l.ast["srv12"]
	ast.FailREST(503, 700*time.Millisecond)
	ast.DropWebSockets()
	waitFor(t, 5*time.Second, func() bool { return !c.Connected() }, "socket down")
	l.hangup("srv13", far)
	waitFor(t, 10*time.Second, func() bool { return !l.obs.get(caller).hungup.IsZero() }, "caller hung up by callctl")
	l.settled(15 * time.Second)
}

// Asterisk restarts mid-call: every channel is gone at once without an
// event. callctl notices the restart, reconciles, and releases everything.
func TestAsteriskRestartMidCall(t *testing.T) {
	base := runtime.NumGoroutine()
	l := newLab(t, labOptions{})
	connectedTrunkCall(t, l)
	c := l.cli["srv12"]
	if err := l.ast["srv12"].Restart(context.Background(), 300*time.Millisecond, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return c.Stats().Reconciles > 0 }, "reconciled after restart")
	l.settled(15 * time.Second)
	if !l.logs.contains("Asterisk restarted") {
		t.Errorf("restart not logged:\n%s", l.logs.tail(30))
	}
	// The restarted server takes calls again.
	l.fleet.SetPhone("srv12", "2002", callmodel.Answer(0))
	l.call("2001", "2002", callmodel.CallerPlan{HangupAfterAnswer: 100 * time.Millisecond})
	if rec := l.record("2001", "2002"); rec.Answered != "2002" {
		t.Errorf("call after restart: %+v", rec.Attempts)
	}
	l.settled(15 * time.Second)
	l.close()
	goroutinesSettled(t, base)
}

// ARI unreachable for longer than LostAfter: the server is lost for good,
// the calls on it end (contexts cancelled, counts released) although
// callctl cannot reach it; once it is back, their channels are hung up.
func TestServerLostForGood(t *testing.T) {
	l := newLab(t, labOptions{lostAfter: 300 * time.Millisecond})
	connectedTrunkCall(t, l)
	c := l.cli["srv12"]
	ast := l.ast["srv12"]
	ast.FailREST(503, 3*time.Second)
	ast.DropWebSockets()
	waitFor(t, 10*time.Second, func() bool {
		n, _ := l.store.Count(context.Background(), "server", "srv12")
		return c.Stats().Active == 0 && n == 0
	}, "calls of the lost server ended")
	if !l.logs.contains("ARI server lost: ending its calls") {
		t.Errorf("loss not logged")
	}
	l.settled(20 * time.Second)
}

// The server stays unreachable longer than callctl keeps trying to hang up
// the calls it lost: once it is back, reconcile hangs up what is still up,
// whether the call is still tracked (its cleanup still running) or already
// forgotten (then its channels are found in the application's list).
func TestLostCallsHungUpWhenServerReturns(t *testing.T) {
	cases := []struct {
		name  string
		fault time.Duration
		log   string
	}{
		{"still tracked", 2500 * time.Millisecond, "hanging up a channel of a call ended while the server was lost"},
		{"forgotten", 7 * time.Second, "hanging up a channel no call owns any more"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, labOptions{lostAfter: 200 * time.Millisecond, requestTimeout: 300 * time.Millisecond})
			connectedTrunkCall(t, l)
			time.Sleep(2100 * time.Millisecond) // older than the orphan check's 2 s margin
			c := l.cli["srv12"]
			ast := l.ast["srv12"]
			ast.FailREST(503, tc.fault)
			ast.DropWebSockets()
			waitFor(t, 10*time.Second, func() bool { return l.logs.contains("hanging up the caller failed; giving up") }, "cleanup gave up")
			waitFor(t, 10*time.Second, func() bool { return c.Connected() }, "back")
			l.settled(15 * time.Second)
			if !l.logs.contains(tc.log) {
				t.Errorf("log has no %q", tc.log)
			}
		})
	}
}

// ARI answers 5xx for a while: the hunt cannot place a leg, the caller is
// still hung up once ARI answers again, and nothing is left behind.
func TestREST5xx(t *testing.T) {
	l := newLab(t, labOptions{})
	l.fleet.SetPhone("srv12", "2101", callmodel.Answer(0))
	l.fleet.SetPhone("srv12", "2102", callmodel.Answer(0))
	l.fleet.SetPhone("srv12", "2103", callmodel.Answer(0))
	l.fleet.SetPhone("srv12", "2104", callmodel.Answer(0))
	l.ast["srv12"].FailREST(500, 1500*time.Millisecond)
	caller := l.call("2001", "8008001", callmodel.CallerPlan{})
	rec := l.record("2001", "8008001")
	for _, a := range rec.Attempts {
		if a.Outcome != hunt.Unreachable && a.Outcome != hunt.Failed {
			t.Errorf("attempt %s: %s during the fault", a.Target, a.Outcome)
		}
	}
	waitFor(t, 15*time.Second, func() bool { return !l.obs.get(caller).hungup.IsZero() }, "caller hung up after the fault")
	l.settled(15 * time.Second)
	if n := len(l.fleet.Rings()); n != 0 {
		t.Errorf("%d rings while ARI failed", n)
	}
	// And calls work again.
	l.call("2002", "8008001", callmodel.CallerPlan{HangupAfterAnswer: 100 * time.Millisecond})
	if rec := l.record("2002", "8008001"); rec.Answered != "77700001" {
		t.Errorf("after the fault: %v", outcomes(rec.Attempts))
	}
	l.settled(15 * time.Second)
}

// Event types callctl does not know, broken JSON and a frame beyond the
// size limit arrive mid-call: the call goes on and ends normally, and the
// next call works.
func TestUnknownEventsMidCall(t *testing.T) {
	l := newLab(t, labOptions{})
	l.fleet.SetPhone("srv12", "2002", callmodel.Answer(0))
	caller := l.call("2001", "2002", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool { return l.obs.get(caller).bridged != "" }, "bridged")
	c := l.cli["srv12"]
	frames := []string{
		`{"type":"ChannelTransfer","refer_to":{"requested_destination":{"destination":"2099"}},"application":"callctl"}`,
		`{"type":"ChannelTransfer","state":"channel_progress"}`,
		`{"type":"CallBroadcast","channel":{"id":"x"}}`,
		`{"type":"ApplicationRegistered"}`,
		`{"type":"ChannelToneDetected","channel":{"id":"x"}}`,
		`{"type":"CallClaimed","channel":{"id":"x"}}`, `{"type":"RESTResponse"}`,
		`not json at all`, `{"type":`, `[1,2,3]`, `{}`, `{"type":5}`,
		`{"type":"StasisEnd","channel":{"id":42}}`,
		`{"type":"ChannelDestroyed","channel":{"name":"no id"},"cause":"x"}`,
		`{"type":"StasisStart","channel":{"id":""}}`,
	}
	xfer := filepath.Join(traceDir, "..", "transfers", "asterisk", "ast1_case3_blind_refer_ari-only_subscribeAll_false.jsonl")
	if data, err := os.ReadFile(xfer); err == nil {
		for _, line := range bytes.Split(data, []byte("\n")) {
			if bytes.Contains(line, []byte(`"type":"ChannelTransfer"`)) {
				frames = append(frames, string(line))
			}
		}
	} else {
		t.Logf("recorded ChannelTransfer not used: %v", err)
	}
	before := c.Stats()
	for _, f := range frames {
		if !l.ast["srv12"].SendRaw("callctl", []byte(f)) {
			t.Fatal("no socket to send on")
		}
	}
	waitFor(t, 10*time.Second, func() bool {
		s := c.Stats()
		return s.Ignored-before.Ignored >= 5 && s.BadFrames-before.BadFrames >= 6
	}, "odd frames handled")
	// Beyond the frame limit: the socket is dropped and re-established.
	huge := `{"type":"ChannelVarset","variable":"X","value":"` + strings.Repeat("A", 5<<20) + `"}`
	l.ast["srv12"].SendRaw("callctl", []byte(huge))
	waitFor(t, 10*time.Second, func() bool { return c.Stats().Reconciles > before.Reconciles && c.Connected() }, "reconnected after the huge frame")
	if s := l.obs.get(caller); !s.hungup.IsZero() {
		t.Fatalf("the call was dropped: %+v", s)
	}
	l.hangup("srv12", caller)
	l.settled(15 * time.Second)
	l.fleet.SetPhone("srv12", "2101", callmodel.Answer(0))
	l.call("2002", "8008001", callmodel.CallerPlan{HangupAfterAnswer: 100 * time.Millisecond})
	if rec := l.record("2002", "8008001"); rec.Answered != "77700001" {
		t.Errorf("next call: %v", outcomes(rec.Attempts))
	}
	l.settled(15 * time.Second)
}

// Dialed strings with Asterisk syntax in them never reach a dial string:
// routing rejects them, and the adapter refuses them even if asked.
func TestInjectionDialed(t *testing.T) {
	l := newLab(t, labOptions{})
	l.fleet.SetPhone("srv12", "2002", callmodel.Answer(0))
	for _, d := range []string{"2002/evil", "PJSIP/x&PJSIP/y", "2002@other-context", "20\x0002", "2002\r\nX-Y: z", "2002,30", "2002&PJSIP/2101"} {
		caller := l.call("2001", d, callmodel.CallerPlan{})
		waitFor(t, 10*time.Second, func() bool { return !l.obs.get(caller).hungup.IsZero() }, "rejected: "+d)
		if got := l.obs.get(caller).cause.Q850(); got != 28 {
			t.Errorf("%q: cause %d, want 28", d, got)
		}
	}
	if r := l.fleet.Rings(); len(r) != 0 {
		t.Errorf("rings: %+v", r)
	}
	l.settled(15 * time.Second)
}

// injector is a handler that asks the adapter itself to do unsafe things.
type injector struct {
	mu   sync.Mutex
	errs []error
	done chan struct{}
}

func (h *injector) Handle(ms controller.MediaServer, call controller.Call) error {
	defer close(h.done)
	ctx := context.Background()
	specs := []controller.DialSpec{
		{LegID: "leg-a", Target: "PJSIP/x&PJSIP/y"},
		{LegID: "leg-b", Target: "PJSIP/2002/evil"},
		{LegID: "leg-c", Target: "Local/2002@other-context,evil"},
		{LegID: "leg-d", Target: "PJSIP/2002\r\nX: y"},
		{LegID: "leg-e", Target: "PJSIP/2002", CallerIDNumber: "1000>evil"},
		{LegID: "leg-f", Target: "PJSIP/2002@srv13", MarkOrg: "acme)\nSet(x=1"},
		{LegID: "leg-g/../x", Target: "PJSIP/2002"},
	}
	for _, s := range specs {
		_, res, err := call.Dial(ctx, s)
		h.mu.Lock()
		if err == nil || res.Outcome == hunt.Answered {
			h.errs = append(h.errs, errors.New("accepted "+s.Target))
		} else if !errors.Is(err, ErrUnsafe) {
			h.errs = append(h.errs, err)
		}
		h.mu.Unlock()
	}
	if err := call.Handoff(ctx, "2002,1"); !errors.Is(err, ErrUnsafe) {
		h.errs = append(h.errs, errors.New("handoff accepted"))
	}
	if ok, err := ms.Registered(ctx, "PJSIP/2002&PJSIP/2101"); ok || !errors.Is(err, ErrUnsafe) {
		h.errs = append(h.errs, errors.New("registered accepted"))
	}
	return call.Reject(ctx, routing.CauseRejected)
}

func TestInjectionAdapter(t *testing.T) {
	h := &injector{done: make(chan struct{})}
	l := newLab(t, labOptions{handler: func(*controller.Engine) Handler { return h }})
	l.fleet.SetPhone("srv12", "2002", callmodel.Answer(0))
	caller := l.call("2001", "2002", callmodel.CallerPlan{})
	<-h.done
	for _, err := range h.errs {
		t.Error(err)
	}
	waitFor(t, 10*time.Second, func() bool { return !l.obs.get(caller).hungup.IsZero() }, "rejected")
	if got := l.obs.get(caller).cause.Q850(); got != 21 {
		t.Errorf("cause %d, want 21", got)
	}
	if r := l.fleet.Rings(); len(r) != 0 {
		t.Errorf("rings: %+v", r)
	}
	l.settled(15 * time.Second)
}

// MediaServer: registration from the endpoint state, and the live channels.
func TestMediaServer(t *testing.T) {
	l := newLab(t, labOptions{})
	l.fleet.SetPhone("srv12", "2101", callmodel.Answer(0))
	l.fleet.SetPhone("srv12", "2102", callmodel.Unregistered())
	c := l.cli["srv12"]
	ctx := context.Background()
	cases := map[string]bool{
		"PJSIP/2101": true, "PJSIP/2102": false, "PJSIP/2999": false,
		"Local/101@targets": true, "PJSIP/3001@srv13": true, "PJSIP/+4930@pstn": true,
	}
	for ep, want := range cases {
		got, err := c.Registered(ctx, ep)
		if err != nil || got != want {
			t.Errorf("Registered(%s) = %v, %v; want %v", ep, got, err, want)
		}
	}
	ids, err := c.LiveChannels(ctx)
	if err != nil || len(ids) != 0 {
		t.Errorf("LiveChannels = %v, %v", ids, err)
	}
	l.fleet.SetPhone("srv12", "2002", callmodel.RingForever())
	l.call("2001", "2002", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool { ids, _ = c.LiveChannels(ctx); return len(ids) == 2 }, "caller and leg live")
	if c.Name() != "srv12" {
		t.Errorf("Name = %q", c.Name())
	}
}

// Shutdown: no new calls (refused with 27, DESTINATION_OUT_OF_ORDER), the
// active one goes on until it ends, then Run returns.
func TestShutdownDrains(t *testing.T) {
	l := newLab(t, labOptions{})
	l.fleet.SetPhone("srv12", "2002", callmodel.Answer(0))
	l.fleet.SetPhone("srv12", "2101", callmodel.Answer(0))
	active := l.call("2001", "2002", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool { return l.obs.get(active).bridged != "" }, "bridged")
	l.cancel()
	waitFor(t, 5*time.Second, func() bool { return l.logs.contains("waiting for active calls to end") }, "stopping")
	refused := l.call("2002", "8008001", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool { return !l.obs.get(refused).hungup.IsZero() }, "new call refused")
	if got := l.obs.get(refused).cause.Q850(); got != 27 {
		t.Errorf("refused with %d, want 27", got)
	}
	// Run is stopping (it said so) and still serving (it refused the new
	// call): it must not have returned while the active call is up.
	if l.active.Load() == 0 {
		t.Fatal("Run returned with a call still up")
	}
	stopped := make(chan struct{})
	go func() { l.runs.Wait(); close(stopped) }()
	if s := l.obs.get(active); !s.hungup.IsZero() {
		t.Fatalf("active call ended by the shutdown: %+v", s)
	}
	l.hangup("srv12", active)
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after the last call ended")
	}
}
