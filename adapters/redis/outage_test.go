package redis

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/callctl/callctl/adapters/redis/redistest"
	"github.com/callctl/callctl/control"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/accounting"
)

// TestRedisRestart: Redis (appendonly yes, appendfsync always) is killed and
// restarted while two nodes hold legs, longer than the lease TTL. While it is
// down, new legs are refused (fail closed) or let through (fail open),
// releases and call records wait. Once it is back no count is lost or
// duplicated, no live node's legs are reaped, and the records are there.
//
// Without persistence Redis comes back empty: the live nodes put their legs
// back from what they hold, so the counts are right again too (the legs of
// a node that died meanwhile are gone, as they should be).
func TestRedisRestart(t *testing.T) {
	t.Run("appendfsync-always", func(t *testing.T) { testRedisRestart(t, true) })
	t.Run("no-persistence", func(t *testing.T) { testRedisRestart(t, false) })
}

func testRedisRestart(t *testing.T, appendOnly bool) {
	srv := redistest.Start(t, redistest.Options{AppendOnly: appendOnly})
	cfg := fastConfig([]string{srv.Addr}, false, randPrefix())
	closed := open(t, cfg, "closed")
	openCfg := cfg
	openCfg.FailOpen = true
	opened := open(t, openCfg, "open")
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if err := closed.Acquire(ctx, hold(fmt.Sprintf("a%d/in/0", i), "fs1")); err != nil {
			t.Fatal(err)
		}
		if err := opened.Acquire(ctx, hold(fmt.Sprintf("b%d/in/0", i), "fs1")); err != nil {
			t.Fatal(err)
		}
	}
	if n := MustCountNode(t, closed); n != 40 {
		t.Fatalf("count %d before the restart", n)
	}
	if err := closed.Write(ctx, &controller.Record{CallID: "before"}); err != nil {
		t.Fatal(err)
	}
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	if err := closed.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	fcancel()

	srv.Kill()
	// Fail closed: refused with ErrUnavailable, quickly, no panic.
	eventually(t, 20*time.Second, "acquire did not fail closed with Redis down", func() bool {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		err := closed.Acquire(actx, hold("down/in/0", "fs1"))
		return errors.Is(err, accounting.ErrUnavailable)
	})
	start := time.Now()
	err := closed.Acquire(ctx, hold("down2/in/0", "fs1"))
	if !errors.Is(err, accounting.ErrUnavailable) || time.Since(start) > time.Second {
		t.Fatalf("acquire with Redis down: %v after %s, want ErrUnavailable at once", err, time.Since(start))
	}
	// Fail open: let through, counted later.
	if err := opened.Acquire(ctx, hold("open/in/0", "fs1")); err != nil {
		t.Fatalf("fail-open acquire with Redis down: %v", err)
	}
	// Releases and records wait.
	for i := 0; i < 5; i++ {
		if err := closed.Release(ctx, fmt.Sprintf("a%d/in/0", i)); err != nil {
			t.Fatalf("release with Redis down: %v", err)
		}
	}
	for i := 0; i < 3; i++ {
		if err := closed.Write(ctx, &controller.Record{CallID: fmt.Sprintf("during-%d", i)}); err != nil {
			t.Fatalf("record with Redis down: %v", err)
		}
	}
	time.Sleep(cfg.LeaseTTL + cfg.HeartbeatInterval) // every lease now looks expired
	srv.Restart()

	// 20 + 20 - 5 released + 1 let through.
	const legs = 36
	var lowest atomic.Int64
	lowest.Store(1 << 30)
	eventually(t, 30*time.Second, "counts not right after Redis came back", func() bool {
		n, err := closed.Count(ctx, "server", "fs1")
		if err != nil {
			return false
		}
		if int64(n) < lowest.Load() {
			lowest.Store(int64(n))
		}
		return n == legs
	})
	// Several leases and sweeps later, still exact: nobody reaped a live node.
	renewedFor(t, closed, 3*cfg.LeaseTTL, closed.Lease(), opened.Lease())
	if n := MustCountNode(t, closed); n != legs {
		t.Fatalf("count %d some leases after the restart, want %d", n, legs)
	}
	// Before the node that failed open sends its leg, the count may be one
	// short; a reaped live node would show as far more.
	t.Logf("lowest count seen after the restart: %d (final %d)", lowest.Load(), legs)
	if appendOnly && lowest.Load() < legs-1 {
		t.Fatalf("count dipped to %d after the restart: live nodes' legs were released", lowest.Load())
	}
	if err := closed.Acquire(ctx, hold("after/in/0", "fs1")); err != nil {
		t.Fatalf("acquire after Redis came back: %v", err)
	}
	// The records written during the outage are in the stream.
	got := map[string]bool{}
	fctx, fcancel = context.WithTimeout(ctx, 30*time.Second)
	defer fcancel()
	want := 4
	if !appendOnly {
		want = 3
	}
	err = closed.Follow(fctx, "0", func(r controller.Record) error {
		got[r.CallID] = true
		if len(got) == want {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("follow: %v, records seen %v", err, got)
	}
	if !appendOnly {
		return // the record written before the restart was lost with Redis's data
	}
	for _, id := range []string{"before", "during-0", "during-1", "during-2"} {
		if !got[id] {
			t.Fatalf("record %s missing after the restart (seen %v)", id, got)
		}
	}
}

var errStop = errors.New("stop")

// TestNoRedisAtStart: a node starts with Redis absent; it refuses legs with
// ErrUnavailable, never panics, and works once Redis appears.
func TestNoRedisAtStart(t *testing.T) {
	port := freeTCPPort(t)
	cfg := fastConfig([]string{fmt.Sprintf("127.0.0.1:%d", port)}, false, randPrefix())
	s := open(t, cfg, "early")
	ctx := context.Background()
	if err := s.Acquire(ctx, hold("x/in/0", "fs1")); !errors.Is(err, accounting.ErrUnavailable) {
		t.Fatalf("acquire with no Redis: %v", err)
	}
	if _, err := s.Count(ctx, "server", "fs1"); !errors.Is(err, accounting.ErrUnavailable) {
		t.Fatalf("count with no Redis: %v", err)
	}
	redistest.Start(t, redistest.Options{Port: port})
	try := 0
	eventually(t, 30*time.Second, "the node did not recover once Redis appeared", func() bool {
		try++
		return s.Acquire(ctx, hold(fmt.Sprintf("y%d/in/0", try), "fs1")) == nil
	})
	// Only the successful acquire counts: the refused ones were never sent
	// (the node knew Redis was down) or were released once it was back.
	if n := MustCountNode(t, s); n != 1 {
		t.Fatalf("count %d, want 1", n)
	}
}

// TestPlanAcrossNodes: a revision committed by one node reaches the others'
// Watch quickly, on a Redis Cluster, and they read it whole.
func TestPlanAcrossNodes(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	cfg := fastConfig(c.Addrs(), true, randPrefix())
	cfg.PlanCheckInterval = time.Second
	a, b := open(t, cfg, "a").Control(), open(t, cfg, "b").Control()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := b.Watch(ctx)
	time.Sleep(100 * time.Millisecond) // let the subscription settle
	for i := int64(1); i <= 3; i++ {
		put := time.Now()
		next := &control.State{Revision: i, Plan: fmt.Sprintf("doc %d", i), Version: fmt.Sprintf("v%d", i)}
		if err := a.Commit(ctx, i-1, next, nil); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-w:
			if got != i {
				t.Fatalf("watch got %d, want %d", got, i)
			}
			t.Logf("revision %d seen by the other node %s after the commit", i, time.Since(put).Round(time.Millisecond))
		case <-time.After(10 * time.Second):
			t.Fatalf("revision %d not seen by the other node", i)
		}
		st, err := b.Load(ctx)
		if err != nil || st.Revision != i || st.Plan != next.Plan || st.Version != next.Version {
			t.Fatalf("load %+v %v", st, err)
		}
	}
}

// TestCutOffNodeTakesLegsBack: a node cut off from Redis longer than its
// lease has its legs adopted by another node (it may be dead, for all the
// cluster knows): they stay counted. When it is back, alive, it counts under
// a new lease, takes back the legs of its calls still up and releases those
// that ended meanwhile; the adopter stops watching them.
func TestCutOffNodeTakesLegsBack(t *testing.T) {
	cfg := fastConfig([]string{standalone(t).Addr}, false, randPrefix())
	p := &partition{}
	a := openHooked(t, cfg, "a", p)
	b := open(t, cfg, "b")
	serving(t, b)
	ctx := context.Background()
	for i := 0; i < 6; i++ {
		if err := a.Acquire(ctx, hold(fmt.Sprintf("p%d/in/0", i), "fs1")); err != nil {
			t.Fatal(err)
		}
	}
	lease := a.Lease()
	p.on.Store(true)
	select {
	case <-b.AdoptedChanged():
	case <-time.After(30 * time.Second):
		t.Fatal("the cut-off node's legs were not adopted")
	}
	if n := MustCountNode(t, b); n != 6 {
		t.Fatalf("count %d once the cut-off node's legs were adopted, want 6", n)
	}
	// Two calls end while the node is cut off.
	for i := 0; i < 2; i++ {
		if err := a.Release(ctx, fmt.Sprintf("p%d/in/0", i)); err != nil {
			t.Fatal(err)
		}
	}
	p.on.Store(false)
	eventually(t, 30*time.Second, "the node did not take its legs back", func() bool {
		return MustCountNode(t, b) == 4 && a.Lease() != lease
	})
	eventually(t, 30*time.Second, "the adopter still watches legs the node took back", func() bool { return len(b.Adopted()) == 0 })
	// An acquire under the new lease works; none went under the old one.
	if err := a.Acquire(ctx, hold("p9/in/0", "fs1")); err != nil {
		t.Fatalf("acquire after taking the legs back: %v", err)
	}
	if n := MustCountNode(t, b); n != 5 {
		t.Fatalf("count %d, want 5", n)
	}
	for _, i := range []int{2, 3, 4, 5, 9} {
		if err := a.Release(ctx, fmt.Sprintf("p%d/in/0", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := MustCountNode(t, b); n != 0 {
		t.Fatalf("count %d after every call ended", n)
	}
}

// TestFollowSkipsGarbage: an entry that is not a call record is skipped.
func TestFollowSkipsGarbage(t *testing.T) {
	cfg := fastConfig([]string{standalone(t).Addr}, false, randPrefix())
	s := open(t, cfg, "f")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.rdb.XAdd(ctx, &goredis.XAddArgs{Stream: s.rec.key, Values: []any{"record", "{not json"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.XAdd(ctx, &goredis.XAddArgs{Stream: s.rec.key, Values: []any{"other", "x"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, &controller.Record{CallID: "good"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := s.Follow(ctx, "0", func(r controller.Record) error {
		got = append(got, r.CallID)
		return errStop
	})
	if !errors.Is(err, errStop) || len(got) != 1 || got[0] != "good" {
		t.Fatalf("follow: %v %v", err, got)
	}
}

// TestCloseLeavesNoGoroutines: a node that did everything and closed leaves
// nothing running.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	srv := standalone(t)
	before := runtime.NumGoroutine()
	cfg := fastConfig([]string{srv.Addr}, false, randPrefix())
	s, err := New(context.Background(), cfg, "g", testLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := s.Control().Watch(ctx)
	if err := s.Acquire(ctx, hold("g/in/0", "fs1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, "g/in/0"); err != nil {
		t.Fatal(err)
	}
	_ = s.Write(ctx, &controller.Record{CallID: "g"})
	ran := make(chan struct{})
	go func() {
		_ = s.Run(ctx, "ast1", func(ctx context.Context, _ controller.Term) { close(ran); <-ctx.Done() })
	}()
	<-ran
	fdone := make(chan struct{})
	go func() { _ = s.Follow(ctx, "$", func(controller.Record) error { return nil }); close(fdone) }()
	cancel()
	for range w {
	}
	<-fdone
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if err := s.Close(cctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	eventually(t, 20*time.Second, "goroutines left after close", func() bool { return runtime.NumGoroutine() <= before })
}

// TestRedisLostLastWrites: Redis restarts from a snapshot older than its
// last writes (as with appendfsync everysec, or a failover to a lagging
// replica): legs released since are released again and legs acquired since
// are put back, so the count matches what the node holds.
func TestRedisLostLastWrites(t *testing.T) {
	srv := standalone(t) // no append-only file: the restart loads dump.rdb
	cfg := fastConfig([]string{srv.Addr}, false, randPrefix())
	s := open(t, cfg, "n")
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if err := s.Acquire(ctx, hold(fmt.Sprintf("old%d/in/0", i), "fs1")); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Client().Save(ctx).Err(); err != nil {
		t.Fatalf("save: %v", err)
	}
	for i := 0; i < 4; i++ {
		if err := s.Release(ctx, fmt.Sprintf("old%d/in/0", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		if err := s.Acquire(ctx, hold(fmt.Sprintf("new%d/in/0", i), "fs1")); err != nil {
			t.Fatal(err)
		}
	}
	if n := MustCountNode(t, s); n != 9 {
		t.Fatalf("count %d before the restart", n)
	}
	srv.Restart() // at once: the node may not even notice Redis was gone
	eventually(t, 30*time.Second, "the count does not match the node's legs after Redis lost writes", func() bool {
		n, err := s.Count(ctx, "server", "fs1")
		return err == nil && n == 9
	})
	if n, _ := s.Count(ctx, "org", "acme"); n != 9 {
		t.Fatalf("org count %d, want 9", n)
	}
}
