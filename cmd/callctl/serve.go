package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/callctl/callctl/adapters/memory"
	"github.com/callctl/callctl/adapters/redis"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/examples"
	"github.com/callctl/callctl/node"
)

func newServe() *cobra.Command {
	var cfgPath, planPath string
	cmd := &cobra.Command{
		Use:   "serve [--config NODE.yaml] [--plan PLAN.yaml]",
		Short: "Run a callctl node (with no flags: the embedded lab plan, in-memory state)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if planPath != "" {
				cfg.Plan = planPath
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			return serve(ctx, cfg, hup, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "node configuration (YAML); CALLCTL_* variables override it")
	cmd.Flags().StringVar(&planPath, "plan", "", "provisioning plan (overrides the node config's plan)")
	return cmd
}

// state is a node's state backend with what serve needs besides node.State.
type state interface {
	node.State
	Close(ctx context.Context) error
}

type memoryState struct{ *memory.Store }

func (memoryState) Close(context.Context) error { return nil }

// openState opens the configured backend. A Redis that does not answer is not
// fatal: the node starts refusing counted legs and recovers by itself.
func openState(ctx context.Context, cfg *Config, log *slog.Logger) (state, error) {
	if cfg.State.Backend == "redis" {
		s, err := redis.New(ctx, cfg.State.Redis, cfg.Node, log)
		if err != nil {
			return nil, fmt.Errorf("state.redis: %w", err)
		}
		return s, nil
	}
	return memoryState{memory.New(memory.Options{Logger: log})}, nil
}

// runningNode is a node being served.
type runningNode struct {
	cfg   *Config
	log   *slog.Logger
	state state
	node  *node.Node
	reg   *prometheus.Registry

	planMu   sync.Mutex
	planHash [32]byte
	ready    chan struct{}
}

// serve runs a node until ctx ends (SIGTERM or SIGINT), then drains: no new
// calls, active ones end by themselves until drain_timeout, then are ended. A
// second signal during the drain ends them at once.
func serve(ctx context.Context, cfg *Config, hup <-chan os.Signal, logOut io.Writer) error {
	base := newLogger(cfg.Log, logOut)
	log := base.With("node", cfg.Node)
	n := &runningNode{cfg: cfg, log: log, reg: prometheus.NewRegistry(), ready: make(chan struct{})}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// The plan is checked before anything connects: a bad file stops here.
	local, data, err := n.readPlan()
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	n.planHash = sha256.Sum256(data)
	// The state backend names the node on its lines itself.
	st, err := openState(ctx, cfg, base)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	n.state = st
	if c, ok := st.(prometheus.Collector); ok {
		// The Redis state's own metrics: reachability, data losses seen,
		// recoveries, adopted legs.
		n.reg.MustRegister(c)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := st.Close(cctx); err != nil {
			log.Warn("closing the state backend", "err", err)
		}
	}()
	plan := n.clusterPlan(ctx, local, data)
	var httpSrv *http.Server
	if cfg.Listen.HTTP != "" {
		if httpSrv, err = n.startHTTP(); err != nil {
			return &exitError{code: 1, err: err}
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = httpSrv.Shutdown(sctx)
			cancel()
		}()
	}
	n.node, err = node.Start(ctx, plan, node.Options{ID: cfg.Node, ESLListen: cfg.Listen.ESL, Servers: cfg.MediaServers,
		State: st, Logger: log, Metrics: controller.NewMetrics(n.reg)})
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	log.Info("callctl node started", "plan", name(cfg.Plan), "plan_version", plan.Version,
		"servers", len(plan.Servers), "orgs", len(plan.Orgs), "state", cfg.State.Backend)
	close(n.ready)

	var watch <-chan string
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	if cfg.State.Backend == "redis" {
		watch = st.Watch(wctx)
	}
	ticker := time.NewTicker(cfg.PlanCheck)
	defer ticker.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			log.Info("SIGHUP: reloading the plan")
			n.reload(ctx, true)
		case <-ticker.C:
			n.reload(ctx, false)
		case v, ok := <-watch:
			if !ok {
				watch = nil
				continue
			}
			n.adopt(ctx, v)
		}
	}

	log.Info("shutting down: draining calls", "active", n.node.Engine().Active(), "timeout", cfg.DrainTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	// A second SIGTERM/SIGINT ends the drain now.
	again := make(chan os.Signal, 1)
	signal.Notify(again, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(again)
	go func() {
		select {
		case <-again:
			log.Warn("second signal: ending calls now")
			cancel()
		case <-dctx.Done():
		}
	}()
	if err := n.node.Shutdown(dctx); err != nil {
		log.Warn("drain ended early", "err", err)
	}
	log.Info("callctl node stopped")
	return nil
}

// readPlan reads and compiles the node's own plan (its file, or the embedded
// lab plan), logging every problem.
func (n *runningNode) readPlan() (*provision.Plan, []byte, error) {
	name, data := examples.LabName, examples.Lab
	if n.cfg.Plan != "" {
		var err error
		name = n.cfg.Plan
		if data, err = os.ReadFile(name); err != nil {
			return nil, nil, fmt.Errorf("plan: %w", err)
		}
	}
	plan, probs, err := provision.Load(name, data)
	n.logProblems(probs)
	return plan, data, err
}

// clusterPlan decides which plan the node starts with. In-memory state: its
// own. Redis: the cluster's plan when there is one (a node joining a running
// cluster follows it), else its own, which it publishes.
func (n *runningNode) clusterPlan(ctx context.Context, local *provision.Plan, data []byte) *provision.Plan {
	if n.cfg.State.Backend != "redis" {
		return local
	}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	version, doc, err := n.state.Get(gctx)
	switch {
	case err != nil:
		n.log.Error("cluster plan unavailable: starting with this node's plan", "version", local.Version, "err", err)
		return local
	case len(doc) == 0:
		if err := n.state.Put(gctx, local.Version, data); err != nil {
			n.log.Error("publishing this node's plan to the cluster failed", "err", err)
		} else {
			n.log.Info("published this node's plan to the cluster", "version", local.Version)
		}
		return local
	case version == local.Version:
		return local
	}
	plan, probs, err := provision.Load("cluster plan "+version, doc)
	n.logProblems(probs)
	if err != nil {
		n.log.Error("the cluster's plan does not validate: starting with this node's", "cluster_version", version, "err", err)
		return local
	}
	n.log.Info("following the cluster's plan", "version", version, "local_version", local.Version)
	return plan
}

// adopt switches to the cluster's plan version v.
func (n *runningNode) adopt(ctx context.Context, v string) {
	if v == n.node.Engine().Plan().Version {
		return
	}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	version, doc, err := n.state.Get(gctx)
	if err != nil || len(doc) == 0 {
		n.log.Error("cluster plan changed but cannot be read: keeping the running plan", "version", v, "err", err)
		return
	}
	plan, probs, err := provision.Load("cluster plan "+version, doc)
	n.logProblems(probs)
	if err != nil {
		n.log.Error("cluster plan rejected: keeping the running plan", "version", version, "err", err)
		return
	}
	old := n.node.Engine().Plan().Version
	n.node.SetPlan(plan)
	n.log.Info("plan switched", "from_version", old, "version", plan.Version, "source", "cluster",
		"active_calls", n.node.Engine().Active())
}

func (n *runningNode) logProblems(probs provision.Problems) {
	for _, p := range probs {
		level := slog.LevelError
		if p.Severity == provision.Warning {
			level = slog.LevelWarn
		}
		n.log.Log(context.Background(), level, "plan problem", "file", p.File, "line", p.Line,
			"object", p.Object, "field", p.Field, "reason", p.Reason)
	}
}

// reload takes the plan file's content when it changed (or when forced by
// SIGHUP). An invalid plan changes nothing: the node keeps running the last
// good one and says why. With Redis, a good plan is published to the cluster
// and every node (this one included) switches when it sees the new version.
func (n *runningNode) reload(ctx context.Context, force bool) {
	if n.cfg.Plan == "" {
		return
	}
	n.planMu.Lock()
	defer n.planMu.Unlock()
	data, err := os.ReadFile(n.cfg.Plan)
	if err != nil {
		if force {
			n.log.Error("plan reload: keeping the running plan", "err", err)
		}
		return
	}
	h := sha256.Sum256(data)
	if !force && bytes.Equal(h[:], n.planHash[:]) {
		return
	}
	n.planHash = h
	plan, probs, err := provision.Load(n.cfg.Plan, data)
	n.logProblems(probs)
	if err != nil {
		n.log.Error("plan reload rejected: keeping the running plan", "running_version", n.node.Engine().Plan().Version, "err", err)
		return
	}
	if n.cfg.State.Backend == "redis" {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := n.state.Put(pctx, plan.Version, data); err != nil {
			n.log.Error("publishing the plan to the cluster failed: keeping the running plan", "version", plan.Version, "err", err)
			return
		}
		n.log.Info("plan published to the cluster", "version", plan.Version)
	}
	old := n.node.Engine().Plan().Version
	n.node.SetPlan(plan)
	n.log.Info("plan reloaded", "from_version", old, "version", plan.Version, "active_calls", n.node.Engine().Active())
}

func (n *runningNode) startHTTP() (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-n.ready:
			e := n.node.Engine()
			st := n.node.Status()
			names := make([]string, 0, len(st))
			for name := range st {
				names = append(names, name)
			}
			sort.Strings(names)
			fmt.Fprintf(w, "ready plan=%s active=%d\n", e.Plan().Version, e.Active())
			for _, name := range names {
				fmt.Fprintf(w, "%s=%s\n", name, st[name])
			}
		default:
			http.Error(w, "starting", http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("/calls", func(w http.ResponseWriter, _ *http.Request) {
		var calls []controller.CallView
		select {
		case <-n.ready:
			calls = n.node.Engine().Calls()
		default:
		}
		if calls == nil {
			calls = []controller.CallView{}
		}
		sort.Slice(calls, func(i, j int) bool { return calls[i].Start.Before(calls[j].Start) })
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(calls)
	})
	ln, err := net.Listen("tcp", n.cfg.Listen.HTTP)
	if err != nil {
		return nil, fmt.Errorf("listen.http: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	}()
	n.log.Info("http listening", "addr", ln.Addr().String(), "paths", "/metrics /healthz /readyz /calls")
	return srv, nil
}
