package freeswitch

import (
	"context"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callctl/callctl/controller/routing"
	"github.com/callctl/callctl/integration/sim/callmodel"
)

// A hunt over three phones: the first is busy, the second is not registered
// (skipped without ringing), the third answers.
func TestHuntBusyUnregisteredAnswer(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		l := newTestLab(t, labOptions{})
		defer l.close()
		l.fleet.SetPhone("srv11", "77721401", callmodel.Busy())
		l.fleet.SetPhone("srv11", "77721402", callmodel.Unregistered())
		l.fleet.SetPhone("srv11", "77721403", callmodel.Answer(100*time.Millisecond))
		id := l.call("srv11", "3999", "Aiko Sato", "8008001", callmodel.CallerPlan{HangupAfterAnswer: 300 * time.Millisecond})
		if c := l.waitHangup(id, 15*time.Second); c != "NORMAL_CLEARING" {
			t.Errorf("caller hangup cause %q", c)
		}
		rec := l.record(id)
		if got, want := outcomes(rec), []string{"77721401:busy", "77721402:not-registered", "77721403:answered"}; !slices.Equal(got, want) {
			t.Errorf("attempts %v, want %v", got, want)
		}
		if rec.Attempts[0].Cause != "USER_BUSY" {
			t.Errorf("busy attempt cause %q", rec.Attempts[0].Cause)
		}
		r := l.ringed("srv11", "77721401", "77721402", "77721403")
		if len(r["77721401"]) != 1 || r["77721401"][0].Outcome != callmodel.OutcomeBusy {
			t.Errorf("77721401 rings %+v", r["77721401"])
		}
		if len(r["77721402"]) != 0 {
			t.Errorf("the unregistered member rang: %+v", r["77721402"])
		}
		if len(r["77721403"]) != 1 || r["77721403"][0].Outcome != callmodel.OutcomeAnswered {
			t.Fatalf("77721403 rings %+v", r["77721403"])
		}
		// The member sees the caller's extension and name.
		if c := r["77721403"][0].Caller; c.Number != "3999" || c.Name != "Aiko Sato" {
			t.Errorf("77721403 saw caller %+v", c)
		}
		l.waitIdle(10 * time.Second)
	}()
	checkGoroutines(t, base)
}

// A hunt of the server's own phones is rung as one bridge: FreeSWITCH moves
// from member to member by itself (the caller's originate_causes lists
// every leg of the hunt, not only the last bridge's), and the record still
// has one attempt per member, in order, with its own cause.
func TestHuntInOneBridge(t *testing.T) {
	l := newTestLab(t, labOptions{})
	defer l.close()
	l.fleet.SetPhone("srv11", "77721401", callmodel.Busy())
	l.fleet.SetPhone("srv11", "77721402", callmodel.Reject())
	l.fleet.SetPhone("srv11", "77721403", callmodel.Answer(50*time.Millisecond))
	id := l.call("srv11", "3999", "Aiko Sato", "8008001", callmodel.CallerPlan{HangupAfterAnswer: 200 * time.Millisecond})
	if c := l.waitHangup(id, 15*time.Second); c != "NORMAL_CLEARING" {
		t.Errorf("caller hangup cause %q", c)
	}
	rec := l.record(id)
	if got, want := outcomes(rec), []string{"77721401:busy", "77721402:rejected", "77721403:answered"}; !slices.Equal(got, want) {
		t.Fatalf("attempts %v, want %v", got, want)
	}
	if rec.Attempts[0].Cause != "USER_BUSY" || rec.Attempts[1].Cause != "CALL_REJECTED" {
		t.Errorf("attempt causes %q, %q", rec.Attempts[0].Cause, rec.Attempts[1].Cause)
	}
	r := l.ringed("srv11", "77721401", "77721402", "77721403")
	var legs []string
	for _, n := range []string{"77721401", "77721402", "77721403"} {
		if len(r[n]) != 1 {
			t.Fatalf("%s rang %d times", n, len(r[n]))
		}
		legs = append(legs, r[n][0].UUID)
	}
	causes := l.events.originateCauses(id)
	for _, leg := range legs {
		if !strings.Contains(causes, leg+";") {
			t.Errorf("the caller's originate_causes %q do not list leg %s: not one bridge", causes, leg)
		}
	}
	l.waitIdle(10 * time.Second)
}

// Nobody answers: a member rings for its ring timeout (no answer), the
// others are busy; the caller gets USER_BUSY (SIP 486).
func TestHuntNobodyAnswers(t *testing.T) {
	l := newTestLab(t, labOptions{ringTimeout: "1s"})
	defer l.close()
	l.fleet.SetPhone("srv11", "77721401", callmodel.RingForever())
	l.fleet.SetPhone("srv11", "77721402", callmodel.Busy())
	l.fleet.SetPhone("srv11", "77721403", callmodel.Reject())
	id := l.call("srv11", "3999", "", "8008001", callmodel.CallerPlan{})
	if c := l.waitHangup(id, 15*time.Second); c != "USER_BUSY" {
		t.Errorf("caller hangup cause %q, want USER_BUSY", c)
	}
	rec := l.record(id)
	if got, want := outcomes(rec), []string{"77721401:no-answer", "77721402:busy", "77721403:rejected"}; !slices.Equal(got, want) {
		t.Errorf("attempts %v, want %v", got, want)
	}
	if ring := rec.Attempts[0].Ring; ring < 900*time.Millisecond || ring > 5*time.Second {
		t.Errorf("the no-answer member rang %v with a 1s ring timeout", ring)
	}
	l.waitIdle(10 * time.Second)
}

// The caller hangs up while the first member rings: that leg is cancelled at
// once, nothing rings after, every count is back to 0.
func TestCallerHangsUpMidHunt(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		l := newTestLab(t, labOptions{ringTimeout: "20s"})
		defer l.close()
		for _, n := range []string{"77721401", "77721402", "77721403"} {
			l.fleet.SetPhone("srv11", n, callmodel.RingForever())
		}
		start := time.Now()
		id := l.call("srv11", "3999", "", "8008001", callmodel.CallerPlan{GiveUpAfter: 400 * time.Millisecond})
		l.waitHangup(id, 10*time.Second)
		var r []callmodel.Ring
		if !waitFor(5*time.Second, func() bool {
			r = l.fleet.RingsOf("srv11", "77721401")
			return len(r) == 1 && r[0].Ended()
		}) {
			t.Fatalf("77721401 rings %+v", r)
		}
		if r[0].Outcome != callmodel.OutcomeCancelled {
			t.Errorf("ringing member outcome %s", r[0].Outcome)
		}
		if d := r[0].End.Sub(start); d > 3*time.Second {
			t.Errorf("the ringing leg ended %v after the call started (caller left at 400ms)", d)
		}
		l.waitIdle(10 * time.Second)
		for _, n := range []string{"77721402", "77721403"} {
			if rr := l.fleet.RingsOf("srv11", n); len(rr) != 0 {
				t.Errorf("%s rang after the caller left: %+v", n, rr)
			}
		}
		rec := l.record(id)
		if got := outcomes(rec); !slices.Equal(got, []string{"77721401:cancelled"}) {
			t.Errorf("attempts %v", got)
		}
	}()
	checkGoroutines(t, base)
}

// Rejections reach the caller with the right cause: unknown number 404,
// a destination the caller may not dial 403, a channel limit 503.
func TestRejections(t *testing.T) {
	l := newTestLab(t, labOptions{channelLimit: 1})
	defer l.close()
	l.fleet.SetPSTN("+4930555123", callmodel.Answer(0))
	cases := []struct {
		from, dialed string
		cause        routing.Cause
	}{
		{"3999", "5555", routing.CauseUnallocated},
		{"2098", "030555123", routing.CauseRejected}, // 2098 has no outbound rule
		{"3999", "12*99#", routing.CauseUnallocated},
	}
	for _, tc := range cases {
		id := l.call("srv11", tc.from, "", tc.dialed, callmodel.CallerPlan{})
		if got := l.waitHangup(id, 10*time.Second); got != tc.cause.String() {
			t.Errorf("%s dials %s: caller hung up with %s, want %s", tc.from, tc.dialed, got, tc.cause)
		}
		if got := l.events.sipStatus(id); got != tc.cause.SIP() {
			t.Errorf("%s dials %s: caller got SIP %d, want %d", tc.from, tc.dialed, got, tc.cause.SIP())
		}
	}
	// srv11 allows one counted leg: a first external call holds it, a second
	// is refused with NORMAL_CIRCUIT_CONGESTION (503) and nothing is dialed.
	first := l.call("srv11", "3999", "", "030555123", callmodel.CallerPlan{})
	if !waitFor(10*time.Second, func() bool {
		r := l.fleet.RingsOf("", "+4930555123")
		return len(r) == 1 && r[0].Outcome == callmodel.OutcomeAnswered
	}) {
		t.Fatalf("the first external call was not answered: %+v", l.fleet.RingsOf("", "+4930555123"))
	}
	second := l.call("srv11", "3998", "", "030555123", callmodel.CallerPlan{})
	if got := l.waitHangup(second, 10*time.Second); got != routing.CauseCongestion.String() {
		t.Errorf("second external call: %s, want %s", got, routing.CauseCongestion)
	}
	if got := l.events.sipStatus(second); got != 503 {
		t.Errorf("second external call: SIP %d, want 503", got)
	}
	if r := l.fleet.RingsOf("", "+4930555123"); len(r) != 1 {
		t.Errorf("the refused call rang the PSTN: %d rings", len(r))
	}
	// Caller ID of the external call: the org's default number.
	if r := l.fleet.RingsOf("", "+4930555123"); len(r) == 1 && r[0].Caller.Number != "+4930100100" {
		t.Errorf("external call presented %q", r[0].Caller.Number)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.ms["srv11"].Kill(ctx, first, "NORMAL_CLEARING"); err != nil {
		t.Fatal(err)
	}
	l.waitIdle(10 * time.Second)
}

// 3999 on srv11 dials 122099: the call goes over the trunk to srv12 marked
// with its org, srv12 recognises the trunk and rings 2099 showing 113999.
func TestTrunkCallShowsPrefixedCaller(t *testing.T) {
	l := newTestLab(t, labOptions{})
	defer l.close()
	l.fleet.SetPhone("srv12", "2099", callmodel.Answer(50*time.Millisecond))
	id := l.call("srv11", "3999", "Aiko Sato", "122099", callmodel.CallerPlan{HangupAfterAnswer: 300 * time.Millisecond})
	if c := l.waitHangup(id, 15*time.Second); c != "NORMAL_CLEARING" {
		t.Errorf("caller hangup cause %q", c)
	}
	r := l.fleet.RingsOf("srv12", "2099")
	if len(r) != 1 {
		t.Fatalf("2099 rings: %+v", r)
	}
	if r[0].Caller.Number != "113999" {
		t.Errorf("2099 saw caller %q, want 113999", r[0].Caller.Number)
	}
	if r[0].Outcome != callmodel.OutcomeAnswered {
		t.Errorf("2099 outcome %s", r[0].Outcome)
	}
	rec := l.record(id)
	if rec.Route != "inter-server" || len(rec.Attempts) != 1 || rec.Attempts[0].Outcome.String() != "answered" {
		t.Errorf("srv11 record: route %s attempts %v", rec.Route, outcomes(rec))
	}
	// The receiving side's record: a trunk call for acme's 2099.
	var far string
	l.records.mu.Lock()
	for cid, rr := range l.records.byCall {
		if rr.Server == "srv12" {
			far = cid
		}
	}
	l.records.mu.Unlock()
	if far == "" {
		l.waitIdle(10 * time.Second)
		l.records.mu.Lock()
		for cid, rr := range l.records.byCall {
			if rr.Server == "srv12" {
				far = cid
			}
		}
		l.records.mu.Unlock()
	}
	rr := l.record(far)
	if rr.Origin != "trunk" || rr.Org != "acme" || rr.Caller != "113999" {
		t.Errorf("srv12 record: origin %s org %s caller %s", rr.Origin, rr.Org, rr.Caller)
	}
	l.waitIdle(10 * time.Second)
}

// The node stops while the first member of a hunt rung in one bridge
// rings: FreeSWITCH would ring the next member when that leg ends, so the
// caller is ended too; nothing rings after, and the record says the
// ringing member was cancelled.
func TestStopDuringHuntInOneBridge(t *testing.T) {
	l := newTestLab(t, labOptions{ringTimeout: "20s"})
	defer l.close()
	l.fleet.SetPhone("srv11", "77721401", callmodel.RingForever())
	l.fleet.SetPhone("srv11", "77721402", callmodel.Answer(0))
	l.fleet.SetPhone("srv11", "77721403", callmodel.Answer(0))
	id := l.call("srv11", "3999", "", "8008001", callmodel.CallerPlan{})
	if !waitFor(10*time.Second, func() bool { return len(l.fleet.RingsOf("srv11", "77721401")) == 1 }) {
		t.Fatal("77721401 never rang")
	}
	l.engine.Stop()
	if c := l.waitHangup(id, 10*time.Second); c == "" {
		t.Fatal("the caller was not ended")
	}
	l.waitIdle(10 * time.Second)
	for _, n := range []string{"77721402", "77721403"} {
		if r := l.fleet.RingsOf("srv11", n); len(r) != 0 {
			t.Errorf("%s rang after the node stopped: %+v", n, r)
		}
	}
	if got := outcomes(l.record(id)); !slices.Equal(got, []string{"77721401:cancelled"}) {
		t.Errorf("attempts %v, want [77721401:cancelled]", got)
	}
}
