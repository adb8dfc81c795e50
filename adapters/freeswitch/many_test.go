package freeswitch

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// After 10,000 calls (3-member hunts: busy, busy, answer; 1,000 under the
// race detector, which is ten times slower) nothing is left: no call on the
// engine, no connection, no watched leg, no counted leg, no channel on the
// simulator, and as many goroutines as before the first call.
func TestManyCallsLeaveNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 calls: not in -short mode")
	}
	calls := 10000
	if raceEnabled {
		calls = 1000
	}
	calls = envInt("CALLCTL_TEST_CALLS", calls)
	l := newTestLab(t, labOptions{logger: benchLogger()})
	defer l.close()
	l.fleet.SetPhone("srv11", "77721401", callmodel.Busy())
	l.fleet.SetPhone("srv11", "77721402", callmodel.Busy())
	l.fleet.SetPhone("srv11", "77721403", callmodel.Answer(0))
	// The ESL connections are up and idle: this is the baseline.
	time.Sleep(100 * time.Millisecond)
	base := runtime.NumGoroutine()
	var waitMu sync.Mutex
	waiters := map[string]chan string{}
	unsub := l.sims["srv11"].Model().Subscribe(func(tx *callmodel.Tx, ev *callmodel.Event) {
		if ev.Kind != callmodel.ChannelHangup {
			return
		}
		waitMu.Lock()
		ch := waiters[ev.Channel.UUID]
		delete(waiters, ev.Channel.UUID)
		waitMu.Unlock()
		if ch != nil {
			ch <- ev.Channel.Cause.Name
		}
	})
	defer unsub()
	var mu sync.Mutex
	bad := map[string]int{}
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				id := l.fleet.NewUUID()
				ch := make(chan string, 1)
				waitMu.Lock()
				waiters[id] = ch
				waitMu.Unlock()
				_, err := l.fleet.PlaceCall("srv11", callmodel.InboundCall{Origin: callmodel.OriginPhone, UUID: id,
					Caller: callmodel.Party{Number: "3999"}, Destination: "8008001", FromExt: "3999",
					NetworkIP: "127.0.0.50", Plan: callmodel.CallerPlan{HangupAfterAnswer: 5 * time.Millisecond}})
				cause := ""
				if err != nil {
					cause = err.Error()
				} else {
					select {
					case cause = <-ch:
					case <-time.After(60 * time.Second):
						cause = "timeout"
					}
				}
				if cause != "NORMAL_CLEARING" {
					mu.Lock()
					bad[cause]++
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < calls; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("calls that did not end normally: %v", bad)
	}
	l.waitIdle(60 * time.Second)
	if n := len(l.records.all); n != calls {
		t.Errorf("%d call records for %d calls", n, calls)
	}
	checkGoroutines(t, base)
}
