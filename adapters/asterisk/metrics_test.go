package asterisk

import (
	"testing"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
	"github.com/callctl/callctl/internal/promq"
)

// TestDialStepMetric: a hunt of a busy member, one that is not registered
// and one that answers after ringing 300 ms shows in
// callctl_dial_step_seconds as two dialed steps (the unregistered member
// is skipped before anything is sent): two setups, and two member steps of
// which the answered one lasted at least its ring.
func TestDialStepMetric(t *testing.T) {
	l := newLab(t, labOptions{})
	l.fleet.SetPhone("srv12", "2101", callmodel.Busy())
	l.fleet.SetPhone("srv12", "2102", callmodel.Unregistered())
	l.fleet.SetPhone("srv12", "2103", callmodel.Answer(300*time.Millisecond))
	l.call("2001", "8008001", callmodel.CallerPlan{HangupAfterAnswer: 100 * time.Millisecond})
	rec := l.record("2001", "8008001")
	want := []string{"77700001:busy", "77700002:not-registered", "77700003:answered"}
	if got := outcomes(rec.Attempts); !sameStrings(got, want) {
		t.Fatalf("attempts = %v, want %v", got, want)
	}
	read := func(step string) promq.Histogram {
		h, err := promq.ReadHistogram(l.reg, "callctl_dial_step_seconds", map[string]string{"step": step})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	setup, member := read("setup"), read("member")
	if setup.Count != 2 || member.Count != 2 {
		t.Fatalf("dial steps observed: setup %d, member %d; want 2 and 2", setup.Count, member.Count)
	}
	if n := member.Count - member.AtMost(0.25); n != 1 {
		t.Errorf("%d member steps above 250 ms, want 1 (the member that rang 300 ms)", n)
	}
	if setup.Sum <= 0 {
		t.Errorf("setup steps sum to %v s", setup.Sum)
	}
	l.settled(15 * time.Second)
	l.close()
}
