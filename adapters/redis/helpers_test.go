package redis

import (
	goredis "github.com/redis/go-redis/v9"

	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/redis/redistest"
	"github.com/callctl/callctl/controller/accounting"
)

// testLogger discards logs unless CALLCTL_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("CALLCTL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func randPrefix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

// fastConfig is a config with short leases, so tests of expiry are quick.
func fastConfig(addrs []string, cluster bool, prefix string) Config {
	c := Config{Addrs: addrs, Prefix: prefix, LeaseTTL: time.Second, HeartbeatInterval: 200 * time.Millisecond,
		OwnerTTL: time.Second, ReconcileMinAge: 300 * time.Millisecond, PlanCheckInterval: 200 * time.Millisecond,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second}
	if cluster {
		c.Mode = "cluster"
	} else {
		c.Mode = "single"
	}
	return c
}

// open starts a node and closes it with the test.
func open(t testing.TB, cfg Config, node string) *Store {
	t.Helper()
	s, err := New(context.Background(), cfg, node, testLogger().With("test", t.Name()))
	if err != nil {
		t.Fatalf("new store: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

// openHooked is open with a go-redis hook installed before the store starts
// using its client (adding one later races with the heartbeat).
func openHooked(t testing.TB, cfg Config, node string, hook goredis.Hook) *Store {
	t.Helper()
	s, err := newStore(context.Background(), cfg, node, testLogger().With("test", t.Name()), hook)
	if err != nil {
		t.Fatalf("new store: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

// eventually polls cond until it holds or the (generous) deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func standalone(t testing.TB) *redistest.Server { return redistest.Start(t, redistest.Options{}) }

func hold(id, server string) accounting.Hold {
	return accounting.Hold{ID: id, Channel: id, Leg: accounting.Leg{Server: server, Org: "acme", Kind: accounting.PSTNIn}}
}

func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// renewedFor waits until each lease has been renewed for another d: its
// node was alive all that while, and every heartbeat also looked for
// expired leases to adopt and for legs to take back. A check that nothing
// was released over some lease TTLs is bounded by what the nodes did, not
// by a sleep.
func renewedFor(t testing.TB, s *Store, d time.Duration, leases ...string) {
	t.Helper()
	ctx := context.Background()
	for _, lease := range leases {
		start, err := s.rdb.ZScore(ctx, s.gtag+"leases", lease).Result()
		if err != nil {
			t.Fatalf("lease %s: %v", lease, err)
		}
		eventually(t, d+30*time.Second, "lease "+lease+" not renewed for "+d.String(), func() bool {
			now, err := s.rdb.ZScore(ctx, s.gtag+"leases", lease).Result()
			return err == nil && now >= start+float64(d.Milliseconds())
		})
	}
}
