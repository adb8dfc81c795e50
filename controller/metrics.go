package controller

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the engine's Prometheus metrics.
type Metrics struct {
	active   prometheus.Gauge
	calls    *prometheus.CounterVec
	attempts *prometheus.CounterVec
	refusals *prometheus.CounterVec
}

// NewMetrics registers the engine's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "callctl_calls_active", Help: "Calls owned by this node now."}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callctl_calls_total",
			Help: "Finished calls by route kind and hangup cause."}, []string{"route", "cause"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callctl_dial_attempts_total",
			Help: "Dial attempts by outcome."}, []string{"outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callctl_limit_refusals_total",
			Help: "Counted legs refused, by the limit that refused them (server, org, unavailable)."}, []string{"scope"}),
	}
	if reg != nil {
		reg.MustRegister(m.active, m.calls, m.attempts, m.refusals)
	}
	return m
}
