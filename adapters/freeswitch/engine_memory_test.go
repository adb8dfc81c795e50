package freeswitch

// The engine alone, for the breakdown of BenchmarkActiveCallMemory.

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/hunt"
	"github.com/callctl/callctl/controller/routing"
)

type fakeCall struct {
	id  string
	ctx context.Context
	leg chan struct{}
}

func (f *fakeCall) ID() string { return f.id }
func (f *fakeCall) Info() controller.CallInfo {
	return controller.CallInfo{Server: "srv11", Source: "127.0.0.50:5060", Caller: "3999", Dialed: "3998"}
}
func (f *fakeCall) Dial(ctx context.Context, spec controller.DialSpec) (controller.Leg, controller.DialResult, error) {
	return &fakeLeg{spec.LegID, f.leg}, controller.DialResult{Outcome: hunt.Answered}, nil
}
func (f *fakeCall) Reject(context.Context, routing.Cause) error { return nil }
func (f *fakeCall) Hangup(context.Context, routing.Cause) error { return nil }
func (f *fakeCall) Handoff(context.Context, string) error       { return nil }
func (f *fakeCall) Context() context.Context                    { return f.ctx }
func (f *fakeCall) EndCause() string                            { return "" }

type fakeLeg struct {
	id string
	ch chan struct{}
}

func (l *fakeLeg) ID() string             { return l.id }
func (l *fakeLeg) Ended() <-chan struct{} { return l.ch }

type fakeMS struct{}

func (fakeMS) Name() string                                     { return "srv11" }
func (fakeMS) Registered(context.Context, string) (bool, error) { return true, nil }
func (fakeMS) LiveChannels(context.Context) ([]string, error)   { return nil, nil }

// BenchmarkActiveCallMemoryEngineOnly parks CALLCTL_BENCH_CALLS calls in
// controller.Engine.Handle with a fake Call that answers at once and a leg
// that never ends: the engine's own memory per active call, without this
// adapter, for the breakdown of BenchmarkActiveCallMemory.
func BenchmarkActiveCallMemoryEngineOnly(b *testing.B) {
	n := envInt("CALLCTL_BENCH_CALLS", 10000)
	for i := 0; i < b.N; i++ {
		l := newTestLab(b, labOptions{logger: benchLogger()})
		h0, s0 := liveBytes()
		var wg sync.WaitGroup
		legEnd := make(chan struct{})
		for j := 0; j < n; j++ {
			wg.Add(1)
			c := &fakeCall{id: controller.NewID(), ctx: context.Background(), leg: legEnd}
			go func() { defer wg.Done(); _ = l.engine.Handle(fakeMS{}, c) }()
		}
		for l.engine.Active() < n {
			time.Sleep(time.Millisecond)
		}
		h1, s1 := liveBytes()
		b.ReportMetric(float64(h1+s1-h0-s0)/float64(n), "B/active-call")
		b.ReportMetric(float64(h1-h0)/float64(n), "heap-B/call")
		b.ReportMetric(float64(s1-s0)/float64(n), "stack-B/call")
		close(legEnd)
		wg.Wait()
		l.close()
		_ = runtime.NumGoroutine
	}
}
