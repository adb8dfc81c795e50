package asterisk

import (
	"testing"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// The phone that answered transfers the caller (a blind REFER, core
// handling): Asterisk puts a Local channel in its place in callctl's bridge
// and hands the Local pair's other half to callctl as a new call. callctl
// routes it as dialed by the transferring user, showing the original
// caller; the caller talks to the new target; when that one hangs up, the
// caller is hung up; nothing is left.
func TestBlindTransferByCallee(t *testing.T) {
	l := newLab(t, labOptions{})
	l.fleet.SetPhone("srv12", "2002", callmodel.Answer(0))
	l.fleet.SetPhone("srv12", "2003", callmodel.Answer(0))
	caller := l.call("2001", "2002", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool { return l.obs.get(caller).bridged != "" }, "2001 bridged with 2002")
	leg := l.fleet.RingsOf("srv12", "2002")[0].UUID // the model keeps the ARI id of originated channels
	if err := l.ast["srv12"].BlindTransfer(leg, "2003"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		r := l.fleet.RingsOf("srv12", "2003")
		return len(r) == 1 && !r[0].Answered.IsZero()
	}, "2003 answered")
	if got := l.fleet.RingsOf("srv12", "2003")[0].Caller.Number; got != "2001" {
		t.Errorf("2003 saw %q, want the original caller 2001", got)
	}
	waitConnected(t, l, "2003")
	// The transferring phone hangs up, as phones do after the NOTIFY:
	// callctl says the call goes on once it has handled that end.
	l.hangup("srv12", leg)
	waitFor(t, 10*time.Second, func() bool {
		return l.logs.contains("the party a transfer replaced has left; the call goes on with the stand-in")
	}, "the transferer's end handled")
	if s := l.obs.get(caller); !s.hungup.IsZero() {
		t.Fatalf("the caller was hung up with the transferer: %+v", s)
	}
	// The transfer target hangs up: the caller goes too.
	target := l.fleet.RingsOf("srv12", "2003")[0].UUID
	l.hangup("srv12", target)
	waitFor(t, 10*time.Second, func() bool { return !l.obs.get(caller).hungup.IsZero() }, "caller hung up after the target")
	x := l.record("2002", "2003")
	if x.Transfer != "blind" || x.Answered != "2003" {
		t.Errorf("transfer record: transfer %q answered %q attempts %v", x.Transfer, x.Answered, outcomes(x.Attempts))
	}
	first := l.record("2001", "2002")
	if first.Answered != "2002" {
		t.Errorf("first record: %+v", first)
	}
	// The transfer's record links to the call it came from and names the
	// transferring phone (SPEC §4).
	if first.ID == "" || x.TransferFrom != first.ID || x.TransferBy != "2002" {
		t.Errorf("transfer record: from record %q by %q, want %q (the first record) by 2002", x.TransferFrom, x.TransferBy, first.ID)
	}
	l.settled(15 * time.Second)
}

// The caller transfers the phone it talks to: the first call ends for
// callctl as TRANSFERRED when the caller hangs up, the phone talks to the
// new target (which sees the phone's number), and when the target hangs up
// the phone is hung up; nothing is left.
func TestBlindTransferByCaller(t *testing.T) {
	l := newLab(t, labOptions{})
	l.fleet.SetPhone("srv12", "2002", callmodel.Answer(0))
	l.fleet.SetPhone("srv12", "2003", callmodel.Answer(0))
	caller := l.call("2001", "2002", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool { return l.obs.get(caller).bridged != "" }, "2001 bridged with 2002")
	phone := l.fleet.RingsOf("srv12", "2002")[0].UUID
	if err := l.ast["srv12"].BlindTransfer(l.ariCaller("srv12", "2001"), "2003"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		r := l.fleet.RingsOf("srv12", "2003")
		return len(r) == 1 && !r[0].Answered.IsZero()
	}, "2003 answered")
	if got := l.fleet.RingsOf("srv12", "2003")[0].Caller.Number; got != "2002" {
		t.Errorf("2003 saw %q, want the transferred party 2002", got)
	}
	waitConnected(t, l, "2003")
	l.hangup("srv12", caller)
	first := l.record("2001", "2002")
	if first.HangupCause != "TRANSFERRED" || first.Answered != "2002" {
		t.Errorf("first record: cause %q answered %q", first.HangupCause, first.Answered)
	}
	// The record is written once callctl has handled the caller's end: had
	// it hung the phone up with it, that would have come before.
	if s := l.obs.get(phone); !s.hungup.IsZero() {
		t.Fatalf("the transferred phone was hung up with the caller: %+v", s)
	}
	target := l.fleet.RingsOf("srv12", "2003")[0].UUID
	l.hangup("srv12", target)
	waitFor(t, 10*time.Second, func() bool { return !l.obs.get(phone).hungup.IsZero() }, "phone hung up after the target")
	l.settled(15 * time.Second)
}

// waitConnected waits until callctl has connected a call to target: the
// transfer is complete on callctl's side too.
func waitConnected(t *testing.T, l *lab, target string) {
	t.Helper()
	waitFor(t, 10*time.Second, func() bool {
		for _, v := range l.eng.Calls() {
			if v.Answered == target {
				return true
			}
		}
		return false
	}, "callctl connected "+target)
}
