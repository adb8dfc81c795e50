package controller

import "github.com/prometheus/client_golang/prometheus"

// refuse counts a call refused for reason.
func (m *Metrics) refuse(reason string) {
	if m != nil {
		m.refused.WithLabelValues(reason).Inc()
	}
}

// Metrics are the engine's Prometheus metrics.
type Metrics struct {
	active   prometheus.Gauge
	calls    *prometheus.CounterVec
	attempts *prometheus.CounterVec
	refusals *prometheus.CounterVec
	refused  *prometheus.CounterVec
}

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
	}
	if reg != nil {
		reg.MustRegister(m.active, m.calls, m.attempts, m.refusals, m.refused)
	}
	return m
}
