// Package promq reads what a Prometheus registry holds, for tests and
// benchmarks that measure through the metrics callctl exports rather than
// through probes of their own.
package promq

import (
	"fmt"
	"math"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Histogram is one histogram series: its cumulative buckets, count and sum.
type Histogram struct {
	Count   uint64
	Sum     float64
	Bounds  []float64 // upper bounds, ascending, without +Inf
	Buckets []uint64  // cumulative counts, one per bound
}

// ReadHistogram gathers g and returns the series of the histogram name
// whose labels include labels.
func ReadHistogram(g prometheus.Gatherer, name string, labels map[string]string) (Histogram, error) {
	mfs, err := g.Gather()
	if err != nil {
		return Histogram{}, err
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		if mf.GetType() != dto.MetricType_HISTOGRAM {
			return Histogram{}, fmt.Errorf("%s is a %s, not a histogram", name, mf.GetType())
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			h := m.GetHistogram()
			out := Histogram{Count: h.GetSampleCount(), Sum: h.GetSampleSum()}
			for _, b := range h.GetBucket() {
				if math.IsInf(b.GetUpperBound(), 1) {
					continue
				}
				out.Bounds = append(out.Bounds, b.GetUpperBound())
				out.Buckets = append(out.Buckets, b.GetCumulativeCount())
			}
			return out, nil
		}
		return Histogram{}, fmt.Errorf("%s has no series with labels %v", name, labels)
	}
	return Histogram{}, fmt.Errorf("no metric %s", name)
}

// ReadGauge gathers g and returns the value of the gauge name whose labels
// include labels.
func ReadGauge(g prometheus.Gatherer, name string, labels map[string]string) (float64, error) {
	mfs, err := g.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) && m.GetGauge() != nil {
				return m.GetGauge().GetValue(), nil
			}
		}
		return 0, fmt.Errorf("%s has no gauge with labels %v", name, labels)
	}
	return 0, fmt.Errorf("no metric %s", name)
}

// ReadCounter gathers g and returns the value of the counter name whose
// labels include labels.
func ReadCounter(g prometheus.Gatherer, name string, labels map[string]string) (float64, error) {
	mfs, err := g.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) && m.GetCounter() != nil {
				return m.GetCounter().GetValue(), nil
			}
		}
		return 0, fmt.Errorf("%s has no counter with labels %v", name, labels)
	}
	return 0, fmt.Errorf("no metric %s", name)
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// Quantile estimates the q-quantile (0..1) as Prometheus's
// histogram_quantile does: linear within the bucket that holds it. It is
// NaN when nothing was observed, and the highest bound when the quantile
// lies past it.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 || len(h.Bounds) == 0 {
		return math.NaN()
	}
	rank := q * float64(h.Count)
	i := sort.Search(len(h.Buckets), func(i int) bool { return float64(h.Buckets[i]) >= rank })
	if i == len(h.Buckets) {
		return h.Bounds[len(h.Bounds)-1]
	}
	lo, below := 0.0, uint64(0)
	if i > 0 {
		lo, below = h.Bounds[i-1], h.Buckets[i-1]
	}
	in := h.Buckets[i] - below
	if in == 0 {
		return h.Bounds[i]
	}
	return lo + (h.Bounds[i]-lo)*(rank-float64(below))/float64(in)
}

// AtMost is how many observations were at most bound, which must be one of
// h's bounds (0 when it is not).
func (h Histogram) AtMost(bound float64) uint64 {
	for i, b := range h.Bounds {
		if b == bound {
			return h.Buckets[i]
		}
	}
	return 0
}

// Sub is what h observed since before was read.
func (h Histogram) Sub(before Histogram) Histogram {
	if len(before.Buckets) != len(h.Buckets) {
		return h
	}
	out := Histogram{Count: h.Count - before.Count, Sum: h.Sum - before.Sum, Bounds: h.Bounds,
		Buckets: make([]uint64, len(h.Buckets))}
	for i := range h.Buckets {
		out.Buckets[i] = h.Buckets[i] - before.Buckets[i]
	}
	return out
}
