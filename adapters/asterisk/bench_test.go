package asterisk

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/memory"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
	simari "github.com/callctl/callctl/integration/sim/ari"
	"github.com/callctl/callctl/integration/sim/callmodel"
	"github.com/callctl/callctl/internal/promq"
	"github.com/prometheus/client_golang/prometheus"
)

// benchLogger formats every line as production would, and drops it.
func benchLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// huntLoad places calls from phone 2001 of srv12 to the 3-member hunt
// 8008021 (2121 and 2122 busy, 2123 answers).
type huntLoad struct {
	fleet *callmodel.Fleet
	obs   *observer
	// n calls, at most inFlight being set up at once (a slot is freed when
	// the caller is bridged), started at rate per second when rate > 0.
	n, inFlight int
	rate        float64
	// talk is how long each caller stays after it is answered.
	talk time.Duration
}

type huntResult struct {
	setups  []time.Duration // call placed to caller answered (and bridged)
	failed  int
	elapsed time.Duration // first call placed to last caller bridged
}

func setHuntPhones(f *callmodel.Fleet) {
	f.SetPhone("srv12", "2121", callmodel.Busy())
	f.SetPhone("srv12", "2122", callmodel.Busy())
	f.SetPhone("srv12", "2123", callmodel.Answer(0))
}

func (h huntLoad) run() huntResult {
	sem := make(chan struct{}, h.inFlight)
	var mu sync.Mutex
	res := huntResult{setups: make([]time.Duration, 0, h.n)}
	var wg sync.WaitGroup
	var failed atomic.Int64
	var tick *time.Ticker
	if h.rate > 0 {
		tick = time.NewTicker(time.Duration(float64(time.Second) / h.rate))
		defer tick.Stop()
	}
	start := time.Now()
	var last atomic.Int64
	for i := 0; i < h.n; i++ {
		if tick != nil {
			<-tick.C
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			placed := time.Now()
			uuid, err := h.fleet.PlaceCall("srv12", callmodel.InboundCall{Origin: callmodel.OriginPhone, FromExt: "2001",
				Caller: callmodel.Party{Number: "2001"}, Destination: "8008021",
				Plan: callmodel.CallerPlan{HangupAfterAnswer: h.talk}})
			if err != nil {
				<-sem
				failed.Add(1)
				return
			}
			s, ok := h.obs.wait(uuid, 30*time.Second, func(s seen) bool { return s.bridged != "" || !s.hungup.IsZero() })
			<-sem
			if !ok || s.bridged == "" {
				failed.Add(1)
			} else {
				mu.Lock()
				res.setups = append(res.setups, s.answered.Sub(placed))
				mu.Unlock()
				last.Store(time.Now().UnixNano())
			}
			h.obs.wait(uuid, 30*time.Second, func(s seen) bool { return !s.hungup.IsZero() })
			h.obs.forget(uuid)
		}()
	}
	wg.Wait()
	res.failed = int(failed.Load())
	res.elapsed = time.Duration(last.Load() - start.UnixNano())
	return res
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(q*float64(len(s)-1)+0.5)]
}

// TestTenThousandCallsLeaveNothing runs 10,000 hunts (300 with -short,
// 2,000 under the race detector) through the simulated Asterisk in this
// process and checks that nothing is left: no channel or bridge on the
// server, no tracked call or channel, no counted leg, no goroutine, and a
// record for every call.
func TestTenThousandCallsLeaveNothing(t *testing.T) {
	n := 10000
	switch {
	case testing.Short():
		n = 300
	case raceEnabled:
		n = 2000
	}
	base := runtime.NumGoroutine()
	o := labOptions{logger: benchLogger()}
	if os.Getenv("CALLCTL_TEST_LOG") != "" {
		o.logger = nil
	}
	l := newLab(t, o)
	setHuntPhones(l.fleet)
	res := huntLoad{fleet: l.fleet, obs: l.obs, n: n, inFlight: 64, talk: time.Second}.run()
	if res.failed > 0 {
		t.Errorf("%d of %d calls were not connected: %v", res.failed, n, l.recs.unanswered())
	}
	waitFor(t, 60*time.Second, func() bool { return l.recs.count() == n }, "a record per call")
	l.settled(60 * time.Second)
	s := l.cli["srv12"].Stats()
	if s.Calls != uint64(n) {
		t.Errorf("client handed over %d calls, want %d", s.Calls, n)
	}
	t.Logf("%d calls in %s (%.0f/s); setup p50 %s p99 %s",
		n, res.elapsed.Round(time.Millisecond), float64(n)/res.elapsed.Seconds(), quantile(res.setups, 0.5),
		quantile(res.setups, 0.99))
	l.close()
	goroutinesSettled(t, base)
}

// --- benchmarks with the simulator in another process ------------------------
//
// The simulated Asterisk is CPU-hungry (it plays every phone and serves
// every request); in a child process its work and garbage are not counted
// as callctl's, and callctl's goroutines are not queued behind it in one Go
// scheduler. Both processes still share the machine's cores.

const simProcEnv = "CALLCTL_ARI_SIMPROC"

// TestSimProcess is the simulated Asterisk of the benchmarks, run as a
// child process. Commands on stdin, one reply line each ("ok ..."):
//
//	hunts N INFLIGHT RATE TALKMS  run a hunt load: failed, setup p50/p99 µs, elapsed ms
//	place N                       N calls 2001 -> 2002 (answers), kept up
//	bridged                       how many placed callers are bridged
//	hangup                        every placed caller hangs up
//	channels                      the model's channel count
func TestSimProcess(t *testing.T) {
	if os.Getenv(simProcEnv) != "1" {
		t.Skip("helper process of the benchmarks")
	}
	fleet := callmodel.NewFleet(callmodel.WithLogger(quietLogger()))
	defer fleet.Close()
	m, err := fleet.AddServer(callmodel.ServerConfig{Name: "srv12", Kind: callmodel.Asterisk, IP: "127.0.0.12"})
	if err != nil {
		t.Fatal(err)
	}
	obs := newObserver()
	m.Subscribe(obs.observe)
	s, err := simari.Attach(m, simari.Config{App: "callctl", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fleet.SetPhone("srv12", "2002", callmodel.Answer(0))
	setHuntPhones(fleet)
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "URL %s\n", s.URL())
	out.Flush()
	var callers []string
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		arg := func(i int) int {
			if i >= len(f) {
				return 0
			}
			n, _ := strconv.Atoi(f[i])
			return n
		}
		switch f[0] {
		case "hunts":
			r := huntLoad{fleet: fleet, obs: obs, n: arg(1), inFlight: arg(2), rate: float64(arg(3)),
				talk: time.Duration(arg(4)) * time.Millisecond}.run()
			fmt.Fprintf(out, "ok %d %d %d %d\n", r.failed, quantile(r.setups, 0.5).Microseconds(),
				quantile(r.setups, 0.99).Microseconds(), r.elapsed.Milliseconds())
		case "place":
			// At most 100 being set up at once: a burst of 10,000 at the
			// same instant is not what a media server hands over.
			n := arg(1)
			sem := make(chan struct{}, 100)
			var wg sync.WaitGroup
			var mu sync.Mutex
			var perr error
			for i := 0; i < n; i++ {
				sem <- struct{}{}
				uuid, err := fleet.PlaceCall("srv12", callmodel.InboundCall{Origin: callmodel.OriginPhone, FromExt: "2001",
					Caller: callmodel.Party{Number: "2001"}, Destination: "2002"})
				if err != nil {
					perr = err
					<-sem
					break
				}
				callers = append(callers, uuid)
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, ok := obs.wait(uuid, 60*time.Second, func(s seen) bool { return s.bridged != "" || !s.hungup.IsZero() }); !ok {
						mu.Lock()
						perr = fmt.Errorf("call %s not bridged in time", uuid)
						mu.Unlock()
					}
					<-sem
				}()
			}
			wg.Wait()
			if perr != nil {
				fmt.Fprintf(out, "error %v\n", perr)
				break
			}
			fmt.Fprintf(out, "ok %d\n", len(callers))
		case "bridged":
			n := 0
			for _, id := range callers {
				if obs.get(id).bridged != "" {
					n++
				}
			}
			fmt.Fprintf(out, "ok %d\n", n)
		case "hangup":
			for _, id := range callers {
				_ = m.Do(func(tx *callmodel.Tx) error {
					tx.Hangup(id, callmodel.CauseNormalClearing, callmodel.ByRemote)
					return nil
				})
			}
			callers = nil
			fmt.Fprintf(out, "ok 0\n")
		case "channels":
			fmt.Fprintf(out, "ok %d\n", m.ChannelCount())
		default:
			fmt.Fprintf(out, "error unknown command %q\n", f[0])
		}
		out.Flush()
	}
}

// simProc drives the child simulator.
type simProc struct {
	in  io.WriteCloser
	out *bufio.Scanner
}

func startSimProc(tb testing.TB) (*simProc, string) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSimProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), simProcEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &simProc{in: in, out: bufio.NewScanner(stdout)}
	tb.Cleanup(func() {
		_ = p.in.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	for p.out.Scan() {
		if u, ok := strings.CutPrefix(p.out.Text(), "URL "); ok {
			return p, u
		}
	}
	tb.Fatal("simulator process did not start")
	return nil, ""
}

// ask sends a command and returns the numbers of its reply.
func (p *simProc) ask(tb testing.TB, cmd string) []int {
	tb.Helper()
	fmt.Fprintln(p.in, cmd)
	for p.out.Scan() {
		line := p.out.Text()
		if v, ok := strings.CutPrefix(line, "ok "); ok {
			var out []int
			for _, f := range strings.Fields(v) {
				n, _ := strconv.Atoi(f)
				out = append(out, n)
			}
			return out
		}
		if strings.HasPrefix(line, "error") {
			tb.Fatalf("%s: %s", cmd, line)
		}
	}
	tb.Fatalf("%s: simulator process gone", cmd)
	return nil
}

const procPlan = `
servers:
  - name: srv12
    kind: asterisk
    prefix: "12"
    asterisk: {url: "%s", user: ari, password: ari, app: callctl, context: default}
orgs:
  - id: acme
    country_code: "49"
    national_prefix: "0"
    international_prefix: "00"
    users:
      - {extension: "2001", server: srv12, endpoint: "PJSIP/2001"}
      - {extension: "2002", server: srv12, endpoint: "PJSIP/2002"}
    sip_numbers:
      - {number: "77700021", server: srv12, endpoint: "PJSIP/2121", next: "77700022"}
      - {number: "77700022", server: srv12, endpoint: "PJSIP/2122", next: "77700023"}
      - {number: "77700023", server: srv12, endpoint: "PJSIP/2123", next: "0000"}
    service_numbers:
      - {number: "8008021", start: "77700021"}
`

// procNode is callctl (engine, in-process limiter, one Client) in this
// process, against the simulator in the child.
type procNode struct {
	sim    *simProc
	reg    *prometheus.Registry
	eng    *controller.Engine
	cli    *Client
	recs   *recordSink
	cancel context.CancelFunc
	done   chan struct{}
}

func startProcNode(tb testing.TB) *procNode {
	tb.Helper()
	sim, url := startSimProc(tb)
	plan, problems, err := provision.Load("proc.yaml", fmt.Appendf(nil, procPlan, url))
	if err != nil {
		tb.Fatalf("%v\n%v", err, problems)
	}
	log := benchLogger()
	n := &procNode{sim: sim, reg: prometheus.NewRegistry(), recs: &recordSink{}, done: make(chan struct{})}
	store := memory.New(memory.Options{Node: "bench", Logger: log})
	n.eng = controller.NewEngine(plan, controller.Options{Node: "bench", Limiter: store, Records: n.recs, Stories: store, Logger: log,
		Metrics: controller.NewMetrics(n.reg)})
	cfg, err := FromServer(plan.Server("srv12"), log)
	if err != nil {
		tb.Fatal(err)
	}
	if n.cli, err = New(cfg); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { defer close(n.done); _ = n.cli.Run(ctx, n.eng) }()
	waitFor(tb, 10*time.Second, n.cli.Connected, "connected")
	tb.Cleanup(func() {
		n.cancel()
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		_ = n.eng.Drain(dctx)
		<-n.done
	})
	return n
}

// steps reads the engine's callctl_dial_step_seconds series of step.
func (n *procNode) steps(tb testing.TB, step string) promq.Histogram {
	tb.Helper()
	h, err := promq.ReadHistogram(n.reg, "callctl_dial_step_seconds", map[string]string{"step": step})
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// hunts runs a hunt load in the child and reports it, with the dial steps
// the engine's metrics saw during it.
func (n *procNode) hunts(b *testing.B, calls, inFlight, rate int) {
	setup0, member0 := n.steps(b, "setup"), n.steps(b, "member")
	r := n.sim.ask(b, fmt.Sprintf("hunts %d %d %d %d", calls, inFlight, rate, 1000))
	if r[0] > 0 {
		b.Errorf("%d of %d calls were not connected", r[0], calls)
	}
	el := time.Duration(r[3]) * time.Millisecond
	setup, member := n.steps(b, "setup").Sub(setup0), n.steps(b, "member").Sub(member0)
	b.ReportMetric(float64(calls)/el.Seconds(), "setups/s")
	b.ReportMetric(float64(r[2])/1000, "setup-p99-ms")
	b.ReportMetric(setup.Quantile(0.5)*1000, "step-p50-ms")
	b.ReportMetric(setup.Quantile(0.99)*1000, "step-p99-ms")
	b.ReportMetric(member.Quantile(0.99)*1000, "member-p99-ms")
	b.ReportMetric(float64(setup.Count)/float64(calls), "steps/call")
}

// BenchmarkHuntSetups: call setups per second with 3-member hunts (two
// busy, the third answers), as many as 64 being set up at once, and
// callctl's latency per dial step from its callctl_dial_step_seconds
// (setup: from the call's arrival, or the event that ended the previous
// member reaching callctl, to the next originate leaving).
func BenchmarkHuntSetups(b *testing.B) {
	n := startProcNode(b)
	n.sim.ask(b, "hunts 300 32 0 100") // warm up
	b.ResetTimer()
	n.hunts(b, b.N, 64, 0)
}

// BenchmarkHuntSteps300 offers the same hunts at 300 calls a second, the
// target load rather than the most the machine takes, and reports the dial
// step latency at that load.
func BenchmarkHuntSteps300(b *testing.B) {
	n := startProcNode(b)
	n.sim.ask(b, "hunts 300 32 0 100")
	b.ResetTimer()
	n.hunts(b, b.N, 1000, 300)
}

// heapAndStacks is the live heap plus goroutine stacks after garbage
// collection. The runtime halves an oversized stack at most once per cycle;
// a call that lives for minutes sees many cycles, so several run here.
func heapAndStacks() uint64 {
	for i := 0; i < 5; i++ {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

func memSplit() (heap, stack uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.StackInuse
}

// BenchmarkActiveCallMemory measures callctl's memory (engine, adapter,
// limiter: live heap plus goroutine stacks) per active call with 10,000
// calls up at once, each a caller bridged with an answered phone.
func BenchmarkActiveCallMemory(b *testing.B) {
	calls := 10000
	if v, err := strconv.Atoi(os.Getenv("CALLCTL_BENCH_CALLS")); err == nil && v > 0 {
		calls = v
	}
	if os.Getenv("CALLCTL_BENCH_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	for i := 0; i < b.N; i++ {
		n := startProcNode(b)
		// One call first so that pools and caches exist before the baseline.
		n.sim.ask(b, "place 1")
		waitFor(b, 30*time.Second, func() bool { return n.sim.ask(b, "bridged")[0] == 1 }, "first call bridged")
		before := heapAndStacks()
		n.sim.ask(b, fmt.Sprintf("place %d", calls))
		waitFor(b, 300*time.Second, func() bool {
			if got := n.sim.ask(b, "bridged")[0]; got != calls+1 {
				if n.recs.count() > 0 {
					b.Fatalf("%d bridged, %d calls ended: %v", got, n.recs.count(), n.recs.unanswered())
				}
				time.Sleep(100 * time.Millisecond)
				return false
			}
			return true
		}, "all calls bridged")
		waitFor(b, 30*time.Second, func() bool { return n.eng.Active() == calls+1 }, "engine holds every call")
		after := heapAndStacks()
		perCall := float64(after-before) / float64(calls)
		if path := os.Getenv("CALLCTL_BENCH_HEAPPROFILE"); path != "" {
			if f, err := os.Create(path); err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
			h, st := memSplit()
			b.Logf("heap %d stacks %d", h, st)
		}
		b.Logf("%d active calls: %d B before, %d B with them: %.0f B per call; %d goroutines",
			calls, before, after, perCall, runtime.NumGoroutine())
		b.ReportMetric(perCall/1024, "KiB/call")
		n.sim.ask(b, "hangup")
		waitFor(b, 120*time.Second, func() bool { return n.eng.Active() == 0 && n.cli.Stats().Channels == 0 }, "all calls ended")
		waitFor(b, 30*time.Second, func() bool { return n.sim.ask(b, "channels")[0] == 0 }, "simulator empty")
	}
}
