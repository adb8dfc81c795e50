package freeswitch

import (
	"context"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/freeswitch/esl"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/integration/sim/callmodel"
	simesl "github.com/callctl/callctl/integration/sim/esl"
)

// Engine options for fault tests: a leg grace long enough that only the
// adapter's own cleanup can end the test's calls in time.
func longGrace(o *controller.Options) { o.LegGrace = 10 * time.Minute }

// answeredExternal places a call from 3999 to a PSTN number that answers and
// stays up (counted: one pstn-out leg on srv11), and waits for the answer.
func answeredExternal(t *testing.T, l *testLab, plan callmodel.CallerPlan) string {
	t.Helper()
	l.fleet.SetPSTN("+4930555123", callmodel.Answer(0))
	id := l.call("srv11", "3999", "", "030555123", plan)
	if !waitFor(10*time.Second, func() bool {
		r := l.fleet.RingsOf("", "+4930555123")
		return len(r) > 0 && r[len(r)-1].Outcome == callmodel.OutcomeAnswered && !r[len(r)-1].Ended()
	}) {
		t.Fatalf("the external call was not answered: %+v", l.fleet.RingsOf("", "+4930555123"))
	}
	if n := countOn(l, "srv11"); n != 1 {
		t.Fatalf("counted legs on srv11: %d, want 1", n)
	}
	return id
}

func countOn(l *testLab, server string) int {
	n, _ := l.store.Count(l.ctx, "server", server)
	return n
}

// FreeSWITCH drops every event socket connection (outbound and inbound) in
// the middle of an answered call, and refuses the inbound one for a while:
// the call and its leg are ended through the inbound connection once it is
// back, the count goes back to 0, no goroutine is left.
func TestMediaServerDropsConnectionsMidCall(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		l := newTestLab(t, labOptions{engineOpts: longGrace})
		defer l.close()
		id := answeredExternal(t, l, callmodel.CallerPlan{})
		sim := l.sims["srv11"]
		sim.SetRefusing(true)
		if n := sim.DropConnections(); n < 2 {
			t.Fatalf("dropped %d connections, want the outbound and the inbound one", n)
		}
		time.Sleep(300 * time.Millisecond) // the inbound connection stays refused meanwhile
		sim.SetRefusing(false)
		l.waitHangup(id, 15*time.Second)
		l.waitIdle(20 * time.Second)
		rec := l.record(id)
		if rec.HangupCause == "" {
			t.Errorf("record without hangup cause")
		}
		if r := l.fleet.RingsOf("", "+4930555123"); len(r) != 1 || !r[0].Ended() {
			t.Errorf("the PSTN leg is still up: %+v", r)
		}
	}()
	checkGoroutines(t, base)
}

// Only the inbound connection is lost, and the caller hangs up while it is
// down, so the leg's CHANNEL_HANGUP_COMPLETE is missed: the reconciliation
// after the reconnection ends the leg, and the count goes back to 0.
func TestInboundLostWhileTheLegEnds(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		logs := &syncBuffer{}
		l := newTestLab(t, labOptions{engineOpts: longGrace,
			logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		defer l.close()
		id := answeredExternal(t, l, callmodel.CallerPlan{})
		sim := l.sims["srv11"]
		sim.SetRefusing(true)
		ms := l.ms["srv11"]
		c, err := ms.current()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if !waitFor(5*time.Second, func() bool { return !ms.Connected() }) {
			t.Fatal("inbound connection still up")
		}
		// The caller hangs up while callctl cannot see the leg's end.
		if err := sim.Model().Do(func(tx *callmodel.Tx) error {
			if !tx.Hangup(id, callmodel.CauseNormalClearing, callmodel.ByRemote) {
				return callmodel.ErrNoChannel
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		l.waitHangup(id, 10*time.Second)
		// callctl has seen the caller go and keeps the leg counted until its
		// end is known: it says so.
		if !waitFor(10*time.Second, func() bool {
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, "waiting for the connected leg's end") && strings.Contains(line, "call="+id) {
					return true
				}
			}
			return false
		}) {
			t.Fatal("callctl did not wait for the leg's end")
		}
		if n := countOn(l, "srv11"); n != 1 {
			t.Errorf("the leg was released while its end could not be known (count %d)", n)
		}
		sim.SetRefusing(false)
		l.waitIdle(20 * time.Second)
	}()
	checkGoroutines(t, base)
}

// A frame that breaks the stream (a Content-Length that is not a number)
// ends the connection cleanly: the call is ended, nothing leaks. An event
// with broken contents is dropped and the call goes on.
func TestMalformedFrames(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		l := newTestLab(t, labOptions{engineOpts: longGrace})
		defer l.close()
		id := answeredExternal(t, l, callmodel.CallerPlan{})
		sim := l.sims["srv11"]
		for _, m := range []simesl.Malformed{simesl.MalformedEvent, simesl.MalformedJSON, simesl.MalformedHeaderLine} {
			if sim.SendMalformed(m, true) != 1 {
				t.Fatalf("malformed frame %d not sent", m)
			}
		}
		// A reply on the call's own connection comes after those frames:
		// once it is back, callctl has read them, and the call is still up.
		l.srv.mu.Lock()
		c := l.srv.calls[id]
		l.srv.mu.Unlock()
		cmd, _ := esl.AppendCommand(nil, "api", "uuid_exists", id)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := c.conn.Command(ctx, cmd)
		cancel()
		if err != nil || strings.TrimSpace(r.Text) != "true" {
			t.Fatalf("after harmless malformed frames: uuid_exists on the call's connection: %q %v", r.Text, err)
		}
		if _, gone := l.events.hangupCause(id); gone {
			t.Fatal("a harmless malformed frame ended the call")
		}
		if sim.SendMalformed(simesl.MalformedContentLength, true) != 1 {
			t.Fatal("malformed frame not sent")
		}
		l.waitHangup(id, 15*time.Second)
		l.waitIdle(20 * time.Second)
	}()
	checkGoroutines(t, base)
}

// A blind transfer of a call callctl bridged: FreeSWITCH runs socket again
// and a second connection arrives for the same channel. The first owner lets
// go without hanging up; the new connection is routed as a blind transfer by
// the transferring user, passing the original caller through.
func TestBlindTransferOfBridgedCall(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		l := newTestLab(t, labOptions{})
		defer l.close()
		l.fleet.SetPhone("srv11", "3998", callmodel.Answer(20*time.Millisecond))
		l.fleet.SetPhone("srv11", "77721403", callmodel.Answer(20*time.Millisecond))
		id := l.call("srv11", "3999", "Aiko Sato", "3998", callmodel.CallerPlan{HangupAfterAnswer: 1500 * time.Millisecond})
		if !waitFor(10*time.Second, func() bool {
			r := l.fleet.RingsOf("srv11", "3998")
			return len(r) == 1 && r[0].Outcome == callmodel.OutcomeAnswered
		}) {
			t.Fatal("3998 did not answer")
		}
		time.Sleep(100 * time.Millisecond)
		// 3998 sends a REFER: the caller's channel goes to 77721403.
		if err := l.sims["srv11"].BlindTransfer(id, "77721403"); err != nil {
			t.Fatal(err)
		}
		var r []callmodel.Ring
		if !waitFor(10*time.Second, func() bool {
			r = l.fleet.RingsOf("srv11", "77721403")
			return len(r) == 1 && r[0].Outcome == callmodel.OutcomeAnswered
		}) {
			t.Fatalf("77721403 after the transfer: %+v", r)
		}
		if r[0].Caller.Number != "3999" {
			t.Errorf("blind transfer presented %q, want the original caller 3999", r[0].Caller.Number)
		}
		if c := l.waitHangup(id, 15*time.Second); c != "NORMAL_CLEARING" {
			t.Errorf("caller hangup cause %q", c)
		}
		l.waitIdle(15 * time.Second)
		// Two records for the channel: the first owner's ends TRANSFERRED
		// (it did not hang the call up), the second is the transferred call.
		recs := l.recordsOf(id)
		if len(recs) != 2 {
			t.Fatalf("%d records for the channel, want 2", len(recs))
		}
		if first := recs[0]; first.HangupCause != "TRANSFERRED" || !slices.Equal(outcomes(first), []string{"3998:answered"}) {
			t.Errorf("first owner's record: cause %q attempts %v", first.HangupCause, outcomes(first))
		}
		rec := recs[1]
		if rec.Transfer != "blind" || rec.Caller != "3998" || rec.Dialed != "77721403" {
			t.Errorf("last record: transfer %q caller %q dialed %q", rec.Transfer, rec.Caller, rec.Dialed)
		}
		if got := outcomes(rec); !slices.Equal(got, []string{"77721403:answered"}) {
			t.Errorf("transferred call attempts %v", got)
		}
		if rr := l.fleet.RingsOf("srv11", "3998"); len(rr) != 1 || !rr[0].Ended() {
			t.Errorf("3998 after the transfer: %+v", rr)
		}
	}()
	checkGoroutines(t, base)
}

// A transfer while callctl is still hunting: the first owner's ringing leg
// is cancelled (without hanging the caller up), the second connection routes
// the new destination as the transfer it is (uuid_transfer names no user:
// ivr, in the org of the call), passing the caller through.
func TestBlindTransferWhileRinging(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		l := newTestLab(t, labOptions{ringTimeout: "20s"})
		defer l.close()
		l.fleet.SetPhone("srv11", "77721401", callmodel.RingForever())
		l.fleet.SetPhone("srv11", "3998", callmodel.Answer(20*time.Millisecond))
		id := l.call("srv11", "3999", "Aiko Sato", "8008001", callmodel.CallerPlan{HangupAfterAnswer: 500 * time.Millisecond})
		if !waitFor(10*time.Second, func() bool { return len(l.fleet.RingsOf("srv11", "77721401")) == 1 }) {
			t.Fatal("77721401 did not ring")
		}
		if err := l.sims["srv11"].Transfer(id, "3998", "default"); err != nil {
			t.Fatal(err)
		}
		var r []callmodel.Ring
		if !waitFor(10*time.Second, func() bool {
			r = l.fleet.RingsOf("srv11", "3998")
			return len(r) == 1 && r[0].Outcome == callmodel.OutcomeAnswered
		}) {
			t.Fatalf("3998 after the transfer: %+v", r)
		}
		if r[0].Caller.Number != "3999" {
			t.Errorf("3998 saw %q, want the transferred caller 3999", r[0].Caller.Number)
		}
		if rr := l.fleet.RingsOf("srv11", "77721401"); len(rr) != 1 || rr[0].Outcome != callmodel.OutcomeCancelled {
			t.Errorf("the member ringing at the transfer: %+v", rr)
		}
		if c := l.waitHangup(id, 15*time.Second); c != "NORMAL_CLEARING" {
			t.Errorf("caller hangup cause %q", c)
		}
		l.waitIdle(15 * time.Second)
		for _, n := range []string{"77721402", "77721403"} {
			if rr := l.fleet.RingsOf("srv11", n); len(rr) != 0 {
				t.Errorf("%s rang after the transfer", n)
			}
		}
		recs := l.recordsOf(id)
		if len(recs) != 2 {
			t.Fatalf("%d records for the channel, want 2 (before and after the transfer)", len(recs))
		}
		if first := recs[0]; first.HangupCause != "TRANSFERRED" || !slices.Equal(outcomes(first), []string{"77721401:cancelled"}) {
			t.Errorf("first owner's record: cause %q attempts %v", first.HangupCause, outcomes(first))
		}
		rec := recs[1]
		if rec.Transfer != "ivr" || rec.Dialed != "3998" || !slices.Equal(outcomes(rec), []string{"3998:answered"}) {
			t.Errorf("transferred call record: transfer %q dialed %q attempts %v", rec.Transfer, rec.Dialed, outcomes(rec))
		}
	}()
	checkGoroutines(t, base)
}
