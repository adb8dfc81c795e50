package ari

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// waiter routes a WebSocket's events to whoever waits for a channel's
// StasisStart or ChannelDestroyed, without scanning the whole stream.
type waiter struct {
	conn   *websocket.Conn
	mu     sync.Mutex
	starts map[string]chan struct{}
	ends   map[string]chan int
	done   chan struct{}
	events atomic.Int64
}

func newWaiter(tb testing.TB, s *Server) *waiter {
	conn, resp, err := websocket.DefaultDialer.Dial(s.WebSocketURL("controller"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	w := &waiter{conn: conn, starts: map[string]chan struct{}{}, ends: map[string]chan int{}, done: make(chan struct{})}
	go w.read()
	tb.Cleanup(func() { conn.Close(); <-w.done })
	return w
}

func (w *waiter) expect(id string) (started chan struct{}, ended chan int) {
	started, ended = make(chan struct{}, 1), make(chan int, 1)
	w.mu.Lock()
	w.starts[id], w.ends[id] = started, ended
	w.mu.Unlock()
	return started, ended
}

func (w *waiter) read() {
	defer close(w.done)
	var ev struct {
		Type    string `json:"type"`
		Cause   int    `json:"cause"`
		Channel struct {
			ID string `json:"id"`
		} `json:"channel"`
	}
	for {
		_, data, err := w.conn.ReadMessage()
		if err != nil {
			return
		}
		w.events.Add(1)
		ev.Type, ev.Channel.ID, ev.Cause = "", "", 0
		if json.Unmarshal(data, &ev) != nil {
			continue
		}
		switch ev.Type {
		case "StasisStart":
			w.mu.Lock()
			ch := w.starts[ev.Channel.ID]
			delete(w.starts, ev.Channel.ID)
			w.mu.Unlock()
			if ch != nil {
				ch <- struct{}{}
			}
		case "ChannelDestroyed":
			w.mu.Lock()
			ch := w.ends[ev.Channel.ID]
			delete(w.ends, ev.Channel.ID)
			w.mu.Unlock()
			if ch != nil {
				ch <- ev.Cause
			}
		}
	}
}

func benchClient(s *Server) *client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	return &client{base: s.URL(), srv: s, hc: &http.Client{Transport: tr, Timeout: waitTimeout}}
}

func waitCh[T any](tb testing.TB, what string, ch <-chan T) T {
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		tb.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// BenchmarkHuntSetup drives what callctl does for one call with a
// three-member hunt: a phone calls in, two members are busy, the third
// answers and is bridged with the caller, then both hang up. It reports
// call setups per second.
func BenchmarkHuntSetup(b *testing.B) {
	n := newTestNet("ast1")
	n.setPhone("2001", phone{mode: phoneBusy})
	n.setPhone("2002", phone{mode: phoneBusy})
	n.setPhone("2003", phone{mode: phoneAnswer})
	s := startServer(b, Config{SystemName: "ast1", Network: n})
	w := newWaiter(b, s)
	var seq atomic.Int64
	// 32 calls in flight per CPU, as a controller has many calls at once.
	b.SetParallelism(32)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		c := benchClient(s)
		c.t = b
		for pb.Next() {
			k := strconv.FormatInt(seq.Add(1), 10)
			callerID := "in-" + k
			callerUp, callerEnd := w.expect(callerID)
			sc := newSIPCaller()
			in, err := s.Inbound(InboundCall{ChannelID: callerID, Endpoint: "2100", Context: "from-sipp", Exten: "8008003",
				Caller: Party{Number: "2100"}, Leg: sc})
			if err != nil {
				b.Fatal(err)
			}
			waitCh(b, "caller StasisStart", callerUp)
			for i, ext := range []string{"2001", "2002"} {
				id := fmt.Sprintf("m%d-%s", i, k)
				_, end := w.expect(id)
				c.must(200, "POST", "/channels", url.Values{"endpoint": {"PJSIP/" + ext}, "app": {"controller"},
					"channelId": {id}, "timeout": {"20"}}, nil)
				if cause := waitCh(b, "busy member", end); cause != 17 {
					b.Fatalf("member %s cause %d", ext, cause)
				}
			}
			memberID := "m2-" + k
			memberUp, memberEnd := w.expect(memberID)
			c.must(200, "POST", "/channels", url.Values{"endpoint": {"PJSIP/2003"}, "app": {"controller"},
				"channelId": {memberID}, "timeout": {"20"}}, nil)
			waitCh(b, "member StasisStart", memberUp)
			c.must(204, "POST", "/channels/"+callerID+"/answer", nil, nil)
			c.must(200, "POST", "/bridges", url.Values{"bridgeId": {"b-" + k}}, nil)
			c.must(204, "POST", "/bridges/b-"+k+"/addChannel", url.Values{"channel": {callerID + "," + memberID}}, nil)
			in.Hangup(causeNormalClearing)
			c.must(204, "DELETE", "/channels/"+memberID, nil, nil)
			c.must(204, "DELETE", "/bridges/b-"+k, nil, nil)
			waitCh(b, "member destroyed", memberEnd)
			_ = callerEnd // implicitly subscribed: no ChannelDestroyed after StasisEnd
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "setups/s")
	b.ReportMetric(float64(w.events.Load())/float64(b.N), "events/call")
}

// BenchmarkConcurrentCalls holds b.N answered calls at once (a phone
// calling in, answered, bridged with an answered member) on one server and
// reports the heap each costs the simulator. -benchtime 10000x gives the
// figure for 10,000 concurrent calls.
func BenchmarkConcurrentCalls(b *testing.B) {
	n := newTestNet("ast1")
	n.setPhone("2003", phone{mode: phoneAnswer})
	s := startServer(b, Config{SystemName: "ast1", Network: n})
	w := newWaiter(b, s)
	c := benchClient(s)
	c.t = b
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for k := 0; k < b.N; k++ {
		callerID, memberID := fmt.Sprintf("in-%d", k), fmt.Sprintf("m-%d", k)
		callerUp, _ := w.expect(callerID)
		memberUp, _ := w.expect(memberID)
		if _, err := s.Inbound(InboundCall{ChannelID: callerID, Endpoint: "2100", Context: "from-sipp", Exten: "2003",
			Caller: Party{Number: "2100"}, Leg: newSIPCaller()}); err != nil {
			b.Fatal(err)
		}
		waitCh(b, "caller StasisStart", callerUp)
		c.must(204, "POST", "/channels/"+callerID+"/answer", nil, nil)
		c.must(200, "POST", "/channels", url.Values{"endpoint": {"PJSIP/2003"}, "app": {"controller"}, "channelId": {memberID}}, nil)
		waitCh(b, "member StasisStart", memberUp)
		c.must(200, "POST", "/bridges", url.Values{"bridgeId": {"b-" + callerID}}, nil)
		c.must(204, "POST", "/bridges/b-"+callerID+"/addChannel", url.Values{"channel": {callerID + "," + memberID}}, nil)
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "heap-bytes/call")
	s.eng.lock()
	got := len(s.eng.channels)
	s.eng.unlock()
	if got != 2*b.N {
		b.Fatalf("%d channels, want %d", got, 2*b.N)
	}
}
