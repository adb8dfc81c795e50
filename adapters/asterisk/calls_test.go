package asterisk

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/callctl/callctl/controller/hunt"
	"github.com/callctl/callctl/integration/sim/callmodel"
)

func outcomes(attempts []hunt.Attempt) []string {
	out := make([]string, len(attempts))
	for i, a := range attempts {
		out[i] = a.Target + ":" + a.Outcome.String()
	}
	return out
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A hunt over a busy phone, an unregistered one, one that does not answer
// within its ring timeout and one that answers; the caller talks, then hangs
// up.
func TestHuntBusyUnregisteredNoAnswerAnswer(t *testing.T) {
	base := runtime.NumGoroutine()
	l := newLab(t, labOptions{})
	l.fleet.SetPhone("srv12", "2101", callmodel.Busy())
	l.fleet.SetPhone("srv12", "2102", callmodel.Unregistered())
	l.fleet.SetPhone("srv12", "2103", callmodel.RingForever())
	l.fleet.SetPhone("srv12", "2104", callmodel.Answer(50*time.Millisecond))

	caller := l.call("2001", "8008001", callmodel.CallerPlan{HangupAfterAnswer: 300 * time.Millisecond})
	rec := l.record("2001", "8008001")
	want := []string{"77700001:busy", "77700002:not-registered", "77700003:no-answer", "77700004:answered"}
	if got := outcomes(rec.Attempts); !sameStrings(got, want) {
		t.Errorf("attempts = %v, want %v", got, want)
	}
	if rec.Answered != "77700004" || rec.Answer == nil {
		t.Errorf("record: answered by %q at %v", rec.Answered, rec.Answer)
	}
	if r := l.fleet.RingsOf("srv12", "2102"); len(r) != 0 {
		t.Errorf("the unregistered phone rang: %+v", r)
	}
	rings := l.fleet.RingsOf("srv12", "2103")
	if len(rings) != 1 || rings[0].Outcome == callmodel.OutcomeAnswered {
		t.Fatalf("2103 rings: %+v", rings)
	}
	if d := rings[0].End.Sub(rings[0].Start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Errorf("2103 rang %s, want about its 1 s ring timeout", d)
	}
	r4 := l.fleet.RingsOf("srv12", "2104")
	if len(r4) != 1 || r4[0].Outcome != callmodel.OutcomeAnswered {
		t.Fatalf("2104 rings: %+v", r4)
	}
	if r4[0].Caller.Number != "2001" {
		t.Errorf("2104 saw caller id %q, want 2001", r4[0].Caller.Number)
	}
	if s := l.obs.get(caller); s.bridged != r4[0].UUID || s.answered.IsZero() {
		t.Errorf("caller answered %v, bridged to %q, want %q", s.answered, s.bridged, r4[0].UUID)
	}
	l.settled(15 * time.Second)
	if rec.HangupCause != "NORMAL_CLEARING" {
		t.Errorf("hangup cause %q", rec.HangupCause)
	}
	l.close()
	goroutinesSettled(t, base)
}

// The same outcomes with Local channels of the lab's targets context, where
// busy and congestion only show in Dial.dialstatus (the ;1 half dies with
// cause 0).
func TestHuntLocalTargets(t *testing.T) {
	l := newLab(t, labOptions{})
	l.call("2001", "8008031", callmodel.CallerPlan{HangupAfterAnswer: 200 * time.Millisecond})
	rec := l.record("2001", "8008031")
	want := []string{"77700031:busy", "77700032:congested", "77700033:no-answer", "77700034:answered"}
	if got := outcomes(rec.Attempts); !sameStrings(got, want) {
		t.Errorf("attempts = %v, want %v", got, want)
	}
	causes := []string{"USER_BUSY", "NORMAL_CIRCUIT_CONGESTION", "NO_ANSWER", "ANSWER"}
	for i, a := range rec.Attempts {
		if i < len(causes) && a.Cause != causes[i] {
			t.Errorf("attempt %d cause %q, want %q", i, a.Cause, causes[i])
		}
	}
	l.settled(15 * time.Second)
}

// The caller hangs up while the first member rings: that leg is cancelled
// at once and nothing rings after.
func TestCallerHangsUpMidHunt(t *testing.T) {
	l := newLab(t, labOptions{})
	l.fleet.SetPhone("srv12", "2111", callmodel.RingForever())
	l.fleet.SetPhone("srv12", "2112", callmodel.Answer(0))
	caller := l.call("2001", "8008011", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool { return len(l.fleet.RingsOf("srv12", "2111")) == 1 }, "2111 rings")
	hungup := time.Now()
	l.hangup("srv12", caller)
	waitFor(t, 10*time.Second, func() bool { r := l.fleet.RingsOf("srv12", "2111"); return r[0].Ended() }, "2111 stops ringing")
	r := l.fleet.RingsOf("srv12", "2111")[0]
	if d := r.End.Sub(hungup); d > 2*time.Second {
		t.Errorf("the ringing leg was cancelled %s after the caller hung up", d)
	}
	if r.Outcome != callmodel.OutcomeCancelled {
		t.Errorf("2111 ring outcome %s, want cancelled", r.Outcome)
	}
	rec := l.record("2001", "8008011")
	if got := outcomes(rec.Attempts); !sameStrings(got, []string{"77700011:cancelled"}) {
		t.Errorf("attempts = %v", got)
	}
	l.settled(15 * time.Second)
	if n := len(l.fleet.RingsOf("srv12", "2112")); n != 0 {
		t.Errorf("2112 rang %d times after the caller left", n)
	}
}

// Rejections reach the caller with the cause (and so the SIP code) routing
// chose.
func TestRejectionCauses(t *testing.T) {
	l := newLab(t, labOptions{})
	l.fleet.SetPhone("srv12", "2002", callmodel.Busy())
	cases := []struct {
		from, dialed string
		q850         int
	}{
		{"2001", "999999", 1},   // unallocated: SIP 404
		{"2001", "2002", 17},    // the one target is busy: SIP 486
		{"6666", "2002", 21},    // not a user of the server: rejected, SIP 403
		{"2001", "1+2", 28},     // invalid number format
		{"2001", "01761234", 0}, // external, placed below
	}
	for _, c := range cases[:4] {
		caller := l.call(c.from, c.dialed, callmodel.CallerPlan{})
		waitFor(t, 10*time.Second, func() bool { return !l.obs.get(caller).hungup.IsZero() }, "caller hung up: "+c.dialed)
		if got := l.obs.get(caller).cause.Q850(); got != c.q850 {
			t.Errorf("%s -> %s: caller hung up with cause %d (%s), want %d", c.from, c.dialed, got, l.obs.get(caller).cause, c.q850)
		}
	}
	l.settled(15 * time.Second)
}

// A counted leg over the trunk to the other server: caller ID prefixed
// (SPEC §4), the org mark header on the trunk, one count on each side while
// up, none after.
func TestInterServerCall(t *testing.T) {
	l := newLab(t, labOptions{})
	l.fleet.SetPhone("srv13", "3001", callmodel.Answer(0))
	caller := l.call("2001", "133001", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool {
		r := l.fleet.RingsOf("srv13", "3001")
		return len(r) == 1 && !r[0].Answered.IsZero()
	}, "3001 answered")
	r := l.fleet.RingsOf("srv13", "3001")[0]
	if r.Caller.Number != "122001" {
		t.Errorf("3001 saw caller id %q, want 122001", r.Caller.Number)
	}
	waitFor(t, 10*time.Second, func() bool { return l.obs.get(caller).bridged != "" }, "caller bridged")
	ctx := context.Background()
	for _, srv := range []string{"srv12", "srv13"} {
		waitFor(t, 5*time.Second, func() bool { n, _ := l.store.Count(ctx, "server", srv); return n == 1 }, srv+" counts one leg")
	}
	l.hangup("srv12", caller)
	rec := l.record("2001", "133001")
	if got := outcomes(rec.Attempts); !sameStrings(got, []string{"3001:answered"}) {
		t.Errorf("attempts %v", got)
	}
	// srv13 routed the trunk call on the org mark the header carried.
	far := l.record("122001", "3001")
	if far.Origin != "trunk" || far.Org != "acme" || far.Server != "srv13" {
		t.Errorf("srv13 record: origin %q org %q server %q", far.Origin, far.Org, far.Server)
	}
	l.settled(15 * time.Second)
}

// External calls go out over the PSTN trunk with the org's number.
func TestExternalCall(t *testing.T) {
	l := newLab(t, labOptions{})
	l.fleet.SetPSTN("+49301234567", callmodel.Answer(0))
	l.call("2001", "0301234567", callmodel.CallerPlan{HangupAfterAnswer: 200 * time.Millisecond})
	rec := l.record("2001", "0301234567")
	if got := outcomes(rec.Attempts); !sameStrings(got, []string{"+49301234567:answered"}) {
		t.Errorf("attempts %v", got)
	}
	rings := l.fleet.RingsOf("", "+49301234567")
	if len(rings) != 1 || rings[0].Caller.Number != "+4930100100" {
		t.Fatalf("PSTN rings: %+v (all: %+v)", rings, l.fleet.Rings())
	}
	l.settled(15 * time.Second)
}

// A server at its channel limit refuses a new counted leg with congestion
// (SIP 503) and leaves the call that holds the channel alone.
func TestChannelLimitRefusal(t *testing.T) {
	l := newLab(t, labOptions{channelLimit: 1})
	l.fleet.SetPSTN("+49301234567", callmodel.Answer(0))
	l.fleet.SetPSTN("+49301234568", callmodel.Answer(0))
	first := l.call("2001", "0301234567", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool { return l.obs.get(first).bridged != "" }, "first call bridged")
	second := l.call("2002", "0301234568", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool { return !l.obs.get(second).hungup.IsZero() }, "second call refused")
	if got := l.obs.get(second).cause.Q850(); got != 34 {
		t.Errorf("second call cause %d, want 34 (congestion)", got)
	}
	if n := len(l.fleet.RingsOf("", "+49301234568")); n != 0 {
		t.Errorf("the refused destination rang %d times", n)
	}
	if s := l.obs.get(first); !s.hungup.IsZero() {
		t.Errorf("the first call was touched: %+v", s)
	}
	l.hangup("srv12", first)
	l.settled(15 * time.Second)
}

// The caller hangs up the moment callctl answers it for the member who
// answered, before the bridge is made (a caller whose answer is the signal
// to hang up, as a Local channel's ;1 half is): the member answered and was
// connected, so the record says answered, with no talk time, not cancelled.
// The hangup is made inside the simulator's transaction of the answer, so
// every bridge request after it finds the caller gone.
func TestCallerHangsUpWhenAnswered(t *testing.T) {
	l := newLab(t, labOptions{})
	l.fleet.SetPhone("srv12", "2002", callmodel.Answer(0))
	unsubscribe := l.model["srv12"].Subscribe(func(tx *callmodel.Tx, ev *callmodel.Event) {
		if ev.Kind == callmodel.ChannelAnswered && ev.Channel.Origin == callmodel.OriginPhone && ev.Channel.Caller.Number == "2001" {
			tx.Hangup(ev.Channel.UUID, callmodel.CauseNormalClearing, callmodel.ByRemote)
		}
	})
	defer unsubscribe()
	for _, tc := range []struct {
		dialed   string
		attempts []string
		member   string
	}{
		{"2002", []string{"2002:answered"}, "2002"}, // a PJSIP phone
		{"2005", []string{"2005:answered"}, "2005"}, // a Local channel (Local/501@targets)
		{"8008031", []string{"77700031:busy", "77700032:congested", "77700033:no-answer", "77700034:answered"}, "77700034"},
	} {
		caller := l.call("2001", tc.dialed, callmodel.CallerPlan{})
		rec := l.record("2001", tc.dialed)
		if got := outcomes(rec.Attempts); !sameStrings(got, tc.attempts) {
			t.Errorf("%s: attempts = %v, want %v", tc.dialed, got, tc.attempts)
		}
		if rec.Answered != tc.member || rec.Answer == nil {
			t.Errorf("%s: record answered by %q at %v, want %s", tc.dialed, rec.Answered, rec.Answer, tc.member)
		} else if talk := rec.End.Sub(*rec.Answer); talk < 0 || talk > time.Second {
			t.Errorf("%s: talk time %s, want about 0", tc.dialed, talk)
		}
		if s := l.obs.get(caller); s.answered.IsZero() || s.hungup.IsZero() {
			t.Errorf("%s: caller answered at %v, hung up at %v", tc.dialed, s.answered, s.hungup)
		}
		// Nothing of the call stays: the member's leg, the bridge, the count.
		l.settled(15 * time.Second)
	}
	if r := l.fleet.RingsOf("srv12", "2002"); len(r) != 1 || r[0].Outcome != callmodel.OutcomeAnswered || !r[0].Ended() {
		t.Errorf("2002 rings: %+v", r)
	}
}
