package freeswitch

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/integration/sim/callmodel"
	"github.com/callctl/callctl/internal/promq"
)

// TestDialStepMetric: a hunt of a busy member, one that is not registered
// and one that answers after ringing 300 ms shows in
// callctl_dial_step_seconds as two dialed steps (the unregistered member
// is skipped before anything is sent): two setups, and two member steps of
// which the answered one lasted at least its ring.
func TestDialStepMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := newTestLab(t, labOptions{engineOpts: func(o *controller.Options) { o.Metrics = controller.NewMetrics(reg) }})
	defer l.close()
	l.fleet.SetPhone("srv11", "77721401", callmodel.Busy())
	l.fleet.SetPhone("srv11", "77721402", callmodel.Unregistered())
	l.fleet.SetPhone("srv11", "77721403", callmodel.Answer(300*time.Millisecond))
	id := l.call("srv11", "3999", "Aiko Sato", "8008001", callmodel.CallerPlan{HangupAfterAnswer: 100 * time.Millisecond})
	l.waitHangup(id, 15*time.Second)
	l.record(id)
	read := func(step string) promq.Histogram {
		h, err := promq.ReadHistogram(reg, "callctl_dial_step_seconds", map[string]string{"step": step})
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
}
