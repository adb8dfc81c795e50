package freeswitch

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
	simesl "github.com/callctl/callctl/integration/sim/esl"
)

// The benchmarks run the simulator in a child process (this test binary
// started again with simChildEnv set), so that what they measure of callctl
// (memory, goroutines, GC, latency) is callctl's alone, and so that 10,000
// calls (a socket on each side) fit the file descriptor limit of each
// process. The parent talks to the child over stdin/stdout, one line each.

const simChildEnv = "CALLCTL_FS_SIM_CHILD"

type childConfig struct {
	Controller string            `json:"controller"`
	Servers    []childServer     `json:"servers"`
	Phones     map[string]string `json:"phones"` // "srv11/77721401" -> answer|busy|...
}

type childServer struct{ Name, IP string }

func TestMain(m *testing.M) {
	if cfg := os.Getenv(simChildEnv); cfg != "" {
		os.Exit(simChild(cfg))
	}
	os.Exit(m.Run())
}

func simChild(raw string) int {
	var cfg childConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	fleet := callmodel.NewFleet(callmodel.WithLogger(logger))
	defer fleet.Close()
	gateways := map[string]string{}
	for _, s := range cfg.Servers {
		gateways[s.Name] = s.Name
	}
	addrs := map[string]string{}
	sims := map[string]*simesl.Server{}
	for _, s := range cfg.Servers {
		m, err := fleet.AddServer(callmodel.ServerConfig{Name: s.Name, Kind: callmodel.FreeSWITCH, IP: s.IP})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		sim, err := simesl.New(m, simesl.Config{Switchname: s.Name, Controllers: []string{cfg.Controller},
			Gateways: gateways, Heartbeat: -1, Logger: logger, ConnectTimeout: 10 * time.Second})
		if err != nil || sim.Start() != nil {
			fmt.Fprintln(os.Stderr, "sim:", err)
			return 2
		}
		defer sim.Close()
		sims[s.Name] = sim
		addrs[s.Name] = sim.Addr()
	}
	for key, mode := range cfg.Phones {
		server, ext, _ := strings.Cut(key, "/")
		switch mode {
		case "answer":
			fleet.SetPhone(server, ext, callmodel.Answer(0))
		case "busy":
			fleet.SetPhone(server, ext, callmodel.Busy())
		case "ring":
			fleet.SetPhone(server, ext, callmodel.RingForever())
		}
	}
	hangups := &hangupWaiters{m: map[string]chan string{}}
	for _, s := range sims {
		s.Model().Subscribe(hangups.observe)
	}
	out := json.NewEncoder(os.Stdout)
	_ = out.Encode(addrs)
	in := bufio.NewScanner(os.Stdin)
	var held []heldCall
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "load": // load <calls> <workers> <server> <from> <dialed> <hangup-after-answer>
			var n, workers int
			var after time.Duration
			fmt.Sscan(f[1], &n)
			fmt.Sscan(f[2], &workers)
			after, _ = time.ParseDuration(f[6])
			_ = out.Encode(runLoad(fleet, hangups, n, workers, f[3], f[4], f[5], after))
		case "rate": // rate <calls> <per-second> <server> <from> <dialed> <hangup-after-answer>: open loop
			var n, perSec int
			fmt.Sscan(f[1], &n)
			fmt.Sscan(f[2], &perSec)
			after, _ := time.ParseDuration(f[6])
			_ = out.Encode(runRate(fleet, hangups, n, perSec, f[3], f[4], f[5], after))
		case "hold": // hold <calls> <workers> <server> <from> <dialed>: calls that stay up
			var n, workers int
			fmt.Sscan(f[1], &n)
			fmt.Sscan(f[2], &workers)
			var res map[string]any
			held, res = holdCalls(fleet, sims[f[3]], n, workers, f[3], f[4], f[5])
			_ = out.Encode(res)
		case "hangup": // hangs the held calls up and waits for every channel to go
			_ = out.Encode(hangupHeld(fleet, sims, held))
			held = nil
		}
	}
	return 0
}

type hangupWaiters struct {
	mu sync.Mutex
	m  map[string]chan string
}

func (h *hangupWaiters) observe(tx *callmodel.Tx, ev *callmodel.Event) {
	if ev.Kind != callmodel.ChannelHangup {
		return
	}
	h.mu.Lock()
	ch := h.m[ev.Channel.UUID]
	delete(h.m, ev.Channel.UUID)
	h.mu.Unlock()
	if ch != nil {
		ch <- ev.Channel.Cause.Name
	}
}

// runLoad places n calls with `workers` callers at a time, each waiting for
// its call to end before the next.
func runLoad(fleet *callmodel.Fleet, h *hangupWaiters, n, workers int, server, from, dialed string, after time.Duration) map[string]any {
	var next, done, failed atomic.Int64
	causes := sync.Map{}
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				id := fleet.NewUUID()
				ch := make(chan string, 1)
				h.mu.Lock()
				h.m[id] = ch
				h.mu.Unlock()
				if _, err := fleet.PlaceCall(server, callmodel.InboundCall{Origin: callmodel.OriginPhone, UUID: id,
					Caller: callmodel.Party{Number: from, Name: "Load"}, Destination: dialed, FromExt: from,
					NetworkIP: "127.0.0.50", Plan: callmodel.CallerPlan{HangupAfterAnswer: after}}); err != nil {
					failed.Add(1)
					continue
				}
				select {
				case c := <-ch:
					if c != "NORMAL_CLEARING" {
						failed.Add(1)
						v, _ := causes.LoadOrStore(c, new(atomic.Int64))
						v.(*atomic.Int64).Add(1)
					}
					done.Add(1)
				case <-time.After(60 * time.Second):
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	other := map[string]int64{}
	causes.Range(func(k, v any) bool { other[k.(string)] = v.(*atomic.Int64).Load(); return true })
	return map[string]any{"done": done.Load(), "failed": failed.Load(), "seconds": time.Since(start).Seconds(), "causes": other}
}

// runRate places n calls at perSec calls per second whatever happens to
// them (an open loop: a slow controller cannot slow the offered load down),
// and waits for all of them to end.
func runRate(fleet *callmodel.Fleet, h *hangupWaiters, n, perSec int, server, from, dialed string, after time.Duration) map[string]any {
	var done, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	interval := time.Second / time.Duration(perSec)
	for i := 0; i < n; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		id := fleet.NewUUID()
		ch := make(chan string, 1)
		h.mu.Lock()
		h.m[id] = ch
		h.mu.Unlock()
		if _, err := fleet.PlaceCall(server, callmodel.InboundCall{Origin: callmodel.OriginPhone, UUID: id,
			Caller: callmodel.Party{Number: from, Name: "Load"}, Destination: dialed, FromExt: from,
			NetworkIP: "127.0.0.50", Plan: callmodel.CallerPlan{HangupAfterAnswer: after}}); err != nil {
			failed.Add(1)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case c := <-ch:
				if c != "NORMAL_CLEARING" {
					failed.Add(1)
				}
				done.Add(1)
			case <-time.After(60 * time.Second):
				failed.Add(1)
			}
		}()
	}
	offered := time.Since(start).Seconds()
	wg.Wait()
	return map[string]any{"done": done.Load(), "failed": failed.Load(), "seconds": offered, "causes": map[string]int64{}}
}

type heldCall struct{ server, id string }

// holdCalls places n calls to a phone that answers and stays up, and returns
// once every one is answered.
func holdCalls(fleet *callmodel.Fleet, sim *simesl.Server, n, workers int, server, from, dialed string) ([]heldCall, map[string]any) {
	ids := make(chan string, n)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				id, err := fleet.PlaceCall(server, callmodel.InboundCall{Origin: callmodel.OriginPhone,
					Caller: callmodel.Party{Number: from, Name: "Hold"}, Destination: dialed, FromExt: from, NetworkIP: "127.0.0.50"})
				if err != nil {
					failed.Add(1)
					continue
				}
				ids <- id
				// Keep a bounded number of calls being set up at once.
				deadline := time.Now().Add(30 * time.Second)
				for time.Now().Before(deadline) {
					if s, ok := sim.Model().Snapshot(id); ok && s.Up() && s.BridgedTo != "" {
						break
					}
					time.Sleep(2 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	close(ids)
	var held []heldCall
	up := 0
	for id := range ids {
		held = append(held, heldCall{server, id})
		if s, ok := sim.Model().Snapshot(id); ok && s.Up() && s.BridgedTo != "" {
			up++
		}
	}
	return held, map[string]any{"placed": len(held), "bridged": up, "failed": failed.Load(), "channels": sim.Model().ChannelCount()}
}

func hangupHeld(fleet *callmodel.Fleet, sims map[string]*simesl.Server, held []heldCall) map[string]any {
	for _, h := range held {
		_ = sims[h.server].Model().Do(func(tx *callmodel.Tx) error {
			tx.Hangup(h.id, callmodel.CauseNormalClearing, callmodel.ByRemote)
			return nil
		})
	}
	deadline := time.Now().Add(60 * time.Second)
	left := 0
	for time.Now().Before(deadline) {
		left = 0
		for _, s := range sims {
			left += s.Model().ChannelCount()
		}
		if left == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return map[string]any{"channels_left": left}
}

// simProcess is the parent's handle on the child.
type simProcess struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *json.Decoder
	addrs map[string]string
}

func startSimProcess(tb testing.TB, cfg childConfig) *simProcess {
	tb.Helper()
	raw, _ := json.Marshal(cfg)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), simChildEnv+"="+string(raw))
	if n := os.Getenv("CALLCTL_SIM_GOMAXPROCS"); n != "" {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+n)
	}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &simProcess{cmd: cmd, in: in, out: json.NewDecoder(outPipe)}
	if err := p.out.Decode(&p.addrs); err != nil {
		_ = cmd.Process.Kill()
		tb.Fatalf("simulator process: %v", err)
	}
	return p
}

func (p *simProcess) do(tb testing.TB, line string) map[string]any {
	tb.Helper()
	if _, err := io.WriteString(p.in, line+"\n"); err != nil {
		tb.Fatal(err)
	}
	var res map[string]any
	if err := p.out.Decode(&res); err != nil {
		tb.Fatalf("simulator process (%s): %v", line, err)
	}
	return res
}

func (p *simProcess) stop() {
	_ = p.in.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}
