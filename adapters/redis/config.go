package redis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Config is the node config of the Redis cluster state (decoded by viper,
// keys in snake_case).
type Config struct {
	// Addrs: one address for a single Redis; several seeds for a Redis
	// Cluster; the sentinels' addresses with MasterName.
	Addrs []string `mapstructure:"addrs"`
	// Mode forces the client kind: "single", "sentinel" or "cluster". Empty
	// chooses from the other settings: MasterName set means sentinel, more
	// than one address means cluster, else single. Set "cluster" to reach a
	// Redis Cluster through a single seed address.
	Mode string `mapstructure:"mode"`
	// MasterName is the Sentinel master set name.
	MasterName       string `mapstructure:"master_name"`
	Username         string `mapstructure:"username"`
	Password         string `mapstructure:"password"`
	SentinelUsername string `mapstructure:"sentinel_username"`
	SentinelPassword string `mapstructure:"sentinel_password"`
	// DB is the database number (single and sentinel only).
	DB  int       `mapstructure:"db"`
	TLS TLSConfig `mapstructure:"tls"`

	DialTimeout  time.Duration `mapstructure:"dial_timeout"`
	ReadTimeout  time.Duration `mapstructure:"read_timeout"`
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
	PoolSize     int           `mapstructure:"pool_size"`

	// Prefix starts every key callctl writes (default "callctl"), so that
	// several clusters can share one Redis.
	Prefix string `mapstructure:"prefix"`
	// LeaseTTL is how long after its last heartbeat a node is taken as dead:
	// a live node then adopts its legs (they stay counted until their
	// channels end).
	LeaseTTL time.Duration `mapstructure:"lease_ttl"`
	// HeartbeatInterval is how often the node renews its lease and looks for
	// expired leases of other nodes.
	HeartbeatInterval time.Duration `mapstructure:"heartbeat_interval"`
	// OwnerTTL is the lease of a media server's owner: a dead owner's server
	// is taken over after at most about this long.
	OwnerTTL time.Duration `mapstructure:"owner_ttl"`
	// FailOpen lets new counted legs through, uncounted, while Redis cannot
	// be reached (they are counted once it is back). Default: refuse them.
	FailOpen bool `mapstructure:"fail_open"`
	// ReconcileMinAge protects holds younger than this from reconciliation:
	// a leg is counted before its channel exists.
	ReconcileMinAge time.Duration `mapstructure:"reconcile_min_age"`
	// PlanCheckInterval is how often a node checks the plan version besides
	// the pub/sub notification.
	PlanCheckInterval time.Duration `mapstructure:"plan_check_interval"`

	// RecordStream is the stream the call records are appended to (under
	// Prefix); RecordCap is its approximate maximum length.
	RecordStream string `mapstructure:"record_stream"`
	RecordCap    int64  `mapstructure:"record_cap"`
	// RecordBuffer is how many records wait in memory while Redis is down.
	RecordBuffer int `mapstructure:"record_buffer"`
}

// TLSConfig says how to reach Redis over TLS.
type TLSConfig struct {
	Enabled            bool   `mapstructure:"enabled"`
	CAFile             string `mapstructure:"ca_file"`
	CertFile           string `mapstructure:"cert_file"`
	KeyFile            string `mapstructure:"key_file"`
	ServerName         string `mapstructure:"server_name"`
	InsecureSkipVerify bool   `mapstructure:"insecure_skip_verify"`
}

// Defaults fills what is unset.
func (c *Config) Defaults() {
	if len(c.Addrs) == 0 {
		c.Addrs = []string{"127.0.0.1:6379"}
	}
	if c.Prefix == "" {
		c.Prefix = "callctl"
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 2 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = time.Second
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 5 * time.Second
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = c.LeaseTTL / 5
	}
	if c.OwnerTTL <= 0 {
		c.OwnerTTL = 3 * time.Second
	}
	if c.ReconcileMinAge == 0 {
		c.ReconcileMinAge = 15 * time.Second
	}
	if c.PlanCheckInterval <= 0 {
		c.PlanCheckInterval = 500 * time.Millisecond
	}
	if c.RecordStream == "" {
		c.RecordStream = "records"
	}
	if c.RecordCap <= 0 {
		c.RecordCap = 1_000_000
	}
	if c.RecordBuffer <= 0 {
		c.RecordBuffer = 10_000
	}
}

// Validate reports settings that cannot work.
func (c *Config) Validate() error {
	switch c.Mode {
	case "", "single", "sentinel", "cluster":
	default:
		return fmt.Errorf("redis mode %q: want single, sentinel or cluster", c.Mode)
	}
	if c.Mode == "sentinel" && c.MasterName == "" {
		return fmt.Errorf("redis mode sentinel needs master_name")
	}
	if strings.ContainsAny(c.Prefix, "{}") {
		return fmt.Errorf("redis prefix %q: { and } would break the hash tags that keep each partition in one slot", c.Prefix)
	}
	if c.HeartbeatInterval*2 > c.LeaseTTL {
		return fmt.Errorf("redis heartbeat_interval %s must be at most half of lease_ttl %s", c.HeartbeatInterval, c.LeaseTTL)
	}
	if c.OwnerTTL < 300*time.Millisecond {
		return fmt.Errorf("redis owner_ttl %s is too short (minimum 300ms)", c.OwnerTTL)
	}
	return nil
}

func (t TLSConfig) config() (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // operator's choice, off by default
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis tls ca_file %s: no certificate found", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis tls cert_file/key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// NewClient builds the one client of a node from cfg (defaults applied).
func NewClient(cfg Config, name string) (goredis.UniversalClient, error) {
	return newClient(cfg, name, nil)
}

// newClient is NewClient with a check run on each new connection.
func newClient(cfg Config, name string, onConnect func(context.Context, *goredis.Conn) error) (goredis.UniversalClient, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tc, err := cfg.TLS.config()
	if err != nil {
		return nil, err
	}
	o := &goredis.UniversalOptions{
		Addrs: cfg.Addrs, ClientName: name, DB: cfg.DB,
		Username: cfg.Username, Password: cfg.Password,
		SentinelUsername: cfg.SentinelUsername, SentinelPassword: cfg.SentinelPassword,
		MasterName:  cfg.MasterName,
		DialTimeout: cfg.DialTimeout, ReadTimeout: cfg.ReadTimeout, WriteTimeout: cfg.WriteTimeout,
		ContextTimeoutEnabled: true,
		PoolSize:              cfg.PoolSize, TLSConfig: tc,
		// Fail fast: the node has its own retry (pending releases, record
		// buffer, heartbeat) and must not hold a call's setup for seconds.
		MaxRetries: 1,
		OnConnect:  onConnect,
	}
	switch cfg.Mode {
	case "cluster":
		return goredis.NewClusterClient(o.Cluster()), nil
	case "sentinel":
		return goredis.NewFailoverClient(o.Failover()), nil
	case "single":
		o.Addrs = o.Addrs[:1]
		return goredis.NewClient(o.Simple()), nil
	}
	return goredis.NewUniversalClient(o), nil
}
