package redis

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/redis/redistest"
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

// TestCrashedNodeLegsReleased: a node process killed with SIGKILL while it
// holds legs; the same node id restarted at once takes new legs. The dead
// process's legs go when its lease expires (seen by another node), the
// restarted node's legs stay, nothing is released twice, and the count
// never drops below the legs really held.
func TestCrashedNodeLegsReleased(t *testing.T) {
	for _, mode := range []string{"standalone", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			var cfg Config
			if mode == "cluster" {
				cfg = fastConfig(redistest.StartCluster(t, 3).Addrs(), true, randPrefix())
			} else {
				cfg = fastConfig([]string{standalone(t).Addr}, false, randPrefix())
			}
			observer := open(t, cfg, "observer")
			env := childEnvFor(cfg, "crashy")

			first := startChild(t, "hold", with(env, "CHILD_LEGS", "10", "CHILD_TAG", "old"))
			if n := MustCountNode(t, observer); n != 10 {
				t.Fatalf("count %d after the child took 10 legs", n)
			}
			first.kill()
			killed := time.Now()
			// Restarted with the same id before its old lease expired.
			startChild(t, "hold", with(env, "CHILD_LEGS", "3", "CHILD_TAG", "new"))
			if n := MustCountNode(t, observer); n != 13 {
				t.Fatalf("count %d with the dead process's 10 and the new one's 3 legs", n)
			}
			var low atomic.Int64
			low.Store(1 << 30)
			// Expiry takes the lease TTL plus up to two heartbeats (one to
			// see it expired, one to confirm); the deadline is generous for
			// a loaded machine.
			eventually(t, 20*time.Second, "the dead process's legs were not released", func() bool {
				n := MustCountNode(t, observer)
				if int64(n) < low.Load() {
					low.Store(int64(n))
				}
				return n == 3
			})
			t.Logf("dead process's legs released %s after the kill (lease ttl %s, heartbeat %s)",
				time.Since(killed).Round(10*time.Millisecond), cfg.LeaseTTL, cfg.HeartbeatInterval)
			// Several more sweeps: nothing else goes.
			time.Sleep(4 * cfg.LeaseTTL)
			if n := MustCountNode(t, observer); n != 3 || low.Load() < 3 {
				t.Fatalf("count %d (lowest seen %d), want the restarted node's 3 legs to stay", n, low.Load())
			}
			if n, _ := observer.Count(context.Background(), "org", "acme"); n != 3 {
				t.Fatalf("org count %d, want 3", n)
			}
		})
	}
}

// TestReconcileDeadNode: the media server confirms the channels are gone
// before the dead node's lease expires; its legs go at once, except the
// channel still up, which goes with the lease.
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
}
