package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spf13/viper"

	"github.com/callctl/callctl/adapters/freeswitch"
	"github.com/callctl/callctl/adapters/redis"
)

// Config is a node's configuration: a YAML file plus CALLCTL_* environment
// variables (CALLCTL_LOG_LEVEL=debug, CALLCTL_STATE_BACKEND=redis, ...). Every
// key has a default, so a node runs with no file at all.
type Config struct {
	// Node is this node's id in a cluster (records, leases, logs).
	Node string `mapstructure:"node"`
	// Plan is the provisioning file; empty runs the embedded lab plan.
	Plan string    `mapstructure:"plan"`
	Log  LogConfig `mapstructure:"log"`
	// Listen says where this node's servers listen.
	Listen ListenConfig `mapstructure:"listen"`
	State  StateConfig  `mapstructure:"state"`
	// MediaServers names the plan's servers this node connects to; empty
	// means all of them.
	MediaServers []string `mapstructure:"media_servers"`
	// DrainTimeout bounds how long SIGTERM waits for calls to end (SIGINT
	// does not wait).
	DrainTimeout time.Duration `mapstructure:"drain_timeout"`
	// PlanCheck is how often the plan file is checked for changes.
	PlanCheck time.Duration `mapstructure:"plan_check"`
	API       APIConfig     `mapstructure:"api"`
}

// APIConfig says how the API is reached from outside.
type APIConfig struct {
	// PublicURL is the API's address as orgs' admins reach it, for the
	// confirmation links of assignment notices (default http://listen.http).
	PublicURL string `mapstructure:"public_url"`
}

func (c *Config) publicURL() string {
	if c.API.PublicURL != "" {
		return c.API.PublicURL
	}
	return "http://" + c.Listen.HTTP
}

// LogConfig says how the node logs.
type LogConfig struct {
	Level  string `mapstructure:"level"`  // debug, info, warn, error
	Format string `mapstructure:"format"` // text, json
}

// ListenConfig holds listen addresses.
type ListenConfig struct {
	// ESL is where FreeSWITCH's `socket` application connects.
	ESL string `mapstructure:"esl"`
	// ESLAllow lists addresses or prefixes, besides the plan's FreeSWITCH
	// servers' own, that may connect to ESL (a server behind NAT).
	ESLAllow []string `mapstructure:"esl_allow"`
	// HTTP serves /metrics, /healthz and /readyz; empty disables it.
	HTTP string `mapstructure:"http"`
}

// StateConfig chooses where shared state lives.
type StateConfig struct {
	Backend string `mapstructure:"backend"` // memory, redis
	// Dir keeps a single node's state (backend memory): the plan and
	// assignments as changed through the API, API tokens, call records.
	Dir   string       `mapstructure:"dir"`
	Redis redis.Config `mapstructure:"redis"`
}

func defaults(v *viper.Viper) {
	host, _ := os.Hostname()
	if host == "" {
		host = "node"
	}
	v.SetDefault("node", host)
	v.SetDefault("plan", "")
	v.SetDefault("log.level", "info")
	v.SetDefault("log.format", "text")
	v.SetDefault("listen.esl", "127.0.0.1:8084")
	v.SetDefault("listen.esl_allow", []string{})
	v.SetDefault("listen.http", "127.0.0.1:9464")
	v.SetDefault("state.backend", "memory")
	v.SetDefault("state.dir", defaultStateDir())
	v.SetDefault("media_servers", []string{})
	v.SetDefault("drain_timeout", "30s")
	v.SetDefault("plan_check", "1s")
	v.SetDefault("api.public_url", "")
}

// configKeys lists every key of the node configuration, from Config's
// mapstructure names: each is bound to its CALLCTL_* variable, so a key
// added to the struct has its variable without a list kept by hand.
func configKeys() []string { return keysOf(reflect.TypeOf(Config{}), "") }

// keysOf lists the keys of a config struct as viper decodes it: a field's
// key is its mapstructure name, or its name in lower case when it has none
// (mapstructure matches those case-insensitively); a squashed struct's keys
// sit at its parent's level. An untagged field still has its variable.
func keysOf(t reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if name == "-" {
			continue
		}
		isStruct := f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0))
		if isStruct && slices.Contains(strings.Split(opts, ","), "squash") {
			keys = append(keys, keysOf(f.Type, prefix)...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if isStruct {
			keys = append(keys, keysOf(f.Type, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

// envName is the variable of a config key: CALLCTL_STATE_REDIS_ADDRS.
func envName(key string) string {
	return "CALLCTL_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// bindEnv binds each key to its CALLCTL_* variable.
func bindEnv(v *viper.Viper, keys []string) error {
	for _, k := range keys {
		if err := v.BindEnv(k, envName(k)); err != nil {
			return err
		}
	}
	return nil
}

// decodeConfig reads the node config from path (optional) and the
// environment. Unknown keys are errors: a misspelt key silently ignored is
// an outage later.
func decodeConfig(path string) (*Config, error) {
	v := viper.New()
	defaults(v)
	if err := bindEnv(v, configKeys()); err != nil {
		return nil, fmt.Errorf("node config: %w", err)
	}
	if path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("node config %s: %w", path, err)
		}
	}
	var c Config
	if err := v.UnmarshalExact(&c); err != nil {
		if path != "" && looksLikePlan(v) {
			return nil, fmt.Errorf("%s is a provisioning plan, not a node configuration: run `callctl serve --plan %s` (--config takes the node's settings: listen, state, log)", path, path)
		}
		return nil, fmt.Errorf("node config %s: %w", orDefault(path), err)
	}
	// What is not set takes the Redis adapter's defaults (the ones the
	// adapter itself would apply), so what is checked is what runs.
	c.State.Redis.Defaults()
	return &c, nil
}

// looksLikePlan says whether a config file holds a plan's sections.
func looksLikePlan(v *viper.Viper) bool {
	for _, k := range []string{"servers", "orgs", "numbers"} {
		if v.InConfig(k) {
			return true
		}
	}
	return false
}

// loadConfig reads the node config and checks it.
func loadConfig(path string) (*Config, error) {
	c, err := decodeConfig(path)
	if err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("node config %s: %w", orDefault(path), err)
	}
	return c, nil
}

// defaultStateDir is where a single node keeps its state unless told:
// $XDG_STATE_HOME/callctl, else ~/.local/state/callctl.
func defaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "callctl")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".local", "state", "callctl")
	}
	return "callctl-state"
}

func orDefault(p string) string {
	if p == "" {
		return "(defaults and environment)"
	}
	return p
}

func (c *Config) validate() error {
	var errs []error
	if _, err := parseLevel(c.Log.Level); err != nil {
		errs = append(errs, err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		errs = append(errs, fmt.Errorf("log.format %q: want text or json", c.Log.Format))
	}
	if c.State.Backend != "memory" && c.State.Backend != "redis" {
		errs = append(errs, fmt.Errorf("state.backend %q: want memory or redis", c.State.Backend))
	}
	if c.State.Backend == "redis" {
		if err := c.State.Redis.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("state.redis: %w", err))
		}
	}
	for name, addr := range map[string]string{"listen.esl": c.Listen.ESL, "listen.http": c.Listen.HTTP} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, addr, err))
		}
	}
	if _, err := freeswitch.ParseAllow(c.Listen.ESLAllow); err != nil {
		errs = append(errs, fmt.Errorf("listen.%w", err))
	}
	if c.Node == "" || strings.ContainsAny(c.Node, " \t\r\n/{}") {
		errs = append(errs, fmt.Errorf("node %q: want a name without spaces, / or braces", c.Node))
	}
	if c.DrainTimeout < 0 || c.PlanCheck <= 0 {
		errs = append(errs, errors.New("drain_timeout must not be negative and plan_check must be positive"))
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("log.level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.Level)
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
