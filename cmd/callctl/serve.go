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

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
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

// node is a running callctl node.
type node struct {
	cfg    *Config
	log    *slog.Logger
	engine *controller.Engine
	reg    *prometheus.Registry

	planMu   sync.Mutex
	planHash [32]byte
	ready    chan struct{}
}

// serve runs a node until ctx ends (SIGTERM or SIGINT), then drains: no new
// calls, active ones end by themselves until drain_timeout, then are ended. A
// second signal during the drain ends them at once.
func serve(ctx context.Context, cfg *Config, hup <-chan os.Signal, logOut io.Writer) error {
	log := newLogger(cfg.Log, logOut).With("node", cfg.Node)
	n := &node{cfg: cfg, log: log, reg: prometheus.NewRegistry(), ready: make(chan struct{})}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	plan, data, err := n.readPlan()
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	n.planHash = sha256.Sum256(data)
	n.engine = controller.NewEngine(plan, controller.Options{Node: cfg.Node, Logger: log,
		Metrics: controller.NewMetrics(n.reg)})
	log.Info("callctl node starting", "plan", planName(cfg.Plan), "plan_version", plan.Version,
		"servers", len(plan.Servers), "orgs", len(plan.Orgs), "state", cfg.State.Backend)

	var httpSrv *http.Server
	if cfg.Listen.HTTP != "" {
		httpSrv, err = n.startHTTP()
		if err != nil {
			return &exitError{code: 1, err: err}
		}
	}
	close(n.ready)

	ticker := time.NewTicker(cfg.PlanCheck)
	defer ticker.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			log.Info("SIGHUP: reloading the plan")
			n.reload(true)
		case <-ticker.C:
			n.reload(false)
		}
	}

	log.Info("shutting down: draining calls", "active", n.engine.Active(), "timeout", cfg.DrainTimeout)
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
	if err := n.engine.Drain(dctx); err != nil {
		log.Warn("drain ended early", "err", err)
	}
	if httpSrv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = httpSrv.Shutdown(sctx)
		scancel()
	}
	log.Info("callctl node stopped")
	return nil
}

func planName(p string) string {
	if p == "" {
		return "embedded lab plan"
	}
	return p
}

// readPlan reads and compiles the plan, logging every problem.
func (n *node) readPlan() (*provision.Plan, []byte, error) {
	var data []byte
	var err error
	name := n.cfg.Plan
	if name == "" {
		plan, probs, err := loadPlan("")
		n.logProblems(probs)
		return plan, nil, err
	}
	data, err = os.ReadFile(name)
	if err != nil {
		return nil, nil, fmt.Errorf("plan: %w", err)
	}
	plan, probs, err := provision.Load(name, data)
	n.logProblems(probs)
	if err != nil {
		return nil, data, err
	}
	return plan, data, nil
}

func (n *node) logProblems(probs provision.Problems) {
	for _, p := range probs {
		level := slog.LevelError
		if p.Severity == provision.Warning {
			level = slog.LevelWarn
		}
		n.log.Log(context.Background(), level, "plan problem", "file", p.File, "line", p.Line,
			"object", p.Object, "field", p.Field, "reason", p.Reason)
	}
}

// reload swaps in the plan file's content when it changed (or when forced by
// SIGHUP). An invalid plan changes nothing: the node keeps running the last
// good one and says why.
func (n *node) reload(force bool) {
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
		n.log.Error("plan reload rejected: keeping the running plan", "running_version", n.engine.Plan().Version, "err", err)
		return
	}
	old := n.engine.Plan().Version
	n.engine.SetPlan(plan)
	n.log.Info("plan reloaded", "from_version", old, "version", plan.Version, "active_calls", n.engine.Active())
}

func (n *node) startHTTP() (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-n.ready:
			fmt.Fprintf(w, "ready plan=%s active=%d\n", n.engine.Plan().Version, n.engine.Active())
		default:
			http.Error(w, "starting", http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("/calls", func(w http.ResponseWriter, _ *http.Request) {
		calls := n.engine.Calls()
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
