package redis

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/redis/redistest"
	"github.com/callctl/callctl/controller"
)

func childEnvFor(cfg Config, node string) map[string]string {
	cl := "0"
	if cfg.Mode == "cluster" {
		cl = "1"
	}
	return map[string]string{"CHILD_ADDRS": strings.Join(cfg.Addrs, ","), "CHILD_CLUSTER": cl,
		"CHILD_PREFIX": cfg.Prefix, "CHILD_NODE": node}
}

func with(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// serving makes s a node that serves a media server (as node.Start does):
// such nodes adopt the legs of dead nodes.
func serving(t testing.TB, s *Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx, "fs9", func(ctx context.Context, _ controller.Term) { <-ctx.Done() })
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// channels lists the channels of the child's legs: tag-ch0 .. tag-ch<n-1>.
func channels(tag string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("%s-ch%d", tag, i))
	}
	return out
}

// holdsCount watches the count of fs1 until stop, recording the lowest seen.
func holdsCount(t *testing.T, s *Store, lowest *atomic.Int64, stop <-chan struct{}) {
	lowest.Store(1 << 30)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if n, err := s.Count(context.Background(), "server", "fs1"); err == nil && int64(n) < lowest.Load() {
				lowest.Store(int64(n))
			}
		}
	}()
}

// TestCrashedNodeRestarted: a node process killed with SIGKILL while it
// holds legs, restarted at once with the same id: it takes the legs of its
// earlier run back, and they stay counted (their calls may still be up) for
// several lease TTLs, until their channels are found gone.
func TestCrashedNodeRestarted(t *testing.T) {
	for _, mode := range []string{"standalone", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			var cfg Config
			if mode == "cluster" {
				cfg = fastConfig(redistest.StartCluster(t, 3).Addrs(), true, randPrefix())
			} else {
				cfg = fastConfig([]string{standalone(t).Addr}, false, randPrefix())
			}
			observer := open(t, cfg, "observer") // serves nothing: never adopts
			env := childEnvFor(cfg, "crashy")
			first := startChild(t, "hold", with(env, "CHILD_LEGS", "10", "CHILD_TAG", "old"))
			if n := MustCountNode(t, observer); n != 10 {
				t.Fatalf("count %d after the child took 10 legs", n)
			}
			first.kill()
			startChild(t, "hold", with(env, "CHILD_LEGS", "3", "CHILD_TAG", "new"))
			stop := make(chan struct{})
			var lowest atomic.Int64
			holdsCount(t, observer, &lowest, stop)
			// The restarted node takes the old run's lease over: it is gone
			// from the leases long before it would have expired.
			eventually(t, 20*time.Second, "the restarted node did not take its earlier run's legs back", func() bool {
				leases, err := observer.rdb.ZRange(context.Background(), observer.gtag+"leases", 0, -1).Result()
				return err == nil && !slices.ContainsFunc(leases, func(l string) bool {
					return strings.HasPrefix(l, "crashy/") && l != leaseOfChild(t, observer, "new-0/in/0")
				})
			})
			// Several lease TTLs of the restarted node's heartbeats (each a
			// chance to take back or adopt): nothing may go.
			renewedFor(t, observer, 3*cfg.LeaseTTL, leaseOfChild(t, observer, "new-0/in/0"))
			close(stop)
			if n := MustCountNode(t, observer); n != 13 || lowest.Load() < 13 {
				t.Fatalf("count %d (lowest seen %d), want the 10 legs of the dead run and the 3 new ones to stay", n, lowest.Load())
			}
			if n, _ := observer.Count(context.Background(), "org", "acme"); n != 13 {
				t.Fatalf("org count %d, want 13", n)
			}
			// Seven calls of the old run have ended meanwhile: the media
			// server no longer lists their channels.
			live := append(channels("old", 3), channels("new", 3)...)
			cfg2 := cfg
			cfg2.ReconcileMinAge = -1
			r := open(t, cfg2, "reconciler")
			if n, err := r.Reconcile(context.Background(), "fs1", live); err != nil || n != 7 {
				t.Fatalf("reconcile released %d (%v), want 7", n, err)
			}
			if n := MustCountNode(t, observer); n != 6 {
				t.Fatalf("count %d after the channels ended, want 6", n)
			}
			if n, _ := observer.Count(context.Background(), "org", "acme"); n != 6 {
				t.Fatalf("org count %d, want 6", n)
			}
		})
	}
}

// leaseOfChild reads which lease counts hold id on fs1.
func leaseOfChild(t *testing.T, s *Store, id string) string {
	rec, err := s.rdb.HGet(context.Background(), s.serverPart("fs1").holds(), id).Result()
	if err != nil {
		return ""
	}
	return strings.Split(rec, "\x1f")[1]
}

// TestCrashedNodeAdopted: a node killed that never comes back. Its lease
// expires and a live node that serves media servers adopts its legs: they
// stay counted for several lease TTLs, the adopter says on which servers it
// watches them, and they go as their channels end.
func TestCrashedNodeAdopted(t *testing.T) {
	cfg := fastConfig([]string{standalone(t).Addr}, false, randPrefix())
	observer := open(t, cfg, "observer")
	c := startChild(t, "hold", with(childEnvFor(cfg, "dying"), "CHILD_LEGS", "5", "CHILD_TAG", "d"))
	adopterCfg := cfg
	adopterCfg.ReconcileMinAge = -1
	adopter := open(t, adopterCfg, "adopter")
	serving(t, adopter)
	stop := make(chan struct{})
	var lowest atomic.Int64
	holdsCount(t, observer, &lowest, stop)
	c.kill()
	select {
	case <-adopter.AdoptedChanged():
	case <-time.After(30 * time.Second):
		t.Fatal("nobody adopted the dead node's legs")
	}
	if got := adopter.Adopted(); !slices.Equal(got, []string{"fs1"}) {
		t.Fatalf("adopted legs on %v, want fs1", got)
	}
	if n := metric(t, adopter, "callctl_adopted_legs"); n != 5 {
		t.Fatalf("callctl_adopted_legs %v, want 5", n)
	}
	// Several lease TTLs of the adopter's heartbeats: nothing may go.
	renewedFor(t, observer, 3*cfg.LeaseTTL, adopter.Lease())
	close(stop)
	if n := MustCountNode(t, observer); n != 5 || lowest.Load() < 5 {
		t.Fatalf("count %d (lowest %d) lease TTLs after the node died, want its 5 legs counted", n, lowest.Load())
	}
	// The adopter checks them against the media server: two calls are up.
	n, err := adopter.Reconcile(context.Background(), "fs1", []string{"d-ch1", "d-ch3"})
	if err != nil || n != 3 {
		t.Fatalf("reconcile released %d (%v), want 3", n, err)
	}
	if n := MustCountNode(t, observer); n != 2 {
		t.Fatalf("count %d, want the 2 legs whose channels are up", n)
	}
	if _, err := adopter.Reconcile(context.Background(), "fs1", nil); err != nil {
		t.Fatal(err)
	}
	if n := MustCountNode(t, observer); n != 0 {
		t.Fatalf("count %d once every channel ended", n)
	}
	eventually(t, 10*time.Second, "the adopter still watches legs that ended", func() bool { return len(adopter.Adopted()) == 0 })
	if n := metric(t, adopter, "callctl_adopted_legs"); n != 0 {
		t.Fatalf("callctl_adopted_legs %v once they ended", n)
	}
}

// TestReconcileDeadNode: the media server confirms the channels are gone
// before the dead node's lease expires; its legs go at once, except the
// channel still up.
func TestReconcileDeadNode(t *testing.T) {
	cfg := fastConfig([]string{standalone(t).Addr}, false, randPrefix())
	cfg.LeaseTTL = 20 * time.Second // far longer than the test waits for reconcile
	cfg.HeartbeatInterval = time.Second
	cfg.ReconcileMinAge = -1
	observer := open(t, cfg, "observer")
	c := startChild(t, "hold", with(childEnvFor(cfg, "dying"), "CHILD_LEGS", "5", "CHILD_TAG", "d"))
	c.kill()
	n, err := observer.Reconcile(context.Background(), "fs1", []string{"d-ch2", "other"})
	if err != nil || n != 4 {
		t.Fatalf("reconcile released %d (err %v), want 4", n, err)
	}
	if got := MustCountNode(t, observer); got != 1 {
		t.Fatalf("count %d after reconcile, want the live channel's 1", got)
	}
	if n, _ := observer.Reconcile(context.Background(), "fs1", []string{"d-ch2"}); n != 0 {
		t.Fatalf("second reconcile released %d", n)
	}
}

// TestLeasePerIncarnation: two incarnations of one node id have two
// leases; releasing through one never touches the other's legs.
func TestLeasePerIncarnation(t *testing.T) {
	cfg := fastConfig([]string{standalone(t).Addr}, false, randPrefix())
	a := open(t, cfg, "same")
	b := open(t, cfg, "same")
	if a.Lease() == b.Lease() {
		t.Fatalf("two processes of one node id share lease %s", a.Lease())
	}
	ctx := context.Background()
	for i, s := range []*Store{a, b} {
		if err := s.Acquire(ctx, hold(fmt.Sprintf("x%d/in/0", i), "fs1")); err != nil {
			t.Fatal(err)
		}
	}
	if n := MustCountNode(t, a); n != 2 {
		t.Fatalf("count %d", n)
	}
	if err := a.Release(ctx, "x0/in/0"); err != nil {
		t.Fatal(err)
	}
	if n := MustCountNode(t, b); n != 1 {
		t.Fatalf("count %d after one incarnation released its leg, want the other's 1", n)
	}
}
