package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/callctl/callctl/adapters/redis/redistest"
	"github.com/callctl/callctl/controller/accounting"
)

// logLines keeps the messages a node logs, with their attributes.
type logLines struct {
	mu    sync.Mutex
	lines []string
	next  slog.Handler
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) Handle(ctx context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	l.mu.Unlock()
	return l.next.Handle(ctx, r)
}
func (l *logLines) WithAttrs(as []slog.Attr) slog.Handler {
	return &attrLines{l: l, attrs: as}
}
func (l *logLines) WithGroup(string) slog.Handler { return l }

// count is how many lines contain s.
func (l *logLines) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

type attrLines struct {
	l     *logLines
	attrs []slog.Attr
}

func (a *attrLines) Enabled(context.Context, slog.Level) bool { return true }
func (a *attrLines) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(a.attrs...)
	return a.l.Handle(ctx, r)
}
func (a *attrLines) WithAttrs(as []slog.Attr) slog.Handler {
	return &attrLines{l: a.l, attrs: append(append([]slog.Attr(nil), a.attrs...), as...)}
}
func (a *attrLines) WithGroup(string) slog.Handler { return a }

// openLogged is open with the node's log lines kept.
func openLogged(t *testing.T, cfg Config, node string) (*Store, *logLines) {
	t.Helper()
	lines := &logLines{next: testLogger().Handler()}
	s, err := New(context.Background(), cfg, node, slog.New(lines))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s, lines
}

// limited is a hold on fs1 for org acme, against a server limit of 5 and
// an org limit of 5.
func limited(id string) accounting.Hold {
	return accounting.Hold{ID: id, Channel: id, Leg: accounting.Leg{Server: "fs1", Org: "acme", Kind: accounting.PSTNIn},
		Limit: accounting.Limits{Server: 5, Org: 5}}
}

// probeHold asks for a sixth leg on fs1 (for an org without a limit, i
// even) or a sixth leg of acme (on a server without a limit, i odd), so
// that each partition decides alone.
func probeHold(id string, i int) accounting.Hold {
	h := limited(id)
	if i%2 == 0 {
		h.Leg.Org, h.Limit.Org = "other", 0
	} else {
		h.Leg.Server, h.Limit.Server = "fs2", 0
	}
	return h
}

// prober asks every node for one more leg, without pause, until stopped:
// with 5 legs held against a limit of 5, every grant is a sixth leg. A leg
// granted is released at once (so one grant cannot hide another).
type prober struct {
	granted   atomic.Int64
	limited   atomic.Int64 // refusals by the limit: counting works
	refused   atomic.Int64 // refusals because the counts could not be trusted
	firstOdd  atomic.Value
	stop      chan struct{}
	wg        sync.WaitGroup
	limitedAt atomic.Int64 // limited refusals seen since reset
}

func probe(nodes ...*Store) *prober {
	p := &prober{stop: make(chan struct{})}
	for ni, n := range nodes {
		p.wg.Add(1)
		go func(ni int, n *Store) {
			defer p.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-p.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				id := fmt.Sprintf("probe%d-%d/in/0", ni, i)
				err := n.Acquire(ctx, probeHold(id, i))
				switch {
				case err == nil:
					p.granted.Add(1)
					_ = n.Release(ctx, id)
				case errors.Is(err, accounting.ErrLimit):
					p.limited.Add(1)
					p.limitedAt.Add(1)
				case errors.Is(err, accounting.ErrUnavailable):
					p.refused.Add(1)
				default:
					p.firstOdd.CompareAndSwap(nil, err)
				}
				cancel()
				time.Sleep(2 * time.Millisecond)
			}
		}(ni, n)
	}
	return p
}

func (p *prober) close() {
	close(p.stop)
	p.wg.Wait()
}

// holdFive has a take 3 legs and b 2, the limit of 5.
func holdFive(t *testing.T, a, b *Store) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := a.Acquire(ctx, limited(fmt.Sprintf("a%d/in/0", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		if err := b.Acquire(ctx, limited(fmt.Sprintf("b%d/in/0", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Acquire(ctx, limited("sixth/in/0")); !errors.Is(err, accounting.ErrLimit) {
		t.Fatalf("a sixth leg before the loss: %v, want the limit", err)
	}
}

// afterLoss waits until counting works again, checks that no sixth leg was
// ever granted, that the counts are exact, and that each node said so once.
func afterLoss(t *testing.T, p *prober, a, b *Store, la, lb *logLines) {
	t.Helper()
	eventually(t, 60*time.Second, "the nodes did not see the loss", func() bool {
		return a.nLoss.Load() > 0 && b.nLoss.Load() > 0
	})
	eventually(t, 60*time.Second, "the recovery did not end", func() bool {
		return !a.recovering.Load() && !b.recovering.Load()
	})
	p.limitedAt.Store(0)
	eventually(t, 60*time.Second, "counting did not resume after the loss", func() bool {
		return p.limitedAt.Load() > 20
	})
	ctx := context.Background()
	if n := MustCountNode(t, a); n != 5 {
		recs, _ := a.rdb.HGetAll(ctx, a.serverPart("fs1").holds()).Result()
		t.Fatalf("server count %d after the recovery, want the 5 legs held: %q", n, recs)
	}
	if n, err := a.Count(ctx, "org", "acme"); err != nil || n != 5 {
		t.Fatalf("org count %d (%v) after the recovery, want 5", n, err)
	}
	if g := p.granted.Load(); g != 0 {
		t.Fatalf("%d legs granted beyond the limit of 5 while Redis recovered", g)
	}
	if odd := p.firstOdd.Load(); odd != nil {
		t.Fatalf("an acquire failed oddly: %v", odd)
	}
	t.Logf("probes: %d refused while the counts were untrusted, %d refused by the limit", p.refused.Load(), p.limited.Load())
	if p.refused.Load() == 0 {
		t.Fatalf("no acquire was refused as untrusted: the loss was never seen")
	}
	for name, l := range map[string]*logLines{"a": la, "b": lb} {
		if n := l.count("Redis may have lost counted legs"); n != 1 {
			t.Errorf("node %s logged the loss %d times, want once", name, n)
		}
		if l.count("counting legs again after Redis lost data") != 1 || l.count("every live node put its legs back") != 1 {
			t.Errorf("node %s did not say counting resumed once every node put its legs back", name)
		}
	}
	for _, s := range []*Store{a, b} {
		if n := metric(t, s, "callctl_redis_data_loss_total"); n != 1 {
			t.Errorf("node %s counted %v losses, want 1", s.node, n)
		}
		if n := metric(t, s, "callctl_redis_recovering"); n != 0 {
			t.Errorf("node %s says it recovers (%v) after the recovery", s.node, n)
		}
	}
	// Exactly one leg frees one place.
	if err := a.Release(ctx, "a0/in/0"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the freed place was not taken", func() bool { return p.granted.Load() >= 1 })
	p.close()
	if n := MustCountNode(t, a); n != 4 {
		t.Fatalf("count %d once the probes stopped, want 4", n)
	}
}

// metric reads one of the node's metrics.
func metric(t *testing.T, s *Store, name string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestRedisRestartedEmpty: Redis (no persistence) restarts without its
// data while two nodes hold 5 legs against a limit of 5. Both keep asking
// for more legs, all along: none is granted, before, during or after the
// recovery, and afterwards the counts are exact again.
func TestRedisRestartedEmpty(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	cfg := fastConfig([]string{srv.Addr}, false, randPrefix())
	a, la := openLogged(t, cfg, "a")
	b, lb := openLogged(t, cfg, "b")
	serving(t, a)
	serving(t, b)
	holdFive(t, a, b)
	p := probe(a, b)
	defer func() {
		select {
		case <-p.stop:
		default:
			p.close()
		}
	}()
	srv.Restart()
	afterLoss(t, p, a, b, la, lb)
}

// TestClusterMasterRestartedEmpty: the Redis Cluster masters that hold the
// server's and the org's counts restart without their data (the others
// keep theirs).
func TestClusterMasterRestartedEmpty(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	cfg := fastConfig(c.Addrs(), true, randPrefix())
	a, la := openLogged(t, cfg, "a")
	b, lb := openLogged(t, cfg, "b")
	serving(t, a)
	serving(t, b)
	holdFive(t, a, b)
	// The masters that hold the server's and the org's counts.
	var lose []*redistest.Server
	for _, s := range c.Servers {
		ns, err1 := s.Client().HLen(context.Background(), a.serverPart("fs1").holds()).Result()
		no, err2 := s.Client().HLen(context.Background(), a.orgPart("acme").holds()).Result()
		if err1 == nil && ns == 5 || err2 == nil && no == 5 {
			lose = append(lose, s)
		}
	}
	if len(lose) == 0 {
		t.Fatal("no master holds the counts")
	}
	t.Logf("%d of 3 masters restart empty", len(lose))
	p := probe(a, b)
	defer func() {
		select {
		case <-p.stop:
		default:
			p.close()
		}
	}()
	for _, m := range lose {
		m.Restart()
	}
	afterLoss(t, p, a, b, la, lb)
}

// TestSentinelFailoverToLaggingReplica: the replica misses the last two
// legs counted (it is paused), then the master dies and the Sentinels
// promote the replica. The nodes see a master they do not know, refuse new
// legs until they have put theirs back, and no sixth leg is ever granted.
func TestSentinelFailoverToLaggingReplica(t *testing.T) {
	master := redistest.Start(t, redistest.Options{})
	replica := redistest.Start(t, redistest.Options{ReplicaOf: master})
	var sentinels []string
	for i := 0; i < 3; i++ {
		s := redistest.Start(t, redistest.Options{Sentinel: master, SentinelName: "acct", SentinelQuorum: 2,
			SentinelDownAfter: time.Second})
		sentinels = append(sentinels, s.Addr)
	}
	cfg := fastConfig(sentinels, false, randPrefix())
	cfg.Mode = "sentinel"
	cfg.MasterName = "acct"
	a, la := openLogged(t, cfg, "a")
	b, lb := openLogged(t, cfg, "b")
	serving(t, a)
	serving(t, b)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := a.Acquire(ctx, limited(fmt.Sprintf("a%d/in/0", i))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "the replica did not get the first legs", func() bool {
		n, err := replica.Client().HLen(ctx, a.serverPart("fs1").holds()).Result()
		return err == nil && n == 3
	})
	replica.Pause()
	for i := 0; i < 2; i++ {
		if err := b.Acquire(ctx, limited(fmt.Sprintf("b%d/in/0", i))); err != nil {
			replica.Resume()
			t.Fatal(err)
		}
	}
	if err := a.Acquire(ctx, limited("sixth/in/0")); !errors.Is(err, accounting.ErrLimit) {
		replica.Resume()
		t.Fatalf("a sixth leg before the failover: %v, want the limit", err)
	}
	p := probe(a, b)
	defer func() {
		select {
		case <-p.stop:
		default:
			p.close()
		}
	}()
	master.Kill()
	replica.Resume()
	sc := goredis.NewSentinelClient(&goredis.Options{Addr: sentinels[0]})
	defer sc.Close()
	eventually(t, 60*time.Second, "the Sentinels did not promote the replica", func() bool {
		addr, err := sc.GetMasterAddrByName(ctx, "acct").Result()
		return err == nil && len(addr) == 2 && addr[0]+":"+addr[1] == replica.Addr
	})
	afterLoss(t, p, a, b, la, lb)
}
