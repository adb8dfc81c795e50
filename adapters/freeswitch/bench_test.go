package freeswitch

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/internal/promq"
	"github.com/prometheus/client_golang/prometheus"
)

// stepQuantiles reads callctl's dial-step histogram (step is "setup" or
// "member") from the engine's metrics: p50 and p99, and how many steps.
func stepQuantiles(tb testing.TB, reg *prometheus.Registry, step string) (p50, p99 time.Duration, n uint64) {
	tb.Helper()
	h, err := promq.ReadHistogram(reg, "callctl_dial_step_seconds", map[string]string{"step": step})
	if err != nil {
		tb.Fatal(err)
	}
	d := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	return d(h.Quantile(0.5)), d(h.Quantile(0.99)), h.Count
}

func benchLogger() *slog.Logger {
	// Info level, formatted and thrown away: the formatting cost is counted.
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// BenchmarkHunt3 runs sustained 3-member hunts through callctl and the
// simulator (in a child process): members 1 and 2 are busy, member 3
// answers, the caller hangs up 20 ms after the answer. Every member is a
// user/ endpoint, so each attempt also costs a registration check
// (sofia_contact) on the inbound connection. It reports completed calls per
// second and callctl's own latency per dial step: from the event that tells
// a member's outcome reaching callctl to the next bridge (or the final
// hangup) leaving, without the registration check's round trip to the
// media server in between. CALLCTL_BENCH_WORKERS sets the number of
// simultaneous callers (default 32: a closed loop, which finds the highest
// rate); CALLCTL_BENCH_RATE instead offers calls at that many per second
// whatever happens to them (an open loop, for latency at a given load).
// CALLCTL_SIM_GOMAXPROCS sets the simulator process's GOMAXPROCS.
func BenchmarkHunt3(b *testing.B) {
	reg := prometheus.NewRegistry()
	l := newTestLab(b, labOptions{logger: benchLogger(), channelLimit: 100000,
		engineOpts: func(o *controller.Options) { o.Metrics = controller.NewMetrics(reg) },
		remote: &childConfig{Phones: map[string]string{
			"srv11/77721401": "busy", "srv11/77721402": "busy", "srv11/77721403": "answer"}}})
	defer l.close()
	b.ReportAllocs()
	workers := envInt("CALLCTL_BENCH_WORKERS", 32)
	cmd := fmt.Sprintf("load %d %d srv11 3999 8008001 20ms", b.N, workers)
	if r := envInt("CALLCTL_BENCH_RATE", 0); r > 0 {
		cmd = fmt.Sprintf("rate %d %d srv11 3999 8008001 20ms", b.N, r)
		workers = 0
	}
	b.ResetTimer()
	res := l.proc.do(b, cmd)
	b.StopTimer()
	if f := res["failed"].(float64); f > 0 {
		b.Errorf("%v of %d calls did not end normally: %v", f, b.N, res["causes"])
	}
	l.waitIdle(60 * time.Second)
	rate := res["done"].(float64) / res["seconds"].(float64)
	s50, s99, sn := stepQuantiles(b, reg, "setup")
	m50, m99, mn := stepQuantiles(b, reg, "member")
	b.ReportMetric(rate, "calls/s")
	b.ReportMetric(float64(s50.Microseconds()), "setup-p50-µs")
	b.ReportMetric(float64(s99.Microseconds()), "setup-p99-µs")
	b.ReportMetric(float64(m99.Microseconds()), "member-p99-µs")
	b.Logf("%d calls, %d workers, %.1f s: %.1f calls/s; %d setup steps p50 %v p99 %v; %d member steps p50 %v p99 %v",
		int(res["done"].(float64)), workers, res["seconds"], rate, sn, s50, s99, mn, m50, m99)
}

func liveBytes() (heap, stack uint64) {
	for i := 0; i < envInt("CALLCTL_BENCH_GCS", 2); i++ {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.StackInuse
}

// BenchmarkActiveCallMemory puts CALLCTL_BENCH_CALLS (default 10,000)
// answered calls up at the same time (the simulator in a child process) and
// reports callctl's memory per active call: live heap plus goroutine stacks
// after GC, minus the same before the calls, divided by the calls. Then it
// hangs them all up and checks that no goroutine, connection, watched leg or
// counted leg is left.
func BenchmarkActiveCallMemory(b *testing.B) {
	calls := envInt("CALLCTL_BENCH_CALLS", 10000)
	for i := 0; i < b.N; i++ {
		base := runtime.NumGoroutine()
		func() {
			l := newTestLab(b, labOptions{logger: benchLogger(), channelLimit: 100000,
				remote: &childConfig{Phones: map[string]string{"srv11/3998": "answer"}}})
			defer l.close()
			withLab := runtime.NumGoroutine()
			h0, s0 := liveBytes()
			res := l.proc.do(b, fmt.Sprintf("hold %d 64 srv11 3999 3998", calls))
			if int(res["bridged"].(float64)) != calls {
				b.Fatalf("held calls: %v", res)
			}
			if n := l.engine.Active(); n != calls {
				b.Fatalf("engine has %d calls, want %d", n, calls)
			}
			// The simulator reports a call bridged as soon as it is; callctl
			// may still be reading the event. Measure once every call is
			// connected on callctl's side too.
			if !waitFor(60*time.Second, func() bool {
				for _, c := range l.engine.Calls() {
					if c.Answered == "" {
						return false
					}
				}
				return true
			}) {
				b.Fatal("callctl did not see every call connected")
			}
			h1, s1 := liveBytes()
			if path := os.Getenv("CALLCTL_BENCH_GOROUTINES"); path != "" {
				// Where every goroutine waits while the calls are up.
				if f, err := os.Create(path); err == nil {
					_ = pprof.Lookup("goroutine").WriteTo(f, 1)
					_ = f.Close()
				}
			}
			if path := os.Getenv("CALLCTL_BENCH_HEAPPROFILE"); path != "" {
				// The heap while every call is up, for a closer look.
				if f, err := os.Create(path); err == nil {
					_ = pprof.WriteHeapProfile(f)
					_ = f.Close()
				}
			}
			perCall := float64(h1+s1-h0-s0) / float64(calls)
			goroutines := float64(runtime.NumGoroutine()-withLab) / float64(calls)
			b.ReportMetric(perCall, "B/active-call")
			b.ReportMetric(float64(h1-h0)/float64(calls), "heap-B/call")
			b.ReportMetric(float64(s1-s0)/float64(calls), "stack-B/call")
			b.ReportMetric(goroutines, "goroutines/call")
			if n := countOn(l, "srv11"); n != 0 {
				b.Errorf("phone calls counted %d legs", n)
			}
			res = l.proc.do(b, "hangup")
			if res["channels_left"].(float64) != 0 {
				b.Errorf("simulator channels left: %v", res)
			}
			l.waitIdle(60 * time.Second)
			b.Logf("%d active calls: %.0f B/call (heap %.0f, stacks %.0f), %.2f goroutines/call",
				calls, perCall, float64(h1-h0)/float64(calls), float64(s1-s0)/float64(calls), goroutines)
		}()
		checkGoroutines(b, base)
	}
}
