package aside

import (
	"runtime"
	"testing"
)

func TestDoRunsAndWaits(t *testing.T) {
	n := 0
	Do(func() { n = 42 })
	if n != 42 {
		t.Fatalf("n = %d after Do, want 42", n)
	}
}

func TestDoRaisesThePanicInTheCaller(t *testing.T) {
	defer func() {
		if r := recover(); r != "boom" {
			t.Fatalf("recovered %v, want boom", r)
		}
	}()
	Do(func() { panic("boom") })
	t.Fatal("Do returned after a panic")
}

// The work's deep stack is not the caller's: a goroutine that waits (here
// in a frame of about 300 B, as a call's waiting frames are) keeps its first
// stack when its deep work ran aside, and twice that when it ran in place
// (its stack cannot shrink back while it holds those frames).
func TestDoKeepsTheCallersStackSmall(t *testing.T) {
	const n = 200
	measure := func(work func()) uint64 {
		release := make(chan struct{})
		ready := make(chan struct{}, n)
		for range n {
			go hold(work, ready, release)
		}
		for range n {
			<-ready
		}
		for range 5 {
			runtime.GC()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		close(release)
		return ms.StackInuse
	}
	deep := func() { recurse(400) }
	base := measure(func() {})
	inPlace := measure(deep)
	asideStacks := measure(func() { Do(deep) })
	t.Logf("stacks with %d waiting goroutines: %d B idle, %d B after deep work in place, %d B after it aside", n, base, inPlace, asideStacks)
	if inPlace < base+n*1536 {
		t.Fatalf("deep work in place left %d B of stacks (idle %d B): the test's waiting frame is too small to show it", inPlace, base)
	}
	if asideStacks-base >= (inPlace-base)/3 {
		t.Fatalf("deep work aside left %d B of stacks, idle %d B, in place %d B: the waiting goroutines' stacks grew", asideStacks, base, inPlace)
	}
}

// hold does work, then waits in a frame of about 300 B.
func hold(work func(), ready chan<- struct{}, release <-chan struct{}) {
	var pad [256]byte
	work()
	ready <- struct{}{}
	<-release
	runtime.KeepAlive(&pad)
}

// recurse uses about 100 B of stack per level.
func recurse(n int) int {
	var pad [64]byte
	pad[n%64] = byte(n)
	if n == 0 {
		return int(pad[0])
	}
	return recurse(n-1) + int(pad[n%64])
}
