package redis

import "github.com/prometheus/client_golang/prometheus"

var (
	upDesc = prometheus.NewDesc("callctl_redis_up",
		"1 while this node reaches Redis, 0 while it does not (counted legs are refused, or let through with fail_open).", nil, nil)
	lossDesc = prometheus.NewDesc("callctl_redis_data_loss_total",
		"Times this node found that Redis may have lost counted legs (a restart without data, a failover to a replica that lagged).", nil, nil)
	recoveringDesc = prometheus.NewDesc("callctl_redis_recovering",
		"1 while counted legs are refused because the nodes are putting their legs back after Redis lost data.", nil, nil)
	adoptedDesc = prometheus.NewDesc("callctl_adopted_legs",
		"Counted legs this node adopted from nodes that died, still counted until their channels end.", nil, nil)
)

// Describe and Collect make the Store a Prometheus collector of its state.
func (s *Store) Describe(ch chan<- *prometheus.Desc) {
	ch <- upDesc
	ch <- lossDesc
	ch <- recoveringDesc
	ch <- adoptedDesc
}

// Collect reads the state now.
func (s *Store) Collect(ch chan<- prometheus.Metric) {
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	s.mu.Lock()
	n := 0
	for _, lh := range s.local {
		if lh.state == adopted {
			n++
		}
	}
	s.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, flag(s.up.Load()))
	ch <- prometheus.MustNewConstMetric(lossDesc, prometheus.CounterValue, float64(s.nLoss.Load()))
	ch <- prometheus.MustNewConstMetric(recoveringDesc, prometheus.GaugeValue, flag(s.recovering.Load()))
	ch <- prometheus.MustNewConstMetric(adoptedDesc, prometheus.GaugeValue, float64(n))
}

var _ prometheus.Collector = (*Store)(nil)
