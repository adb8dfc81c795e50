package esl

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// benchController answers every outbound connection with a hunt: two busy
// members, then one that answers; once bridged it hangs up.
func benchController(b *testing.B, ln net.Listener, done chan<- struct{}) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer nc.Close()
			w := bufio.NewWriter(nc)
			fmt.Fprint(w, "connect\n\nmyevents\n\n")
			fmt.Fprint(w, "sendmsg\ncall-command: execute\nexecute-app-name: set\nexecute-app-arg: continue_on_fail=true\n\n")
			for _, m := range []string{"2001", "2002", "2003"} {
				fmt.Fprintf(w, "sendmsg\ncall-command: execute\nexecute-app-name: bridge\nexecute-app-arg: user/%s\n\n", m)
			}
			_ = w.Flush()
			r := bufio.NewReader(nc)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if strings.HasPrefix(line, "Content-Length: ") {
					var n int
					fmt.Sscanf(line, "Content-Length: %d", &n)
					_, _ = r.ReadString('\n') // Content-Type
					_, _ = r.ReadString('\n') // blank
					body := make([]byte, n)
					if _, err := io.ReadFull(r, body); err != nil {
						return
					}
					if strings.HasPrefix(string(body), "Event-Name: CHANNEL_BRIDGE\n") {
						fmt.Fprint(nc, "sendmsg\ncall-command: hangup\n\n")
					}
					if strings.HasPrefix(string(body), "Event-Name: CHANNEL_HANGUP_COMPLETE\n") {
						done <- struct{}{}
						return
					}
				}
			}
		}()
	}
}

// BenchmarkHuntCallSetup measures complete calls through the outbound
// socket: a phone calls, the controller hunts over three members (busy,
// busy, answer), bridges and hangs up.
func BenchmarkHuntCallSetup(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	fleet := callmodel.NewFleet()
	defer fleet.Close()
	m, _ := fleet.AddServer(callmodel.ServerConfig{Name: "fs1", Kind: callmodel.FreeSWITCH, IP: "127.0.0.11"})
	srv, err := New(m, Config{Controllers: []string{ln.Addr().String()}, Heartbeat: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	fleet.SetPhone("fs1", "2001", callmodel.Busy())
	fleet.SetPhone("fs1", "2002", callmodel.Busy())
	fleet.SetPhone("fs1", "2003", callmodel.Answer(0))
	done := make(chan struct{}, 1024)
	go benchController(b, ln, done)
	b.ResetTimer()
	var wg sync.WaitGroup
	inFlight := benchInFlight
	sem := make(chan struct{}, inFlight)
	for i := 0; i < b.N; i++ {
		sem <- struct{}{}
		if _, err := fleet.PlaceCall("fs1", callmodel.InboundCall{Caller: callmodel.Party{Number: "3000"}, Destination: "8000"}); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() { <-done; <-sem; wg.Done() }()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkConcurrentParkedCalls holds b.N answered loopback calls up at
// the same time (two channels each) and reports the memory they take.
func BenchmarkConcurrentParkedCalls(b *testing.B) {
	fleet := callmodel.NewFleet()
	defer fleet.Close()
	m, _ := fleet.AddServer(callmodel.ServerConfig{Name: "fs1", Kind: callmodel.FreeSWITCH, IP: "127.0.0.11"})
	srv, err := New(m, Config{Heartbeat: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	b.ResetTimer()
	results := make(chan string, b.N)
	for i := 0; i < b.N; i++ {
		srv.runAPI("originate loopback/501/targets &park()", func(_ *callmodel.Tx, out string) { results <- out })
	}
	for i := 0; i < b.N; i++ {
		if out := <-results; !strings.HasPrefix(out, "+OK") {
			b.Fatalf("originate: %s", out)
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := m.ChannelCount(); n != 2*b.N {
		b.Fatalf("%d channels for %d calls", n, b.N)
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "heap-bytes/call")
	b.ReportMetric(float64(runtime.NumGoroutine()-g0), "goroutines")
	_ = m.Do(func(tx *callmodel.Tx) error {
		for _, ch := range tx.Channels() {
			tx.Hangup(ch.UUID, callmodel.CauseNormalClearing, callmodel.ByRequest)
		}
		return nil
	})
}

var benchInFlight = 64
