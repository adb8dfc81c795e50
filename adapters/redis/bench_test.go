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
