package asterisk

import (
	"sync/atomic"
	"time"
)

// latencyHist is a fixed-bucket histogram of short durations: 20 µs buckets
// up to 100 ms, then one overflow bucket. Observing is one atomic add, so
// it can sit on the path it measures.
type latencyHist struct {
	buckets [latBuckets + 1]atomic.Uint64
	count   atomic.Uint64
	max     atomic.Int64
}

const (
	latStep    = 20 * time.Microsecond
	latBuckets = int(100 * time.Millisecond / latStep)
)

func (h *latencyHist) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := int(d / latStep)
	if i > latBuckets {
		i = latBuckets
	}
	h.buckets[i].Add(1)
	h.count.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// quantile returns the upper bound of the bucket holding quantile q (0..1);
// 0 when nothing was observed.
func (h *latencyHist) quantile(q float64) time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	if rank == 0 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	var seen uint64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= rank {
			if i == latBuckets {
				return time.Duration(h.max.Load())
			}
			return time.Duration(i+1) * latStep
		}
	}
	return time.Duration(h.max.Load())
}

func (h *latencyHist) reset() {
	for i := range h.buckets {
		h.buckets[i].Store(0)
	}
	h.count.Store(0)
	h.max.Store(0)
}

// Stats are counters of one Client, for metrics and tests.
type Stats struct {
	// Calls is the number of calls handed to the handler.
	Calls uint64
	// Active is the number of calls (and their legs) still tracked.
	Active int
	// Channels is the number of channel ids tracked (callers and legs).
	Channels int
	// Connects counts WebSocket connections established; Disconnects
	// those lost; Reconciles the reconciliations run after a reconnect.
	Connects    uint64
	Disconnects uint64
	Reconciles  uint64
	// BadFrames counts frames that were not a JSON event; Ignored the
	// events of types callctl does not handle.
	BadFrames uint64
	Ignored   uint64
	// DialSteps is the number of dial steps measured, and DialStepP50,
	// P99 and Max the time from the event that decided a step (an attempt
	// ended or answered) reaching callctl to callctl's next request for
	// that call leaving.
	DialSteps   uint64
	DialStepP50 time.Duration
	DialStepP99 time.Duration
	DialStepMax time.Duration
}
