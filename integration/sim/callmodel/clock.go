package callmodel

import (
	"container/heap"
	"sync"
	"time"
)

// Clock is the time source of a fleet. Timers are callbacks, never sleeping
// goroutines, so that ten thousand ringing channels cost no goroutines.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has elapsed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a cancellable pending callback.
type Timer interface {
	// Stop prevents the callback from running; it reports whether it did.
	Stop() bool
}

// RealClock is the wall clock, backed by time.AfterFunc.
func RealClock() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) Timer {
	return time.AfterFunc(d, f)
}

// ManualClock is a clock that only moves when Advance is called. Due
// callbacks run synchronously inside Advance, in deadline order, which makes
// behaviour tests deterministic.
type ManualClock struct {
	mu    sync.Mutex
	now   time.Time
	seq   uint64
	queue manualQueue
}

// NewManualClock returns a manual clock that starts at start.
func NewManualClock(start time.Time) *ManualClock { return &ManualClock{now: start} }

// Now returns the clock's current time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f to run when the clock has been advanced past d.
func (c *ManualClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &manualTimer{c: c, at: c.now.Add(d), seq: c.seq, f: f}
	heap.Push(&c.queue, t)
	return t
}

// Advance moves the clock forward by d and runs every callback that became
// due, each at its own deadline.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	for {
		if len(c.queue) == 0 || c.queue[0].at.After(end) {
			break
		}
		t := heap.Pop(&c.queue).(*manualTimer)
		t.index = -1
		if t.at.After(c.now) {
			c.now = t.at
		}
		c.mu.Unlock()
		t.f()
		c.mu.Lock()
	}
	c.now = end
	c.mu.Unlock()
}

// Pending reports how many callbacks are scheduled.
func (c *ManualClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

type manualTimer struct {
	c     *ManualClock
	at    time.Time
	seq   uint64
	f     func()
	index int
}

func (t *manualTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&t.c.queue, t.index)
	t.index = -1
	return true
}

type manualQueue []*manualTimer

func (q manualQueue) Len() int { return len(q) }
func (q manualQueue) Less(i, j int) bool {
	if q[i].at.Equal(q[j].at) {
		return q[i].seq < q[j].seq
	}
	return q[i].at.Before(q[j].at)
}
func (q manualQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index = i
	q[j].index = j
}
func (q *manualQueue) Push(x any) {
	t := x.(*manualTimer)
	t.index = len(*q)
	*q = append(*q, t)
}
func (q *manualQueue) Pop() any {
	old := *q
	n := len(old)
	t := old[n-1]
	old[n-1] = nil
	*q = old[:n-1]
	return t
}

// ScaledClock is the wall clock running factor times faster: a 30 s timer
// fires after 30/factor s of real time and Now advances accordingly. It
// lets tests play real-time scenarios (a 30 s ring, a 20 s heartbeat)
// quickly while keeping their order and proportions.
func ScaledClock(factor float64) Clock {
	if factor <= 0 {
		factor = 1
	}
	return &scaledClock{start: time.Now(), factor: factor}
}

type scaledClock struct {
	start  time.Time
	factor float64
}

func (c *scaledClock) Now() time.Time {
	return c.start.Add(time.Duration(float64(time.Since(c.start)) * c.factor))
}

func (c *scaledClock) AfterFunc(d time.Duration, f func()) Timer {
	return time.AfterFunc(time.Duration(float64(d)/c.factor), f)
}
