package redis

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/callctl/callctl/adapters/redis/redistest"
	"github.com/callctl/callctl/controller/accounting"
)

// BenchmarkAcquireRelease: counted legs acquired and released (one pair per
// op) from one node, by many concurrent calls, against a local Redis and a
// local 3-master cluster. pairs/s is the figure to read.
func BenchmarkAcquireRelease(b *testing.B) {
	for _, mode := range []string{"standalone", "cluster"} {
		b.Run(mode, func(b *testing.B) {
			var cfg Config
			if mode == "cluster" {
				cfg = fastConfig(redistest.StartCluster(b, 3).Addrs(), true, randPrefix())
			} else {
				cfg = fastConfig([]string{redistest.Start(b, redistest.Options{}).Addr}, false, randPrefix())
			}
			cfg.PoolSize = 128
			s := open(b, cfg, "bench")
			var seq atomic.Int64
			ctx := context.Background()
			usec0 := evalshaMicros(b, s)
			b.SetParallelism(32) // calls in flight: 32 per CPU
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := "b" + strconv.FormatInt(seq.Add(1), 10) + "/in/0"
					if err := s.Acquire(ctx, accounting.Hold{ID: id, Channel: id,
						Leg:   accounting.Leg{Server: "fs1", Org: "acme", Kind: accounting.PSTNIn},
						Limit: accounting.Limits{Server: 1 << 30, Org: 1 << 30}}); err != nil {
						b.Error(err)
						return
					}
					if err := s.Release(ctx, id); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
			// Redis's own time per pair: what bounds a single master.
			b.ReportMetric(float64(evalshaMicros(b, s)-usec0)/float64(b.N), "redis-µs/pair")
			if n := MustCountNodeB(b, s); n != 0 {
				b.Fatalf("count %d after the benchmark", n)
			}
		})
	}
}

func MustCountNodeB(b *testing.B, s *Store) int {
	n, err := s.Count(context.Background(), "server", "fs1")
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// evalshaMicros sums the microseconds Redis spent in EVALSHA (every master).
func evalshaMicros(b *testing.B, s *Store) int64 {
	b.Helper()
	var total atomic.Int64
	read := func(ctx context.Context, c *goredis.Client) error {
		info, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(info, "\n") {
			if !strings.HasPrefix(line, "cmdstat_evalsha:") {
				continue
			}
			for _, f := range strings.Split(strings.TrimSpace(strings.TrimPrefix(line, "cmdstat_evalsha:")), ",") {
				if v, ok := strings.CutPrefix(f, "usec="); ok {
					n, _ := strconv.ParseInt(v, 10, 64)
					total.Add(n)
				}
			}
		}
		return nil
	}
	var err error
	switch c := s.rdb.(type) {
	case *goredis.ClusterClient:
		err = c.ForEachMaster(context.Background(), read)
	case *goredis.Client:
		err = read(context.Background(), c)
	}
	if err != nil {
		b.Fatal(err)
	}
	return total.Load()
}

// BenchmarkAccountingMasters: what one node gets out of a Redis Cluster of
// 1, 3 and 6 masters, with its legs spread over many servers and orgs (as a
// fleet's are). pairs/s is what this machine runs, client and every master
// sharing its cores; busiest-master-µs/pair is the CPU time (user + system,
// from INFO) the most loaded master spent per acquire+release pair, and
// ceiling-pairs/s = 1e6 / that: the rate at which that master would be
// saturated, the bound that adding masters must raise.
func BenchmarkAccountingMasters(b *testing.B) {
	const servers, orgs = 24, 24
	for _, masters := range []int{1, 3, 6} {
		b.Run(strconv.Itoa(masters)+"-masters", func(b *testing.B) {
			c := redistest.StartCluster(b, masters)
			cfg := fastConfig(c.Addrs(), true, randPrefix())
			cfg.PoolSize = 128
			s := open(b, cfg, "bench")
			var seq atomic.Int64
			ctx := context.Background()
			cpu0 := masterCPU(b, c)
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := seq.Add(1)
					id := "b" + strconv.FormatInt(i, 10) + "/in/0"
					leg := accounting.Leg{Server: "srv" + strconv.FormatInt(i%servers, 10),
						Org: "org" + strconv.FormatInt(i/servers%orgs, 10), Kind: accounting.PSTNIn}
					if err := s.Acquire(ctx, accounting.Hold{ID: id, Channel: id, Leg: leg,
						Limit: accounting.Limits{Server: 1 << 30, Org: 1 << 30}}); err != nil {
						b.Error(err)
						return
					}
					if err := s.Release(ctx, id); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			cpu1 := masterCPU(b, c)
			busiest := 0.0
			for i := range cpu0 {
				busiest = max(busiest, cpu1[i]-cpu0[i])
			}
			perPair := busiest * 1e6 / float64(b.N)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
			b.ReportMetric(perPair, "busiest-master-µs/pair")
			if perPair > 0 {
				b.ReportMetric(1e6/perPair, "ceiling-pairs/s")
			}
			for i := 0; i < servers; i++ {
				if n, err := s.Count(ctx, "server", "srv"+strconv.Itoa(i)); err != nil || n != 0 {
					b.Fatalf("srv%d counts %d (%v) after the benchmark", i, n, err)
				}
			}
		})
	}
}

// masterCPU reads each master's CPU seconds (user + system) from INFO cpu.
func masterCPU(b *testing.B, c *redistest.Cluster) []float64 {
	b.Helper()
	out := make([]float64, len(c.Servers))
	for i, srv := range c.Servers {
		info, err := srv.Client().Info(context.Background(), "cpu").Result()
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(info, "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
				f, _ := strconv.ParseFloat(v, 64)
				out[i] += f
			}
		}
	}
	return out
}
