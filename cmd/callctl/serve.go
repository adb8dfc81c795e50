package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/callctl/callctl/adapters/file"
	"github.com/callctl/callctl/adapters/freeswitch"
	"github.com/callctl/callctl/adapters/memory"
	"github.com/callctl/callctl/adapters/redis"
	"github.com/callctl/callctl/api"
	"github.com/callctl/callctl/auth"
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
			sigs := make(chan os.Signal, 4)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
			defer signal.Stop(sigs)
			return serve(cmd.Context(), cfg, sigs, cmd.ErrOrStderr())
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

// memoryState is a single node's state: counts in memory, call records in
// a bounded journal in state.dir.
type memoryState struct {
	*memory.Store
	journal *file.Journal
}

func (m memoryState) Write(ctx context.Context, r *controller.Record) error {
	return m.journal.Write(ctx, r)
}

func (m memoryState) Close(context.Context) error { return m.journal.Close() }

// backend is what a node keeps, where: the calls' state, the control
// plane's (the plan and assignments), the API tokens and the call records.
type backend struct {
	state   state
	control control.Store
	tokens  auth.Store
	records api.Records
	release api.LegReleaser
	// up says whether the state store answers (Redis); nil when it is
	// local.
	up func() bool
}

// queryFunc adapts a store's record query to the API's.
type queryFunc func(ctx context.Context, since, until time.Time, match func(*controller.Record) bool, limit int) ([]controller.Record, error)

func (f queryFunc) Query(ctx context.Context, q api.RecordQuery) ([]controller.Record, error) {
	return f(ctx, q.Since, q.Until, q.Match, q.Limit)
}

// openState opens the configured backend. A Redis that does not answer is not
// fatal: the node starts refusing counted legs and recovers by itself.
func openState(ctx context.Context, cfg *Config, log *slog.Logger) (*backend, error) {
	if cfg.State.Backend == "redis" {
		s, err := redis.New(ctx, cfg.State.Redis, cfg.Node, log)
		if err != nil {
			return nil, fmt.Errorf("state.redis: %w", err)
		}
		return &backend{state: s, control: s.Control(), tokens: s.Tokens(), records: queryFunc(s.Query), release: s, up: s.Up}, nil
	}
	c, err := file.NewControl(cfg.State.Dir)
	if err != nil {
		return nil, err
	}
	t, err := file.NewTokens(cfg.State.Dir)
	if err != nil {
		return nil, err
	}
	j, err := file.OpenJournal(cfg.State.Dir, 0)
	if err != nil {
		return nil, err
	}
	m := memory.New(memory.Options{Node: cfg.Node, Logger: log})
	return &backend{state: memoryState{Store: m, journal: j}, control: c, tokens: t, records: queryFunc(j.Query), release: m}, nil
}

// runningNode is a node being served.
type runningNode struct {
	cfg      *Config
	log      *slog.Logger
	backend  *backend
	plans    *control.Service
	notifier *control.Notifier
	node     *node.Node
	reg      *prometheus.Registry
	ready    chan struct{}
}

// serve runs a node until SIGTERM (or ctx ends), then drains: no new calls,
// active ones end by themselves until drain_timeout, then are ended. SIGINT,
// or a second signal during the drain, ends them at once. SIGHUP reloads the
// plan. sigs carries the signals the process receives.
func serve(ctx context.Context, cfg *Config, sigs <-chan os.Signal, logOut io.Writer) error {
	// ctx ends with the node's run: what was started with it stops before
	// the calls are drained, whichever way the node was told to stop.
	ctx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	base := newLogger(cfg.Log, logOut)
	log := base.With("node", cfg.Node)
	n := &runningNode{cfg: cfg, log: log, reg: prometheus.NewRegistry(), ready: make(chan struct{})}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newNodeCollector(n))

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
	if c, ok := be.state.(prometheus.Collector); ok {
		// The Redis state's own metrics: reachability, data losses seen,
		// recoveries, adopted legs.
		n.reg.MustRegister(c)
	}
	n.backend = be
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := be.state.Close(cctx); err != nil {
			log.Warn("closing the state backend", "err", err)
		}
	}()
	n.notifier = &control.Notifier{BaseURL: cfg.publicURL(), Store: be.control, Logger: log}
	n.plans = control.New(control.Options{Node: cfg.Node, Store: be.control, File: cfg.Plan,
		SeedName: examples.LabName, Seed: examples.Lab, Logger: log, Retry: cfg.PlanCheck,
		Apply:  func(p *provision.Plan) { n.node.SetPlan(p) },
		Notify: func(ns []control.Notice) { n.notifier.Send(ctx, ns) }})
	plan, err := n.plans.Start(ctx)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	var httpSrv *http.Server
	if cfg.Listen.HTTP != "" {
		if httpSrv, err = n.startHTTP(ctx); err != nil {
			return &exitError{code: 1, err: err}
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = httpSrv.Shutdown(sctx)
			cancel()
		}()
	}
	allow, err := freeswitch.ParseAllow(cfg.Listen.ESLAllow)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	n.node, err = node.Start(ctx, plan, node.Options{ID: cfg.Node, ESLListen: cfg.Listen.ESL, Servers: cfg.MediaServers,
		State: be.state, Logger: log, Metrics: controller.NewMetrics(n.reg), Registry: n.reg,
		FreeSWITCH: freeswitch.Options{Allow: allow}})
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
	now := false
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				log.Info("SIGHUP: reloading the plan")
				select {
				case reload <- struct{}{}:
				default:
				}
			case syscall.SIGINT:
				now = true
				break loop
			default:
				break loop
			}
		}
	}
	stopRun()
	pcancel()
	<-plansDone

	dctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	if now {
		log.Info("shutting down: ending calls now (SIGINT)", "active", n.node.Engine().Active())
		cancel()
	} else {
		log.Info("shutting down: draining calls", "active", n.node.Engine().Active(), "timeout", cfg.DrainTimeout)
		// A second SIGTERM/SIGINT ends the drain now.
		go func() {
			for {
				select {
				case sig := <-sigs:
					if sig == syscall.SIGHUP {
						continue
					}
					log.Warn("second signal: ending calls now", "signal", sig.String())
					cancel()
					return
				case <-dctx.Done():
					return
				}
			}
		}()
	}
	if err := n.node.Shutdown(dctx); err != nil && !now {
		log.Warn("drain ended early", "err", err)
	} else if err != nil {
		log.Info("calls ended by the shutdown", "err", err)
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

func (n *runningNode) startHTTP(ctx context.Context) (*http.Server, error) {
	be := n.backend
	apiSrv, err := api.New(api.Options{Plans: n.plans, Tokens: be.tokens, Counts: be.state, Records: be.records,
		Release: be.release, Notifier: n.notifier, Logger: n.log, Context: ctx,
		Calls: func() []controller.CallView {
			select {
			case <-n.ready:
				return n.node.Engine().Calls()
			default:
				return nil
			}
		}})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", apiSrv)
	mux.Handle("/metrics", n.local(be.tokens, promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{})))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/readyz", http.HandlerFunc(n.readyz))
	ln, err := net.Listen("tcp", n.cfg.Listen.HTTP)
	if err != nil {
		return nil, fmt.Errorf("listen.http: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "err", err)
		}
	}()
	n.log.Info("http listening", "addr", ln.Addr().String(), "paths", "/api/v1 /metrics /healthz /readyz")
	return srv, nil
}
