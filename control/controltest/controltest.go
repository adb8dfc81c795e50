// Package controltest is the contract every store of the control plane's
// state (a local file, Redis) must meet: compare-and-set commits on the
// revision, whole states, watchers told of every new revision, an audit log
// filtered by org and bounded. Each store's tests call Run.
package controltest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/callctl/callctl/control"
)

// wait bounds anything asynchronous (a loaded machine); tests poll.
const wait = 20 * time.Second

// Run runs the contract; open returns two handles on one fresh, empty store
// (two nodes' views, or one twice for a single-node store).
func Run(t *testing.T, open func(t *testing.T) (control.Store, control.Store)) {
	t.Run("CompareAndSet", func(t *testing.T) { testCAS(t, open) })
	t.Run("ConcurrentCommits", func(t *testing.T) { testConcurrent(t, open) })
	t.Run("Watch", func(t *testing.T) { testWatch(t, open) })
	t.Run("Audit", func(t *testing.T) { testAudit(t, open) })
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	t.Cleanup(cancel)
	return ctx
}

func state(rev int64) *control.State {
	return &control.State{Revision: rev, Plan: fmt.Sprintf("servers: [] # %d\n", rev), Version: fmt.Sprintf("v%d", rev),
		Changed: time.Unix(1700000000+rev, 0).UTC(), ChangedBy: "test",
		Assignments: []control.Assignment{{ID: fmt.Sprintf("a%d", rev), Number: "+4930555001", Owner: "A", To: "B", State: control.Requested,
			Tokens: map[string]string{"A": "h1", "B": "h2"}}},
		Files: map[string]control.FileMark{"n1": {Hash: "abc", Version: fmt.Sprintf("v%d", rev)}}}
}

func testCAS(t *testing.T, open func(t *testing.T) (control.Store, control.Store)) {
	a, b := open(t)
	ctx := ctxFor(t)
	st, err := a.Load(ctx)
	if err != nil || st.Revision != 0 || st.Plan != "" {
		t.Fatalf("empty store: %+v, %v", st, err)
	}
	if err := a.Commit(ctx, 0, state(1), nil); err != nil {
		t.Fatalf("first commit: %v", err)
	}
	// The other view, based on what it read before: refused.
	if err := b.Commit(ctx, 0, state(1), nil); !errors.Is(err, control.ErrConflict) {
		t.Fatalf("commit on an old revision: %v, want ErrConflict", err)
	}
	if err := b.Commit(ctx, 1, state(3), nil); err == nil || errors.Is(err, control.ErrConflict) {
		t.Fatalf("commit that skips a revision: %v, want an error that is not a conflict", err)
	}
	got, err := b.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := state(1)
	if got.Revision != 1 || got.Plan != want.Plan || got.Version != want.Version || !got.Changed.Equal(want.Changed) ||
		len(got.Assignments) != 1 || got.Assignments[0].Tokens["B"] != "h2" || got.Files["n1"].Hash != "abc" {
		t.Fatalf("load after commit: %+v", got)
	}
	if err := b.Commit(ctx, 1, state(2), nil); err != nil {
		t.Fatalf("commit on the current revision: %v", err)
	}
	got.Plan = "edited by the reader"
	if again, _ := a.Load(ctx); again.Revision != 2 || again.Plan != state(2).Plan {
		t.Fatalf("load: %+v", again)
	}
}

// Many writers on one revision: exactly one wins.
func testConcurrent(t *testing.T, open func(t *testing.T) (control.Store, control.Store)) {
	a, b := open(t)
	ctx := ctxFor(t)
	if err := a.Commit(ctx, 0, state(1), nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, lost := 0, 0
	for i := 0; i < 16; i++ {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			next := state(2)
			next.ChangedBy = fmt.Sprint("writer ", i)
			err := s.Commit(ctx, 1, next, []control.Entry{{Action: "test", Actor: next.ChangedBy}})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, control.ErrConflict):
				lost++
			default:
				t.Errorf("writer %d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	if won != 1 || lost != 15 {
		t.Fatalf("%d commits won and %d lost on one revision, want 1 and 15", won, lost)
	}
	entries, err := b.Audit(ctx, "", 0)
	if err != nil || len(entries) != 1 {
		t.Fatalf("audit of the losers kept: %v %v (want only the winner's entry)", entries, err)
	}
}

func testWatch(t *testing.T, open func(t *testing.T) (control.Store, control.Store)) {
	a, b := open(t)
	ctx := ctxFor(t)
	wctx, cancel := context.WithCancel(ctx)
	w := b.Watch(wctx)
	time.Sleep(100 * time.Millisecond) // a subscription settles
	for rev := int64(1); rev <= 3; rev++ {
		if err := a.Commit(ctx, rev-1, state(rev), nil); err != nil {
			t.Fatal(err)
		}
		deadline := time.NewTimer(wait)
		for got := int64(0); got != rev; {
			select {
			case got = <-w:
			case <-deadline.C:
				t.Fatalf("watch never delivered revision %d", rev)
			}
		}
		deadline.Stop()
	}
	cancel()
	for range w { // closed once its context ends
	}
}

func testAudit(t *testing.T, open func(t *testing.T) (control.Store, control.Store)) {
	a, b := open(t)
	ctx := ctxFor(t)
	e := func(i int, actorOrg string, orgs ...string) control.Entry {
		return control.Entry{Time: time.Unix(int64(i), 0).UTC(), Actor: "t", ActorOrg: actorOrg, Orgs: orgs, Action: fmt.Sprint("step ", i)}
	}
	if err := a.Commit(ctx, 0, state(1), []control.Entry{e(1, "A", "A", "B"), e(2, "C")}); err != nil {
		t.Fatal(err)
	}
	if err := a.Append(ctx, []control.Entry{e(3, "", "B"), e(4, "", "C")}); err != nil {
		t.Fatal(err)
	}
	check := func(org string, limit int, want ...string) {
		t.Helper()
		got, err := b.Audit(ctx, org, limit)
		if err != nil {
			t.Fatal(err)
		}
		var acts []string
		for _, x := range got {
			acts = append(acts, x.Action)
		}
		if fmt.Sprint(acts) != fmt.Sprint(want) {
			t.Errorf("audit for %q (limit %d): %v, want %v", org, limit, acts, want)
		}
	}
	check("", 0, "step 1", "step 2", "step 3", "step 4")
	check("B", 0, "step 1", "step 3")
	check("C", 1, "step 4")
	check("D", 0)
	// Bounded: the oldest go first.
	many := make([]control.Entry, control.AuditCap)
	for i := range many {
		many[i] = e(10+i, "", "A")
	}
	if err := a.Append(ctx, many); err != nil {
		t.Fatal(err)
	}
	all, err := b.Audit(ctx, "", 0)
	if err != nil || len(all) != control.AuditCap || all[0].Action != "step 10" {
		t.Fatalf("audit keeps %d entries from %v (err %v), want the newest %d", len(all), all[0].Action, err, control.AuditCap)
	}
}
