package controller

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callctl/callctl/controller/routing"
)

// refuse counts a call refused for reason.
func (m *Metrics) refuse(reason string) {
	if m != nil {
		m.refused.WithLabelValues(reason).Inc()
	}
}

// forwardKinds are the kind labels of callctl_forwards_total.
var forwardKinds = map[routing.ForwardKind]string{routing.ForwardNoAnswer: "no_answer", routing.ForwardBusy: "busy",
	routing.ForwardLimit: "limit", routing.ForwardFallback: "fallback"}

// forwarded counts a forward of kind k.
func (m *Metrics) forwarded(k routing.ForwardKind) {
	if m != nil {
		m.forwards.WithLabelValues(forwardKinds[k]).Inc()
	}
}

// Metrics are the engine's Prometheus metrics.
type Metrics struct {
	active   prometheus.Gauge
	calls    *prometheus.CounterVec
	attempts *prometheus.CounterVec
	refusals *prometheus.CounterVec
	refused  *prometheus.CounterVec
	dialStep *prometheus.HistogramVec
	forwards *prometheus.CounterVec
}

// dialStepBuckets are the bounds of callctl_dial_step_seconds: fine below
// 10 ms, where callctl's own setup time lies, then up to a long ring.
var dialStepBuckets = []float64{0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// NewMetrics registers the engine's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "callctl_calls_active", Help: "Calls owned by this node now."}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callctl_calls_total",
			Help: "Finished calls by route kind, outcome (answered, unanswered, rejected) and hangup cause."}, []string{"route", "outcome", "cause"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callctl_dial_attempts_total",
			Help: "Dial attempts by outcome."}, []string{"outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callctl_limit_refusals_total",
			Help: "Counted legs refused, by the limit that refused them (server, org, unavailable)."}, []string{"scope"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callctl_call_refusals_total",
			Help: "Calls refused before anything rang, by reason: the routing cause (UNALLOCATED_NUMBER, CALL_REJECTED, INVALID_NUMBER_FORMAT, ...), limit_server, limit_org, counts_unavailable, draining."},
			[]string{"reason"}),
		dialStep: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "callctl_dial_step_seconds",
			Help:    "Each dialed member's step: setup is from when callctl could decide to dial it (the call's arrival, or the previous member's outcome reaching callctl) to the request that rings it leaving; member is from then to its outcome or answer reaching callctl.",
			Buckets: dialStepBuckets}, []string{"step"}),
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callctl_forwards_total",
			Help: "Calls forwarded, by kind: no_answer (also not registered), busy, limit (a limit's forward instead of 503), fallback (a group nobody answered went to its fallback)."},
			[]string{"kind"}),
	}
	// Every kind is there from the start, at 0.
	for _, k := range forwardKinds {
		m.forwards.WithLabelValues(k)
	}
	if reg != nil {
		reg.MustRegister(m.active, m.calls, m.attempts, m.refusals, m.refused, m.dialStep, m.forwards)
	}
	return m
}
