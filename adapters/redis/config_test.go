package redis

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mitchellh/mapstructure"

	"github.com/callctl/callctl/adapters/redis/redistest"
	"github.com/callctl/callctl/controller/accounting"
)

// TestConfigDecode: the node config decodes from snake_case keys the way
// viper decodes (mapstructure with its default hooks).
func TestConfigDecode(t *testing.T) {
	raw := map[string]any{
		"addrs": []any{"10.0.0.1:6379", "10.0.0.2:6379"}, "mode": "cluster", "master_name": "mm",
		"username": "callctl", "password": "secret", "db": 2,
		"tls":          map[string]any{"enabled": true, "ca_file": "/ca.pem", "cert_file": "/c.pem", "key_file": "/k.pem", "insecure_skip_verify": true},
		"dial_timeout": "3s", "read_timeout": "500ms", "write_timeout": "1s", "pool_size": 50,
		"prefix": "prod", "lease_ttl": "10s", "heartbeat_interval": "2s", "owner_ttl": "4s", "fail_open": true,
		"record_stream": "cdr", "record_cap": 5000, "record_buffer": 100,
	}
	var c Config
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{Result: &c, ErrorUnused: true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(mapstructure.StringToTimeDurationHookFunc(), mapstructure.StringToSliceHookFunc(","))})
	if err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(raw); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(c.Addrs) != 2 || c.Mode != "cluster" || c.MasterName != "mm" || c.Username != "callctl" || c.Password != "secret" ||
		c.DB != 2 || !c.TLS.Enabled || c.TLS.CAFile != "/ca.pem" || !c.TLS.InsecureSkipVerify || c.DialTimeout != 3*time.Second ||
		c.ReadTimeout != 500*time.Millisecond || c.PoolSize != 50 || c.Prefix != "prod" || c.LeaseTTL != 10*time.Second ||
		c.HeartbeatInterval != 2*time.Second || c.OwnerTTL != 4*time.Second || !c.FailOpen || c.RecordStream != "cdr" ||
		c.RecordCap != 5000 || c.RecordBuffer != 100 {
		t.Fatalf("decoded %+v", c)
	}
	var d Config
	d.Defaults()
	if err := d.Validate(); err != nil || d.Prefix != "callctl" || d.LeaseTTL != 5*time.Second || d.HeartbeatInterval != time.Second {
		t.Fatalf("defaults %+v: %v", d, err)
	}
	bad := d
	bad.HeartbeatInterval = 4 * time.Second
	if bad.Validate() == nil {
		t.Fatalf("a heartbeat slower than half the lease passed validation")
	}
	bad = d
	bad.Mode = "sharded"
	if bad.Validate() == nil {
		t.Fatalf("an unknown mode passed validation")
	}
	bad = d
	bad.Prefix = "a{b}"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "hash tags") {
		t.Fatalf("a prefix with braces: %v", err)
	}
}

// TestTLSAndPassword: a Redis that speaks only TLS and wants a password.
func TestTLSAndPassword(t *testing.T) {
	certs := redistest.MakeCerts(t)
	srv := redistest.Start(t, redistest.Options{Password: "s3cret", TLSCert: certs.Cert, TLSKey: certs.Key, TLSCA: certs.CA,
		ClientTLS: certs.ClientTLS()})
	cfg := fastConfig([]string{srv.Addr}, false, randPrefix())
	cfg.Password = "s3cret"
	cfg.Username = "default"
	cfg.TLS = TLSConfig{Enabled: true, CAFile: certs.CA}
	s := open(t, cfg, "tls")
	ctx := context.Background()
	if err := s.Acquire(ctx, hold("t/in/0", "fs1")); err != nil {
		t.Fatalf("acquire over TLS: %v", err)
	}
	if n := MustCountNode(t, s); n != 1 {
		t.Fatalf("count %d", n)
	}
	// Wrong password: the node runs, and refuses legs.
	wrong := cfg
	wrong.Password = "nope"
	w := open(t, wrong, "wrong")
	if err := w.Acquire(ctx, hold("w/in/0", "fs1")); !errors.Is(err, accounting.ErrUnavailable) {
		t.Fatalf("acquire with a wrong password: %v", err)
	}
	// No CA: the server's certificate is not trusted.
	untrusted := cfg
	untrusted.TLS = TLSConfig{Enabled: true}
	u := open(t, untrusted, "untrusted")
	if err := u.Acquire(ctx, hold("u/in/0", "fs1")); !errors.Is(err, accounting.ErrUnavailable) {
		t.Fatalf("acquire without trusting the server: %v", err)
	}
	if _, err := NewClient(Config{TLS: TLSConfig{Enabled: true, CAFile: "/nonexistent"}}, "x"); err == nil {
		t.Fatalf("a missing CA file: no error")
	}
}

// TestSentinel: the node finds the master through a Sentinel.
func TestSentinel(t *testing.T) {
	master := standalone(t)
	sentinel := redistest.Start(t, redistest.Options{Sentinel: master, SentinelName: "callctl-master"})
	cfg := fastConfig([]string{sentinel.Addr}, false, randPrefix())
	cfg.Mode = "sentinel"
	cfg.MasterName = "callctl-master"
	s := open(t, cfg, "via-sentinel")
	ctx := context.Background()
	eventually(t, 30*time.Second, "no acquire through the sentinel", func() bool {
		return s.Acquire(ctx, hold("s/in/0", "fs1")) == nil
	})
	// The leg is on the master itself.
	n, err := master.Client().HLen(ctx, s.serverPart("fs1").holds()).Result()
	if err != nil || n != 1 {
		t.Fatalf("count on the master %d, %v", n, err)
	}
}
