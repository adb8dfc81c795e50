package main

import (
	"context"
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
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/callctl/callctl/adapters/file"
	"github.com/callctl/callctl/adapters/memory"
	"github.com/callctl/callctl/adapters/redis"
	"github.com/callctl/callctl/control"
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

// backend is what a node keeps, where: the calls' state, and the control
// plane's (the plan and assignments).
type backend struct {
	state   state
	control control.Store
}

// openState opens the configured backend. A Redis that does not answer is not
// fatal: the node starts refusing counted legs and recovers by itself.
func openState(ctx context.Context, cfg *Config, log *slog.Logger) (*backend, error) {
	if cfg.State.Backend == "redis" {
		s, err := redis.New(ctx, cfg.State.Redis, cfg.Node, log)
		if err != nil {
			return nil, fmt.Errorf("state.redis: %w", err)
		}
		return &backend{state: s, control: s.Control()}, nil
	}
	c, err := file.NewControl(cfg.State.Dir)
	if err != nil {
		return nil, err
	}
	return &backend{state: memoryState{memory.New(memory.Options{Logger: log})}, control: c}, nil
}

// runningNode is a node being served.
type runningNode struct {
	cfg     *Config
	log     *slog.Logger
	backend *backend
	plans   *control.Service
	node    *node.Node
	reg     *prometheus.Registry
	ready   chan struct{}
}

// serve runs a node until ctx ends (SIGTERM or SIGINT), then drains: no new
// calls, active ones end by themselves until drain_timeout, then are ended. A
// second signal during the drain ends them at once.
func serve(ctx context.Context, cfg *Config, hup <-chan os.Signal, logOut io.Writer) error {
	base := newLogger(cfg.Log, logOut)
	log := base.With("node", cfg.Node)
	n := &runningNode{cfg: cfg, log: log, reg: prometheus.NewRegistry(), ready: make(chan struct{})}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// The plan file is checked before anything connects: a bad file stops
	// here. The state backend names the node on its lines itself.
	if cfg.Plan != "" {
		if _, probs, err := provision.LoadFile(cfg.Plan); err != nil {
			logProblems(log, probs)
			return &exitError{code: 1, err: err}
		}
	}
	be, err := openState(ctx, cfg, base)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	n.backend = be
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := be.state.Close(cctx); err != nil {
			log.Warn("closing the state backend", "err", err)
		}
	}()
	n.plans = control.New(control.Options{Node: cfg.Node, Store: be.control, File: cfg.Plan,
		SeedName: examples.LabName, Seed: examples.Lab, Logger: log, Retry: cfg.PlanCheck,
		Apply: func(p *provision.Plan) { n.node.SetPlan(p) }})
	plan, err := n.plans.Start(ctx)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
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
		State: be.state, Logger: log, Metrics: controller.NewMetrics(n.reg)})
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	_, rev := n.plans.Running()
	log.Info("callctl node started", "plan", name(cfg.Plan), "plan_revision", rev, "plan_version", plan.Version,
		"servers", len(plan.Servers), "orgs", len(plan.Orgs), "state", cfg.State.Backend)
	close(n.ready)

	reload := make(chan struct{}, 1)
	pctx, pcancel := context.WithCancel(ctx)
	plansDone := make(chan struct{})
	go func() { defer close(plansDone); n.plans.Run(pctx, reload) }()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			log.Info("SIGHUP: reloading the plan")
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}
	pcancel()
	<-plansDone

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

func logProblems(log *slog.Logger, probs provision.Problems) {
	for _, p := range probs {
		level := slog.LevelError
		if p.Severity == provision.Warning {
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, "plan problem", "file", p.File, "line", p.Line,
			"object", p.Object, "field", p.Field, "reason", p.Reason)
	}
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
