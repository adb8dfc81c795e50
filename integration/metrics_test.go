package integration

import (
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/internal/promq"
	"github.com/callctl/callctl/node"
)

// An operator sees, for every media server the node is connected to, how
// many bytes of its events wait unread (callctl_event_queue_bytes, with the
// connection they wait on: ari for Asterisk; esl_inbound and esl_calls for
// FreeSWITCH), and the answered member's dial step in
// callctl_dial_step_seconds.
func TestEventQueueAndDialStepMetrics(t *testing.T) {
	var regs sync.Map // the node's state (its Recorder) -> its registry
	opt := Options{Phones: phones("srv11", "77721403", answers), Node: func(o *node.Options) {
		reg := prometheus.NewRegistry()
		o.Registry = reg
		o.Metrics = controller.NewMetrics(reg)
		regs.Store(o.State, reg)
	}}
	scenario(t, opt, func(t *testing.T, e *Env) {
		v, ok := regs.Load(node.State(e.Records))
		if !ok {
			t.Fatal("the node's registry is not known")
		}
		reg := v.(*prometheus.Registry)
		c := e.call(t, "srv11", "1100", "77721403T")
		bridged(t, c)
		for _, server := range []string{"srv11", "srv12"} {
			conns := []string{"ari"}
			if e.Fleet.Kinds[server] == provision.KindFreeSWITCH {
				conns = []string{"esl_inbound", "esl_calls"}
			}
			for _, conn := range conns {
				if v, err := promq.ReadGauge(reg, "callctl_event_queue_bytes", map[string]string{"server": server, "connection": conn}); err != nil {
					t.Errorf("%s: %v", server, err)
				} else if v < 0 {
					t.Errorf("%s %s: %v bytes", server, conn, v)
				}
			}
		}
		hangup(t, c)
		rec := e.record(t, of(c))
		if rec.Answered != "77721403" {
			t.Fatalf("answered by %q (%s)", rec.Answered, attempts(rec))
		}
		for _, step := range []string{"setup", "member"} {
			h, err := promq.ReadHistogram(reg, "callctl_dial_step_seconds", map[string]string{"step": step})
			if err != nil {
				t.Fatal(err)
			}
			if h.Count != 1 {
				t.Errorf("%s steps observed: %d, want 1 (one member dialed)", step, h.Count)
			}
		}
	})
}

// An operator sees each forward counted by its kind in
// callctl_forwards_total: 3997 is busy and her busy forward takes the call
// (busy 1); the call's other kinds stay 0.
func TestForwardsMetric(t *testing.T) {
	var regs sync.Map // the node's state (its Recorder) -> its registry
	opt := Options{Phones: phones("srv11", "3997", busy, "srv12", "1101", answers), Node: func(o *node.Options) {
		reg := prometheus.NewRegistry()
		o.Registry = reg
		o.Metrics = controller.NewMetrics(reg)
		regs.Store(o.State, reg)
	}}
	scenario(t, opt, func(t *testing.T, e *Env) {
		v, ok := regs.Load(node.State(e.Records))
		if !ok {
			t.Fatal("the node's registry is not known")
		}
		reg := v.(*prometheus.Registry)
		c := e.call(t, "srv11", "3999", "3997")
		bridged(t, c)
		hangup(t, c)
		forwarded(t, e.record(t, of(c)), "3997:busy 1101:answered", "forward-busy", "3997")
		for kind, want := range map[string]float64{"busy": 1, "no_answer": 0, "limit": 0, "fallback": 0} {
			got, err := promq.ReadCounter(reg, "callctl_forwards_total", map[string]string{"kind": kind})
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("callctl_forwards_total{kind=%q} = %v, want %v", kind, got, want)
			}
		}
	})
}
