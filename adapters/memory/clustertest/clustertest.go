// Package clustertest is the contract every cluster state backend (memory,
// Redis) must meet: channel accounting, reconciliation, ownership terms, the
// call record log and call stories. Each backend's tests call Run.
package clustertest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/accounting"
)

// Node is one node's view of the cluster state.
type Node interface {
	accounting.Limiter
	controller.Reconciler
	controller.Owners
	controller.RecordSink
	controller.Stories
	Follow(ctx context.Context, from string, fn func(controller.Record) error) error
	// Flush waits until the records written so far are stored.
	Flush(ctx context.Context) error
}

// Backend makes nodes for the suite.
type Backend struct {
	// New returns a node over a fresh, empty state (its own key prefix),
	// cleaned up with t. Its reconcile minimum age must be MinAge and its
	// record cap RecordCap.
	New       func(t *testing.T) Node
	MinAge    time.Duration
	RecordCap int
}

// wait is how long the suite waits for anything asynchronous: generous, for
// a loaded machine; tests poll and return as soon as the condition holds.
const wait = 20 * time.Second

// Run runs the whole contract against b.
func Run(t *testing.T, b Backend) {
	t.Run("AcquireRelease", func(t *testing.T) { testAcquireRelease(t, b) })
	t.Run("Limits", func(t *testing.T) { testLimits(t, b) })
	t.Run("Idempotent", func(t *testing.T) { testIdempotent(t, b) })
	t.Run("ManyLegsOneCall", func(t *testing.T) { testManyLegsOneCall(t, b) })
	t.Run("ConcurrentLimit", func(t *testing.T) { testConcurrentLimit(t, b) })
	t.Run("Reconcile", func(t *testing.T) { testReconcile(t, b) })
	t.Run("ReleaseServer", func(t *testing.T) { testReleaseServer(t, b) })
	t.Run("Records", func(t *testing.T) { testRecords(t, b) })
	t.Run("Owners", func(t *testing.T) { testOwners(t, b) })
	t.Run("Stories", func(t *testing.T) { testStories(t, b) })
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	t.Cleanup(cancel)
	return ctx
}

// MustCount returns a count or fails the test.
func MustCount(t testing.TB, l accounting.Limiter, scope, name string) int {
	t.Helper()
	n, err := l.Count(context.Background(), scope, name)
	if err != nil {
		t.Fatalf("count %s %s: %v", scope, name, err)
	}
	return n
}

// WantCount fails the test unless the count is want.
func WantCount(t testing.TB, l accounting.Limiter, scope, name string, want int) {
	t.Helper()
	if n := MustCount(t, l, scope, name); n != want {
		t.Fatalf("count %s %s = %d, want %d", scope, name, n, want)
	}
}

func hold(id, server, org, channel string, srvLimit, orgLimit int) accounting.Hold {
	return accounting.Hold{ID: id, Leg: accounting.Leg{Server: server, Org: org, Kind: accounting.PSTNIn},
		Channel: channel, Limit: accounting.Limits{Server: srvLimit, Org: orgLimit}}
}

func testAcquireRelease(t *testing.T, b Backend) {
	n := b.New(t)
	ctx := ctxFor(t)
	WantCount(t, n, "server", "fs1", 0)
	if err := n.Acquire(ctx, hold("c1/in/0", "fs1", "acme", "c1", 0, 0)); err != nil {
		t.Fatalf("acquire: %v", err)
	}
	if err := n.Acquire(ctx, hold("c2/in/0", "fs1", "", "c2", 0, 0)); err != nil {
		t.Fatalf("acquire without org: %v", err)
	}
	if err := n.Acquire(ctx, hold("c1/l1/0", "fs2", "acme", "l1", 0, 0)); err != nil {
		t.Fatalf("acquire: %v", err)
	}
	WantCount(t, n, "server", "fs1", 2)
	WantCount(t, n, "server", "fs2", 1)
	WantCount(t, n, "org", "acme", 2)
	for _, id := range []string{"c1/in/0", "c2/in/0", "c1/l1/0"} {
		if err := n.Release(ctx, id); err != nil {
			t.Fatalf("release %s: %v", id, err)
		}
	}
	WantCount(t, n, "server", "fs1", 0)
	WantCount(t, n, "server", "fs2", 0)
	WantCount(t, n, "org", "acme", 0)
	if _, err := n.Count(ctx, "planet", "x"); err == nil {
		t.Fatalf("count with an unknown scope: no error")
	}
}

func testLimits(t *testing.T, b Backend) {
	n := b.New(t)
	ctx := ctxFor(t)
	for i := 0; i < 2; i++ {
		if err := n.Acquire(ctx, hold(fmt.Sprintf("s%d/in/0", i), "fs1", "acme", "", 2, 5)); err != nil {
			t.Fatalf("acquire %d: %v", i, err)
		}
	}
	err := n.Acquire(ctx, hold("s2/in/0", "fs1", "acme", "", 2, 5))
	var le *accounting.LimitError
	if !errors.As(err, &le) || !errors.Is(err, accounting.ErrLimit) || le.Scope != "server" || le.Name != "fs1" || le.Limit != 2 {
		t.Fatalf("third leg on a server limited to 2: err %v, want a server LimitError", err)
	}
	WantCount(t, n, "server", "fs1", 2)
	WantCount(t, n, "org", "acme", 2)
	// The org limit, on another server.
	if err := n.Acquire(ctx, hold("o0/in/0", "fs2", "acme", "", 0, 3)); err != nil {
		t.Fatalf("acquire: %v", err)
	}
	err = n.Acquire(ctx, hold("o1/in/0", "fs2", "acme", "", 0, 3))
	if !errors.As(err, &le) || le.Scope != "org" || le.Name != "acme" || le.Limit != 3 {
		t.Fatalf("fourth leg of an org limited to 3: err %v, want an org LimitError", err)
	}
	WantCount(t, n, "server", "fs2", 1)
	// A refused leg costs nothing: releasing one lets the next in.
	if err := n.Release(ctx, "s0/in/0"); err != nil {
		t.Fatal(err)
	}
	if err := n.Acquire(ctx, hold("s3/in/0", "fs1", "acme", "", 2, 5)); err != nil {
		t.Fatalf("acquire after a release: %v", err)
	}
	WantCount(t, n, "server", "fs1", 2)
	WantCount(t, n, "org", "acme", 3)
}

func testIdempotent(t *testing.T, b Backend) {
	n := b.New(t)
	ctx := ctxFor(t)
	h := hold("c1/in/0", "fs1", "acme", "c1", 10, 10)
	for i := 0; i < 3; i++ {
		if err := n.Acquire(ctx, h); err != nil {
			t.Fatalf("acquire #%d: %v", i, err)
		}
	}
	WantCount(t, n, "server", "fs1", 1)
	WantCount(t, n, "org", "acme", 1)
	for i := 0; i < 3; i++ {
		if err := n.Release(ctx, h.ID); err != nil {
			t.Fatalf("release #%d: %v", i, err)
		}
	}
	WantCount(t, n, "server", "fs1", 0)
	WantCount(t, n, "org", "acme", 0)
	// A release that arrives before its acquire: the late acquire must not
	// count a leg that is already over.
	if err := n.Release(ctx, "c9/in/0"); err != nil {
		t.Fatalf("early release: %v", err)
	}
	if err := n.Acquire(ctx, hold("c9/in/0", "fs1", "acme", "c9", 10, 10)); err == nil {
		t.Fatalf("acquire after its release succeeded; want it refused")
	} else if errors.Is(err, accounting.ErrLimit) {
		t.Fatalf("acquire after its release: %v, must not look like a limit", err)
	}
	WantCount(t, n, "server", "fs1", 0)
	WantCount(t, n, "org", "acme", 0)
}

// testManyLegsOneCall: one call counting four legs (an inbound PSTN leg,
// transfer legs, a PSTN leg out) counts each, against the server's and the
// org's limits.
func testManyLegsOneCall(t *testing.T, b Backend) {
	n := b.New(t)
	ctx := ctxFor(t)
	ids := []string{"c1/in/0", "c1/l1/0", "c1/l2/0", "c1/l3/0"}
	for _, id := range ids {
		if err := n.Acquire(ctx, hold(id, "fs1", "acme", id, 4, 4)); err != nil {
			t.Fatalf("acquire %s: %v", id, err)
		}
	}
	WantCount(t, n, "server", "fs1", 4)
	WantCount(t, n, "org", "acme", 4)
	if err := n.Acquire(ctx, hold("c2/in/0", "fs1", "other", "c2", 4, 0)); !errors.Is(err, accounting.ErrLimit) {
		t.Fatalf("a fifth leg on a server limited to 4: %v, want the limit", err)
	}
	if err := n.Acquire(ctx, hold("c3/in/0", "fs2", "acme", "c3", 0, 4)); !errors.Is(err, accounting.ErrLimit) {
		t.Fatalf("a fifth leg of an org limited to 4: %v, want the limit", err)
	}
	for _, id := range ids {
		if err := n.Release(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	WantCount(t, n, "server", "fs1", 0)
	WantCount(t, n, "org", "acme", 0)
}

func testConcurrentLimit(t *testing.T, b Backend) {
	n := b.New(t)
	ctx := ctxFor(t)
	const limit, tries = 20, 200
	var held atomic.Int64
	var wg sync.WaitGroup
	var errs atomic.Int64
	for i := 0; i < tries; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := "cc" + strconv.Itoa(i) + "/in/0"
			err := n.Acquire(ctx, hold(id, "fs1", "acme", "", limit, 0))
			switch {
			case err == nil:
				held.Add(1)
				if i%2 == 0 {
					if err := n.Release(ctx, id); err != nil {
						errs.Add(1)
						return
					}
					held.Add(-1)
				}
			case !errors.Is(err, accounting.ErrLimit):
				errs.Add(1)
			}
		}(i)
	}
	wg.Wait()
	if errs.Load() != 0 {
		t.Fatalf("%d acquires/releases failed with something else than the limit", errs.Load())
	}
	got := MustCount(t, n, "server", "fs1")
	if got != int(held.Load()) || got > limit {
		t.Fatalf("count %d, legs still held %d, limit %d", got, held.Load(), limit)
	}
}

func testReconcile(t *testing.T, b Backend) {
	n := b.New(t)
	ctx := ctxFor(t)
	for i, ch := range []string{"a", "b", "c"} {
		if err := n.Acquire(ctx, hold(fmt.Sprintf("r%d/in/0", i), "fs1", "acme", ch, 0, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Acquire(ctx, hold("x/in/0", "fs2", "acme", "zz", 0, 0)); err != nil {
		t.Fatal(err)
	}
	if b.MinAge > 0 {
		// Holds younger than the minimum age are kept: their channel may not
		// exist yet.
		if got, err := n.Reconcile(ctx, "fs1", []string{"a"}); err != nil || got != 0 {
			t.Fatalf("reconcile of young holds released %d (err %v), want 0", got, err)
		}
	}
	deadline := time.Now().Add(wait + b.MinAge)
	released := 0
	for released < 2 {
		got, err := n.Reconcile(ctx, "fs1", []string{"a", "unrelated"})
		if err != nil {
			t.Fatalf("reconcile: %v", err)
		}
		released += got
		if time.Now().After(deadline) {
			t.Fatalf("reconcile released %d holds, want 2", released)
		}
		if released < 2 {
			time.Sleep(b.MinAge / 4)
		}
	}
	if released != 2 {
		t.Fatalf("reconcile released %d, want 2", released)
	}
	WantCount(t, n, "server", "fs1", 1)
	WantCount(t, n, "server", "fs2", 1) // another server's legs are not touched
	WantCount(t, n, "org", "acme", 2)
	// The engine's own release of a reconciled hold is harmless.
	if err := n.Release(ctx, "r1/in/0"); err != nil {
		t.Fatal(err)
	}
	WantCount(t, n, "server", "fs1", 1)
	if got, err := n.Reconcile(ctx, "fs1", []string{"a"}); err != nil || got != 0 {
		t.Fatalf("second reconcile released %d (err %v), want 0", got, err)
	}
}

// testReleaseServer: every leg of one server goes, young or old, with its
// org count; other servers' legs stay; an engine's own release afterwards
// changes nothing.
func testReleaseServer(t *testing.T, b Backend) {
	n := b.New(t)
	ctx := ctxFor(t)
	for i := 0; i < 4; i++ {
		if err := n.Acquire(ctx, hold(fmt.Sprintf("g%d/in/0", i), "gone1", "acme", fmt.Sprintf("ch%d", i), 0, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Acquire(ctx, hold("k/in/0", "fs2", "acme", "k", 0, 0)); err != nil {
		t.Fatal(err)
	}
	got, err := n.ReleaseServer(ctx, "gone1")
	if err != nil || got != 4 {
		t.Fatalf("release server: %d (%v), want 4", got, err)
	}
	WantCount(t, n, "server", "gone1", 0)
	WantCount(t, n, "server", "fs2", 1)
	WantCount(t, n, "org", "acme", 1)
	if err := n.Release(ctx, "g1/in/0"); err != nil {
		t.Fatal(err)
	}
	WantCount(t, n, "org", "acme", 1)
	if got, err := n.ReleaseServer(ctx, "gone1"); err != nil || got != 0 {
		t.Fatalf("second release: %d (%v), want 0", got, err)
	}
	if err := n.Acquire(ctx, hold("g9/in/0", "gone1", "acme", "ch9", 0, 0)); err != nil {
		t.Fatalf("a new leg on the server afterwards: %v", err)
	}
	WantCount(t, n, "server", "gone1", 1)
}

func record(i int) *controller.Record {
	return &controller.Record{CallID: "call-" + strconv.Itoa(i), Node: "n1", Server: "fs1", Dialed: "100",
		Route: "local", Start: time.Unix(1700000000, 0).UTC(), End: time.Unix(1700000010, 0).UTC(), HangupCause: "NORMAL_CLEARING"}
}

func testRecords(t *testing.T, b Backend) {
	n := b.New(t)
	ctx := ctxFor(t)
	total := b.RecordCap + 5
	for i := 0; i < total; i++ {
		if err := n.Write(ctx, record(i)); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	if err := n.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	// From the oldest kept: the cap dropped the first ones.
	got := make(chan controller.Record, 4*total)
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- n.Follow(fctx, "0", func(r controller.Record) error { got <- r; return nil }) }()
	first := collect(t, got, 1)[0]
	idx, err := strconv.Atoi(first.CallID[len("call-"):])
	if err != nil || idx < 1 || idx > 5 {
		t.Fatalf("first record followed is %s, want one of the last %d written (cap %d)", first.CallID, b.RecordCap, b.RecordCap)
	}
	rest := collect(t, got, total-idx-1)
	for i, r := range rest {
		if want := "call-" + strconv.Itoa(idx+1+i); r.CallID != want {
			t.Fatalf("record %d is %s, want %s (in order)", i, r.CallID, want)
		}
	}
	// New records reach a follower that is already waiting.
	if err := n.Write(ctx, record(1000)); err != nil {
		t.Fatal(err)
	}
	if r := collect(t, got, 1)[0]; r.CallID != "call-1000" || r.HangupCause != "NORMAL_CLEARING" || !r.Start.Equal(record(0).Start) {
		t.Fatalf("followed %+v", r)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("follow ended with %v, want nil after its context ended", err)
	}
	// "$" follows only what comes next; fn's error ends Follow.
	stop := errors.New("enough")
	go func() {
		done <- n.Follow(ctx, "$", func(r controller.Record) error {
			got <- r
			return stop
		})
	}()
	deadline := time.Now().Add(wait)
	for i := 2000; ; i++ {
		if err := n.Write(ctx, record(i)); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-got:
			if r.CallID == "call-1000" || r.CallID == "call-0" {
				t.Fatalf("follow from $ delivered an old record %s", r.CallID)
			}
			if err := <-done; !errors.Is(err, stop) {
				t.Fatalf("follow returned %v, want fn's error", err)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("follow from $ delivered nothing")
		}
	}
}

func collect(t *testing.T, ch <-chan controller.Record, n int) []controller.Record {
	t.Helper()
	out := make([]controller.Record, 0, n)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for len(out) < n {
		select {
		case r := <-ch:
			out = append(out, r)
		case <-timer.C:
			t.Fatalf("followed %d records, want %d", len(out), n)
		}
	}
	return out
}

func testOwners(t *testing.T, b Backend) {
	n := b.New(t)
	ctx := ctxFor(t)
	terms := make(chan controller.Term, 4)
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	leadDone := make(chan struct{})
	go func() {
		ran <- n.Run(runCtx, "ast1", func(lctx context.Context, term controller.Term) {
			terms <- term
			<-lctx.Done()
			close(leadDone)
		})
	}()
	var t1 controller.Term
	select {
	case t1 = <-terms:
	case <-time.After(wait):
		t.Fatalf("no term began")
	}
	if t1.Server != "ast1" || t1.Token == 0 || t1.Node == "" {
		t.Fatalf("term %+v", t1)
	}
	if ok, err := n.Claim(ctx, t1, "ev1"); err != nil || !ok {
		t.Fatalf("first claim: %v %v", ok, err)
	}
	if ok, err := n.Claim(ctx, t1, "ev1"); err != nil || ok {
		t.Fatalf("second claim of the same event: %v %v, want false", ok, err)
	}
	stop()
	<-leadDone
	if err := <-ran; !errors.Is(err, context.Canceled) {
		t.Fatalf("run returned %v", err)
	}
	// A new term: higher token; the old term's claims are refused.
	runCtx, stop = context.WithCancel(ctx)
	defer stop()
	go func() {
		ran <- n.Run(runCtx, "ast1", func(lctx context.Context, term controller.Term) {
			terms <- term
			<-lctx.Done()
		})
	}()
	var t2 controller.Term
	select {
	case t2 = <-terms:
	case <-time.After(wait):
		t.Fatalf("no second term began")
	}
	if t2.Token <= t1.Token {
		t.Fatalf("second term token %d not above the first's %d", t2.Token, t1.Token)
	}
	if _, err := n.Claim(ctx, t1, "ev2"); !errors.Is(err, controller.ErrNotOwner) {
		t.Fatalf("claim with a deposed term: %v, want ErrNotOwner", err)
	}
	if ok, err := n.Claim(ctx, t2, "ev1"); err != nil || ok {
		t.Fatalf("new term claims an event the old one handled: %v %v, want false", ok, err)
	}
	if ok, err := n.Claim(ctx, t2, "ev2"); err != nil || !ok {
		t.Fatalf("new term claims a new event: %v %v", ok, err)
	}
	stop()
	<-ran

	// A lead that returns on its own gets a new term later, not a spin.
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	defer cancelShort()
	var ends atomic.Int64
	if err := n.Run(short, "ast2", func(_ context.Context, term controller.Term) {
		ends.Add(1)
		if term.Token == 0 || term.Server != "ast2" {
			t.Errorf("term %+v", term)
		}
	}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("run returned %v, want the context's error", err)
	}
	if e := ends.Load(); e < 1 || e > 10 {
		t.Fatalf("a lead returning at once ran %d times in a second", e)
	}
}

// testStories: a channel's latest story is found by channel and by the user
// it is connected to; a newer story replaces it, and a late note of an
// older one changes nothing.
func testStories(t *testing.T, b Backend) {
	n := b.New(t)
	ctx := ctxFor(t)
	const srv, dom, user = "srv11", "acme.example", "3999"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	of := func(server, channel string) (controller.Story, bool) {
		t.Helper()
		st, ok, err := n.Of(ctx, server, channel)
		must(err)
		return st, ok
	}
	connectedTo := func(except string) string {
		t.Helper()
		st, ok, err := n.ConnectedTo(ctx, srv, dom, user, except)
		must(err)
		if ok && (st.Server != srv || st.User != user || st.Domain != dom) {
			t.Fatalf("story connected to %s: %+v", user, st)
		}
		return st.Record
	}
	if _, ok := of(srv, "ch1"); ok {
		t.Fatal("a story of a channel never seen")
	}
	must(n.Begin(ctx, "ch1", controller.Story{Server: srv, Record: "rec1", Org: "acme"}))
	if st, ok := of(srv, "ch1"); !ok || st != (controller.Story{Server: srv, Record: "rec1", Org: "acme"}) {
		t.Fatalf("story of ch1: %+v %v, want rec1 of acme", st, ok)
	}
	if _, ok := of("srv12", "ch1"); ok {
		t.Fatal("ch1's story found on another server")
	}
	if r := connectedTo(""); r != "" {
		t.Fatalf("a story connected to %s before any was: %s", user, r)
	}
	must(n.Connect(ctx, srv, "ch1", "rec1", user, dom, "leg1"))
	if st, _ := of(srv, "ch1"); st.User != user || st.Domain != dom || st.Leg != "leg1" {
		t.Fatalf("story of ch1 after its connection: %+v", st)
	}
	ofLeg := func(server, leg string) string {
		t.Helper()
		st, ok, err := n.OfLeg(ctx, server, leg)
		must(err)
		if ok && (st.Server != server || st.Leg != leg || st.User == "") {
			t.Fatalf("story of leg %s: %+v", leg, st)
		}
		return st.Record
	}
	if r := ofLeg(srv, "leg1"); r != "rec1" {
		t.Fatalf("story connected over leg1: %q, want rec1", r)
	}
	if r := ofLeg("srv12", "leg1"); r != "" {
		t.Fatalf("story connected over leg1 found on another server: %q", r)
	}
	// Another channel connected to the same user later: the newest wins,
	// unless it is the asking channel's own.
	time.Sleep(5 * time.Millisecond)
	must(n.Begin(ctx, "ch2", controller.Story{Server: srv, Record: "rec2", Org: "acme"}))
	must(n.Connect(ctx, srv, "ch2", "rec2", user, dom, "leg2"))
	if r := connectedTo("ch9"); r != "rec2" {
		t.Fatalf("newest story connected to %s: %q, want rec2", user, r)
	}
	if r := connectedTo("ch2"); r != "rec1" {
		t.Fatalf("story connected to %s other than ch2's: %q, want rec1", user, r)
	}
	// An ended story is still kept for the transfer that follows it, not
	// for a consultation over its leg.
	must(n.End(ctx, srv, "ch2", "rec2"))
	if st, ok := of(srv, "ch2"); !ok || st.Record != "rec2" {
		t.Fatalf("ended story of ch2: %+v %v, want still kept", st, ok)
	}
	if r := ofLeg(srv, "leg2"); r != "" {
		t.Fatalf("story connected over leg2 after it ended: %q, want none", r)
	}
	// ch1 reaches callctl again: its new story replaces the old one, which
	// a late connection or end cannot touch.
	must(n.Begin(ctx, "ch1", controller.Story{Server: srv, Record: "rec3", Org: "beta"}))
	must(n.Connect(ctx, srv, "ch1", "rec1", "3998", dom, "leg3"))
	must(n.End(ctx, srv, "ch1", "rec1"))
	if st, ok := of(srv, "ch1"); !ok || st != (controller.Story{Server: srv, Record: "rec3", Org: "beta"}) {
		t.Fatalf("story of ch1 after it came back: %+v %v, want rec3 of beta, not connected", st, ok)
	}
	if r := connectedTo("ch2"); r != "" {
		t.Fatalf("story connected to %s other than ch2's after ch1 came back: %q, want none", user, r)
	}
	if r := ofLeg(srv, "leg1"); r != "" {
		t.Fatalf("story connected over leg1 after ch1 came back: %q, want none", r)
	}
}
