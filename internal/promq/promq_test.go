package promq

import (
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestQuantileInterpolatesLikePrometheus(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "x_seconds", Buckets: []float64{1, 2, 4}}, []string{"k"})
	reg.MustRegister(h)
	for _, v := range []float64{0.5, 1.5, 1.5, 3} {
		h.WithLabelValues("a").Observe(v)
	}
	h.WithLabelValues("b").Observe(100)
	got, err := ReadHistogram(reg, "x_seconds", map[string]string{"k": "a"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Count != 4 {
		t.Fatalf("count %d, want 4", got.Count)
	}
	// Ranks: 0.5*4 = 2 lies in (1,2] holding ranks 2..3: 1 + 1*(2-1)/2.
	for q, want := range map[float64]float64{0.5: 1.5, 0.25: 1, 1: 4} {
		if v := got.Quantile(q); math.Abs(v-want) > 1e-9 {
			t.Errorf("q%.2f = %v, want %v", q, v, want)
		}
	}
	before := got
	h.WithLabelValues("a").Observe(3.5)
	after, _ := ReadHistogram(reg, "x_seconds", map[string]string{"k": "a"})
	if d := after.Sub(before); d.Count != 1 || d.Quantile(0.5) <= 2 {
		t.Errorf("since before: %+v", d)
	}
	if b, _ := ReadHistogram(reg, "x_seconds", map[string]string{"k": "b"}); b.Quantile(0.5) != 4 {
		t.Errorf("past the last bound: %v, want the bound 4", b.Quantile(0.5))
	}
	if _, err := ReadHistogram(reg, "x_seconds", map[string]string{"k": "c"}); err == nil {
		t.Error("no series c, yet no error")
	}
}
