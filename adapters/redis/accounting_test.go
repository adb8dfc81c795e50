package redis

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/callctl/callctl/adapters/redis/redistest"
	"github.com/callctl/callctl/controller/accounting"
)

// cmdCounter counts, per hold id, the commands sent to Redis that carry it
// (alone or in a pipeline: each command is in exactly one round trip).
type cmdCounter struct {
	mu    sync.Mutex
	byID  map[string]int
	names map[string]bool
}

func (c *cmdCounter) see(cmd goredis.Cmder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range cmd.Args() {
		if s, ok := a.(string); ok && strings.HasPrefix(s, "rt-") {
			c.byID[s]++
			c.names[cmd.Name()] = true
			return
		}
	}
}

func (c *cmdCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (c *cmdCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		c.see(cmd)
		return next(ctx, cmd)
	}
}

func (c *cmdCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		for _, cmd := range cmds {
			c.see(cmd)
		}
		return next(ctx, cmds)
	}
}

// TestRoundTripsPerLeg: a counted leg costs one acquire and one release
// script, and nothing else; on a Redis Cluster, a leg with an org costs one
// of each in its server's partition and in its org's: four.
func TestRoundTripsPerLeg(t *testing.T) {
	for _, mode := range []string{"standalone", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			var cfg Config
			if mode == "cluster" {
				cfg = fastConfig(redistest.StartCluster(t, 3).Addrs(), true, randPrefix())
			} else {
				cfg = fastConfig([]string{standalone(t).Addr}, false, randPrefix())
			}
			counter := &cmdCounter{byID: map[string]int{}, names: map[string]bool{}}
			s := openHooked(t, cfg, "n1", counter)
			ctx := context.Background()
			const legs = 50
			var wg sync.WaitGroup
			for i := 0; i < legs; i++ {
				wg.Add(1)
				go func(i int) { // concurrent, so pipelines carry several
					defer wg.Done()
					id := fmt.Sprintf("rt-%d/in/0", i)
					org := "acme"
					if i%2 == 1 {
						org = ""
					}
					if err := s.Acquire(ctx, accounting.Hold{ID: id, Leg: accounting.Leg{Server: "fs1", Org: org, Kind: accounting.PSTNIn},
						Channel: "ch", Limit: accounting.Limits{Server: 100, Org: 100}}); err != nil {
						t.Error(err)
					}
					if err := s.Release(ctx, id); err != nil {
						t.Error(err)
					}
				}(i)
			}
			wg.Wait()
			counter.mu.Lock()
			byID, names := maps.Clone(counter.byID), maps.Clone(counter.names)
			counter.mu.Unlock()
			if len(byID) != legs {
				t.Fatalf("commands seen for %d legs, want %d", len(byID), legs)
			}
			for id, n := range byID {
				var i int
				fmt.Sscanf(id, "rt-%d/", &i)
				want := 2
				if mode == "cluster" && i%2 == 0 {
					want = 4 // the server's and the org's partition apart
				}
				if n != want {
					t.Fatalf("leg %s cost %d commands, want %d", id, n, want)
				}
			}
			if len(names) != 1 || !names["evalsha"] {
				t.Fatalf("commands sent: %v, want only evalsha", names)
			}
			if n := MustCountNode(t, s); n != 0 {
				t.Fatalf("count %d at the end", n)
			}
		})
	}
}

// TestLinearizableLimit: 3 nodes x 1,000 concurrent acquires against a limit
// of 100. A watcher reads the count all along: it never exceeds 100, and it
// ends at exactly the legs still held.
func TestLinearizableLimit(t *testing.T) {
	for _, mode := range []string{"standalone", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			var addrs []string
			cluster := mode == "cluster"
			if cluster {
				addrs = redistest.StartCluster(t, 3).Addrs()
			} else {
				addrs = []string{standalone(t).Addr}
			}
			prefix := randPrefix()
			cfg := fastConfig(addrs, cluster, prefix)
			cfg.PoolSize = 64
			cfg.ReadTimeout = 10 * time.Second // 1,000 scripts queued on one Redis on a loaded machine
			cfg.WriteTimeout = 10 * time.Second
			// The pool grows to 64 connections at once: a dial slower than
			// fastConfig's 500 ms on a loaded machine would mark Redis down
			// and fail the acquires behind it ("Redis is down"), which is
			// right for a stalled Redis but not what this test is about.
			cfg.DialTimeout = 5 * time.Second
			// This test is about the limit, not about leases: a starved
			// heartbeat must not let another node adopt these legs.
			cfg.LeaseTTL = 10 * time.Second
			nodes := []*Store{open(t, cfg, "n1"), open(t, cfg, "n2"), open(t, cfg, "n3")}
			const limit, perNode = 100, 1000

			watcher := open(t, cfg, "watcher")
			stop := make(chan struct{})
			var maxSeen, reads atomic.Int64
			var wwg sync.WaitGroup
			for w := 0; w < 4; w++ {
				wwg.Add(1)
				go func() {
					defer wwg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						n, err := watcher.Count(context.Background(), "server", "fs1")
						if err != nil {
							continue
						}
						reads.Add(1)
						for {
							m := maxSeen.Load()
							if int64(n) <= m || maxSeen.CompareAndSwap(m, int64(n)) {
								break
							}
						}
					}
				}()
			}

			var held, refused, failures atomic.Int64
			var firstErr atomic.Value
			start := make(chan struct{})
			var wg sync.WaitGroup
			for ni, n := range nodes {
				for i := 0; i < perNode; i++ {
					wg.Add(1)
					go func(n *Store, ni, i int) {
						defer wg.Done()
						<-start
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						defer cancel()
						id := fmt.Sprintf("c%d-%d/in/0", ni, i)
						err := n.Acquire(ctx, accounting.Hold{ID: id, Leg: accounting.Leg{Server: "fs1", Org: "acme", Kind: accounting.PSTNIn},
							Channel: id, Limit: accounting.Limits{Server: limit}})
						switch {
						case err == nil:
							held.Add(1)
							// Two legs in three end after a moment, so the count
							// moves both ways around the limit.
							time.Sleep(time.Duration(rand.IntN(10)) * time.Millisecond)
							if rand.IntN(3) != 0 {
								if err := n.Release(ctx, id); err != nil {
									failures.Add(1)
									firstErr.CompareAndSwap(nil, err)
									return
								}
								held.Add(-1)
							}
						case errors.Is(err, accounting.ErrLimit):
							refused.Add(1)
						default:
							failures.Add(1)
							firstErr.CompareAndSwap(nil, err)
						}
					}(n, ni, i)
				}
			}
			close(start)
			wg.Wait()
			close(stop)
			wwg.Wait()
			if f := failures.Load(); f != 0 {
				t.Fatalf("%d acquires or releases failed, first: %v", f, firstErr.Load())
			}
			// A release whose answer timed out on a loaded machine waits in
			// memory (Release returned nil) and is sent by the heartbeat:
			// the count is exact once no node has a release waiting.
			eventually(t, 20*time.Second, "every node's waiting releases sent", func() bool {
				for _, n := range nodes {
					if pendingReleases(n) != 0 {
						return false
					}
				}
				return true
			})
			final := 0
			for _, n := range nodes {
				final = max(final, MustCountNode(t, n))
			}
			t.Logf("held at the end %d, refused %d, highest count seen %d over %d reads", held.Load(), refused.Load(), maxSeen.Load(), reads.Load())
			if maxSeen.Load() > limit {
				t.Fatalf("count reached %d, above the limit %d", maxSeen.Load(), limit)
			}
			if int64(final) != held.Load() {
				t.Fatalf("count %d at the end, legs still held %d", final, held.Load())
			}
			if refused.Load() == 0 {
				t.Fatalf("no acquire was refused: the limit was never tested")
			}
		})
	}
}

// pendingReleases is how many of s's releases wait to be sent to Redis.
func pendingReleases(s *Store) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, lh := range s.local {
		if lh.state == releasing {
			n++
		}
	}
	return n
}

func MustCountNode(t *testing.T, s *Store) int {
	t.Helper()
	n, err := s.Count(context.Background(), "server", "fs1")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRejectsControlCharacters: the unit separator splits hold records.
func TestRejectsControlCharacters(t *testing.T) {
	cfg := fastConfig([]string{standalone(t).Addr}, false, randPrefix())
	s := open(t, cfg, "n1")
	err := s.Acquire(context.Background(), accounting.Hold{ID: "a\x1fb", Leg: accounting.Leg{Server: "fs1"}})
	if err == nil || !strings.Contains(err.Error(), "control character") {
		t.Fatalf("acquire with a separator in the id: %v", err)
	}
}

// TestOrgLimitAcrossServers: an org's legs on six servers, from three
// nodes, against the org's limit and each server's, with the counts in
// partitions that a Redis Cluster spreads over its masters. Watchers read
// every count all along: none ever exceeds its limit, and each ends at
// exactly the legs still held.
func TestOrgLimitAcrossServers(t *testing.T) {
	for _, mode := range []string{"standalone", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			var addrs []string
			var masters []*redistest.Server
			cluster := mode == "cluster"
			if cluster {
				c := redistest.StartCluster(t, 3)
				addrs, masters = c.Addrs(), c.Servers
			} else {
				addrs = []string{standalone(t).Addr}
			}
			cfg := fastConfig(addrs, cluster, randPrefix())
			cfg.PoolSize = 64
			cfg.ReadTimeout = 10 * time.Second
			cfg.WriteTimeout = 10 * time.Second
			// The pool grows to 64 connections at once: a dial slower than
			// fastConfig's 500 ms on a loaded machine would mark Redis down
			// and fail the acquires behind it ("Redis is down"), which is
			// right for a stalled Redis but not what this test is about.
			cfg.DialTimeout = 5 * time.Second
			// This test is about the limit, not about leases: a starved
			// heartbeat must not let another node adopt these legs.
			cfg.LeaseTTL = 10 * time.Second
			nodes := []*Store{open(t, cfg, "n1"), open(t, cfg, "n2"), open(t, cfg, "n3")}
			const servers, serverLimit, orgLimit, perNode = 6, 12, 50, 600
			server := func(i int) string { return "srv" + strconv.Itoa(i%servers) }
			if cluster {
				used := map[string]bool{}
				for _, m := range masters {
					for i := 0; i < servers; i++ {
						if _, err := m.Client().HLen(context.Background(), nodes[0].serverPart(server(i)).holds()).Result(); err == nil {
							used[m.Addr] = true
						}
					}
				}
				if len(used) < 2 {
					t.Fatalf("the servers' counts are on %d master(s): not spread", len(used))
				}
			}

			watcher := open(t, cfg, "watcher")
			stop := make(chan struct{})
			var orgMax, srvMax atomic.Int64
			raise := func(a *atomic.Int64, n int64) {
				for {
					m := a.Load()
					if n <= m || a.CompareAndSwap(m, n) {
						return
					}
				}
			}
			var wwg sync.WaitGroup
			for w := 0; w < 2; w++ {
				wwg.Add(1)
				go func(w int) {
					defer wwg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						if n, err := watcher.Count(context.Background(), "org", "acme"); err == nil {
							raise(&orgMax, int64(n))
						}
						if n, err := watcher.Count(context.Background(), "server", server(i+w)); err == nil {
							raise(&srvMax, int64(n))
						}
					}
				}(w)
			}
			var held, byOrg, byServer, failures atomic.Int64
			perServer := make([]atomic.Int64, servers)
			var firstErr atomic.Value
			start := make(chan struct{})
			var wg sync.WaitGroup
			for ni, n := range nodes {
				for i := 0; i < perNode; i++ {
					wg.Add(1)
					go func(n *Store, ni, i int) {
						defer wg.Done()
						<-start
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						defer cancel()
						id := fmt.Sprintf("o%d-%d/in/0", ni, i)
						srv := i / 2 % servers
						if i%2 == 0 {
							srv = 0 // half the calls: srv0 fills before the org does
						}
						err := n.Acquire(ctx, accounting.Hold{ID: id, Channel: id,
							Leg:   accounting.Leg{Server: server(srv), Org: "acme", Kind: accounting.PSTNIn},
							Limit: accounting.Limits{Server: serverLimit, Org: orgLimit}})
						var le *accounting.LimitError
						switch {
						case err == nil:
							held.Add(1)
							perServer[srv].Add(1)
							time.Sleep(time.Duration(20+rand.IntN(30)) * time.Millisecond) // the call lasts a moment
							if rand.IntN(3) != 0 {
								if err := n.Release(ctx, id); err != nil {
									failures.Add(1)
									firstErr.CompareAndSwap(nil, err)
									return
								}
								held.Add(-1)
								perServer[srv].Add(-1)
							}
						case errors.As(err, &le) && le.Scope == "org":
							byOrg.Add(1)
						case errors.As(err, &le) && le.Scope == "server":
							byServer.Add(1)
						default:
							failures.Add(1)
							firstErr.CompareAndSwap(nil, err)
						}
					}(n, ni, i)
				}
			}
			close(start)
			wg.Wait()
			close(stop)
			wwg.Wait()
			if f := failures.Load(); f != 0 {
				t.Fatalf("%d acquires or releases failed, first: %v", f, firstErr.Load())
			}
			t.Logf("held at the end %d; refused by the org %d, by a server %d; highest org count %d, server count %d",
				held.Load(), byOrg.Load(), byServer.Load(), orgMax.Load(), srvMax.Load())
			if orgMax.Load() > orgLimit || srvMax.Load() > serverLimit {
				t.Fatalf("a count exceeded its limit: org %d (limit %d), server %d (limit %d)", orgMax.Load(), orgLimit, srvMax.Load(), serverLimit)
			}
			ctx := context.Background()
			if n, _ := watcher.Count(ctx, "org", "acme"); int64(n) != held.Load() {
				t.Fatalf("org count %d at the end, legs still held %d", n, held.Load())
			}
			for i := 0; i < servers; i++ {
				if n, _ := watcher.Count(ctx, "server", server(i)); int64(n) != perServer[i].Load() {
					t.Fatalf("%s counts %d at the end, legs still held there %d", server(i), n, perServer[i].Load())
				}
			}
			if byOrg.Load() == 0 || byServer.Load() == 0 {
				t.Fatalf("refused by the org %d, by a server %d: both limits must be reached", byOrg.Load(), byServer.Load())
			}
		})
	}
}
