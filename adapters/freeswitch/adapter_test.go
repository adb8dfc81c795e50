package freeswitch

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/hunt"
	"github.com/callctl/callctl/controller/routing"
	"github.com/callctl/callctl/integration/sim/callmodel"
)

func TestRegisteredAndLiveChannels(t *testing.T) {
	l := newTestLab(t, labOptions{})
	defer l.close()
	ms := l.ms["srv11"]
	l.fleet.SetPhone("srv11", "1001", callmodel.Answer(0))
	l.fleet.SetPhone("srv11", "1002", callmodel.Unregistered())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ep, want := range map[string]bool{
		"user/1001": true, "user/1002": false, "user/1003": false, // 1003: no such phone
		"loopback/101/targets": true, "sofia/gateway/srv12/2099": true,
	} {
		got, err := ms.Registered(ctx, ep)
		if err != nil || got != want {
			t.Errorf("Registered(%s) = %v, %v; want %v", ep, got, err, want)
		}
	}
	for _, ep := range []string{"user/1001 1002", "user/1001\nbgapi hupall", "user/1,user/2", "bogus"} {
		if _, err := ms.Registered(ctx, ep); !errors.Is(err, ErrUnsafeInput) {
			t.Errorf("Registered(%q): %v", ep, err)
		}
	}
	// LiveChannels sees an answered call's two channels.
	l.fleet.SetPhone("srv11", "3998", callmodel.Answer(0))
	id := l.call("srv11", "3999", "", "3998", callmodel.CallerPlan{})
	var live []string
	if !waitFor(10*time.Second, func() bool {
		var err error
		live, err = ms.LiveChannels(ctx)
		return err == nil && len(live) == 2
	}) {
		t.Fatalf("live channels %v", live)
	}
	found := false
	for _, x := range live {
		found = found || x == id
	}
	if !found {
		t.Errorf("caller %s not among live channels %v", id, live)
	}
	if err := ms.Kill(ctx, id, "NORMAL_CLEARING"); err != nil {
		t.Fatal(err)
	}
	// Killing a channel that is gone is not an error.
	l.waitHangup(id, 10*time.Second)
	if err := ms.Kill(ctx, id, "NORMAL_CLEARING"); err != nil {
		t.Errorf("second kill: %v", err)
	}
	if _, err := ms.API(ctx, "no_such_command"); !errors.Is(err, ErrCommandFailed) {
		t.Errorf("unknown command: %v", err)
	}
	l.waitIdle(10 * time.Second)
}

// syncBuffer is a log sink for tests.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A wrong password is refused; the connection keeps retrying with backoff
// and says so in the log, and Run returns when its context ends.
func TestInboundWrongPasswordRetries(t *testing.T) {
	base := runtime.NumGoroutine()
	l := newTestLab(t, labOptions{})
	var logs syncBuffer
	ms := NewMediaServer(MediaServerConfig{Name: "srv11", Address: l.sims["srv11"].Addr(), Password: "wrong",
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ms.Run(ctx) }()
	if !waitFor(10*time.Second, func() bool { return strings.Count(logs.String(), "auth refused") >= 3 }) {
		t.Fatalf("log:\n%s", logs.String())
	}
	if ms.Connected() {
		t.Error("connected with a wrong password")
	}
	if _, err := ms.API(context.Background(), "status"); !errors.Is(err, ErrNotConnected) {
		t.Errorf("API while down: %v", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v", err)
	}
	l.close()
	checkGoroutines(t, base)
}

// Shutdown stops taking calls (FreeSWITCH's socket application fails and
// its dialplan goes on) and waits for the call in progress to end.
func TestGracefulShutdown(t *testing.T) {
	l := newTestLab(t, labOptions{})
	defer l.close()
	l.fleet.SetPhone("srv11", "3998", callmodel.Answer(0))
	first := l.call("srv11", "3999", "", "3998", callmodel.CallerPlan{})
	if !waitFor(10*time.Second, func() bool {
		r := l.fleet.RingsOf("srv11", "3998")
		return len(r) == 1 && r[0].Outcome == callmodel.OutcomeAnswered
	}) {
		t.Fatal("first call not answered")
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shut <- l.srv.Shutdown(ctx)
	}()
	if !waitFor(5*time.Second, func() bool { return l.srv.Addr() != nil && l.srv.closingNow() }) {
		t.Fatal("not shutting down")
	}
	// A new call finds no controller: the simulated dialplan refuses it.
	second := l.call("srv11", "3999", "", "3998", callmodel.CallerPlan{})
	if c := l.waitHangup(second, 10*time.Second); c != "DESTINATION_OUT_OF_ORDER" {
		t.Errorf("call during shutdown: %s", c)
	}
	// Shutdown is under way (the listener closed, the new call refused) and
	// the first call still up: it must not have returned.
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned while a call was up: %v", err)
	default:
	}
	if err := l.ms["srv11"].Kill(context.Background(), first, "NORMAL_CLEARING"); err != nil {
		t.Fatal(err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	l.waitIdle(10 * time.Second)
}

// A feature code goes back to the dialplan; when the dialplan hands the same
// digits straight back (its hand-off context runs socket), callctl notices
// and ends the call instead of looping.
func TestHandoffLoopIsStopped(t *testing.T) {
	l := newTestLab(t, labOptions{})
	defer l.close()
	id := l.call("srv11", "3999", "", "*97", callmodel.CallerPlan{})
	if c := l.waitHangup(id, 10*time.Second); c != routing.CauseFailure.String() {
		t.Errorf("caller hung up with %s", c)
	}
	recs := l.recordsOf(id)
	if len(recs) == 0 || recs[0].Route != "feature" || recs[0].HangupCause != "HANDOFF" {
		t.Errorf("records %+v", recs)
	}
	l.waitIdle(10 * time.Second)
}

// dialHandler is a Handler that dials what it is told and reports.
type dialHandler struct {
	spec controller.DialSpec
	out  chan dialReport
}

type dialReport struct {
	res controller.DialResult
	err error
}

func (h *dialHandler) Handle(ms controller.MediaServer, call controller.Call) error {
	ctx, cancel := context.WithTimeout(call.Context(), 10*time.Second)
	defer cancel()
	leg, res, err := call.Dial(ctx, h.spec)
	if leg != nil {
		_ = call.Hangup(ctx, routing.CauseNormal)
	}
	_ = call.Reject(ctx, routing.CauseRejected)
	h.out <- dialReport{res, err}
	return nil
}

// Whatever reaches Dial is checked again at the edge: an injected target is
// refused before anything is sent, and nothing rings.
func TestDialRefusesInjectedTargets(t *testing.T) {
	for _, target := range []string{"user/1000,user/evil", "user/1000|loopback/201/targets", "{x=y}user/1000",
		"user/1000 &park", "user/1000\nexecute-app-name: hangup", "loopback/201/targets,user/1000"} {
		h := &dialHandler{spec: controller.DialSpec{LegID: controller.NewID(), Target: target}, out: make(chan dialReport, 1)}
		l := newTestLab(t, labOptions{handler: h})
		l.fleet.SetPhone("srv11", "1000", callmodel.Answer(0))
		id := l.call("srv11", "3999", "", "1000", callmodel.CallerPlan{})
		r := <-h.out
		if !errors.Is(r.err, ErrUnsafeInput) || r.res.Outcome != hunt.Failed {
			t.Errorf("%q: %v %v", target, r.res, r.err)
		}
		if c := l.waitHangup(id, 10*time.Second); c != "CALL_REJECTED" {
			t.Errorf("%q: caller %s", target, c)
		}
		if rr := l.fleet.RingsOf("srv11", "1000"); len(rr) != 0 {
			t.Errorf("%q rang 1000", target)
		}
		l.close()
	}
}

func TestOriginate(t *testing.T) {
	l := newTestLab(t, labOptions{})
	defer l.close()
	ms := l.ms["srv11"]
	l.fleet.SetPhone("srv11", "1001", callmodel.Answer(50*time.Millisecond))
	l.fleet.SetPhone("srv11", "1002", callmodel.Busy())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leg := controller.NewID()
	id, err := ms.Originate(ctx, controller.DialSpec{LegID: leg, Target: "user/1001", CallerIDNumber: "3999", Timeout: 5 * time.Second})
	if err != nil || id != leg {
		t.Fatalf("originate: %q %v", id, err)
	}
	if r := l.fleet.RingsOf("srv11", "1001"); len(r) != 1 || r[0].Caller.Number != "3999" {
		t.Errorf("1001 rings %+v", r)
	}
	if err := ms.Kill(ctx, id, "NORMAL_CLEARING"); err != nil {
		t.Fatal(err)
	}
	_, err = ms.Originate(ctx, controller.DialSpec{LegID: controller.NewID(), Target: "user/1002"})
	if !errors.Is(err, ErrCommandFailed) || !strings.Contains(err.Error(), "USER_BUSY") {
		t.Errorf("busy originate: %v", err)
	}
	if _, err := ms.Originate(ctx, controller.DialSpec{LegID: controller.NewID(), Target: "user/1001 &bridge(user/1002)"}); !errors.Is(err, ErrUnsafeInput) {
		t.Errorf("injected originate: %v", err)
	}
	l.waitIdle(10 * time.Second)
}

// A peer that sends nothing (heartbeats off) is probed, not dropped: the
// inbound connection stays up across several idle periods.
func TestInboundIdleProbe(t *testing.T) {
	l := newTestLab(t, labOptions{})
	defer l.close()
	probes := probeCounter(t, l.sims["srv11"].Addr())
	ms := NewMediaServer(MediaServerConfig{Name: "srv11", Address: probes.addr, Password: "ClueCon",
		Logger: quietLogger(), IdleTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ms.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := ms.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	c, _ := ms.current()
	// Several idle periods without a heartbeat, each ended by a probe.
	if !waitFor(10*time.Second, func() bool { return probes.n.Load() >= 4 }) {
		t.Fatalf("%d probes sent on the idle connection, want 4", probes.n.Load())
	}
	if c2, err := ms.current(); err != nil || c2 != c {
		t.Errorf("the idle connection was replaced (%v)", err)
	}
	if _, err := ms.API(wctx, "status"); err != nil {
		t.Errorf("api after idling: %v", err)
	}
	cancel()
	<-done
}

// relay passes a connection to addr through, counting the idle probes
// ("api status") callctl sends on it.
type relay struct {
	addr string
	n    atomic.Int32
}

func probeCounter(t *testing.T, addr string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{addr: ln.Addr().String()}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", addr)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
			go func() {
				buf := make([]byte, 4096)
				var seen []byte
				for {
					k, err := in.Read(buf)
					if k > 0 {
						seen = append(seen, buf[:k]...)
						for {
							i := bytes.Index(seen, []byte("api status\n\n"))
							if i < 0 {
								break
							}
							r.n.Add(1)
							seen = seen[i+len("api status\n\n"):]
						}
						if len(seen) > 64 {
							seen = seen[len(seen)-64:]
						}
						if _, werr := out.Write(buf[:k]); werr != nil {
							return
						}
					}
					if err != nil {
						out.Close()
						return
					}
				}
			}()
		}
	}()
	return r
}

// A peer that accepts the handshake and then answers nothing (a hung
// process) is closed after the probe goes unanswered, and the connection is
// made again.
func TestInboundSilentPeerIsDropped(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	var wg sync.WaitGroup
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				_, _ = nc.Write([]byte("Content-Type: auth/request\n\n"))
				rd := bufio.NewReader(nc)
				for {
					line, err := rd.ReadString('\n')
					if err != nil {
						return
					}
					switch {
					case strings.HasPrefix(line, "auth "), strings.HasPrefix(line, "event "), strings.HasPrefix(line, "filter "):
						_, _ = nc.Write([]byte("Content-Type: command/reply\nReply-Text: +OK\n\n"))
					}
					// anything else (the probe) gets no answer
				}
			}()
		}
	}()
	ms := NewMediaServer(MediaServerConfig{Name: "srv11", Address: ln.Addr().String(), Password: "ClueCon",
		Logger: quietLogger(), IdleTimeout: 100 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ms.Run(ctx) }()
	if !waitFor(10*time.Second, func() bool { return accepted.Load() >= 3 }) {
		t.Errorf("the silent peer was not dropped and redialled (%d connections)", accepted.Load())
	}
	cancel()
	<-done
	ln.Close()
	wg.Wait()
}
