// Package node wires a callctl node together: the controller's engine, the
// media-server adapters for the servers of the plan (FreeSWITCH over the
// Event Socket, Asterisk over ARI) and the state backend (in-memory for one
// node, Redis for a cluster). The command's serve and the scenario suite both
// start nodes through it, so what is tested is what runs.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callctl/callctl/adapters/asterisk"
	"github.com/callctl/callctl/adapters/freeswitch"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/accounting"
	"github.com/callctl/callctl/controller/provision"
)

// State is what a node keeps in its state backend (adapters/memory or
// adapters/redis).
type State interface {
	accounting.Limiter
	controller.Reconciler
	controller.Owners
	controller.RecordSink
	controller.Stories
}

// Options configure a node.
type Options struct {
	// ID names the node in the cluster.
	ID string
	// ESLListen is where FreeSWITCH's socket application connects; empty
	// when the node serves no FreeSWITCH.
	ESLListen string
	// Servers are the plan's servers this node serves; empty means all.
	Servers []string
	State   State
	Logger  *slog.Logger
	Metrics *controller.Metrics
	// ReconcileEvery is how often the owner of a media server releases the
	// counted legs of channels the server no longer has (30 s).
	ReconcileEvery time.Duration
	// AdoptedEvery is how often the legs this node adopted from a node that
	// died are checked against their servers' live channels (2 s).
	AdoptedEvery time.Duration
	// LegGrace, see controller.Options.
	LegGrace time.Duration
	// Registry, when set, gets the adapters' own metrics (the outbound
	// socket listener's refused connections, the event queues).
	Registry prometheus.Registerer
	// FreeSWITCH tunes the outbound-socket server (Allow: the addresses
	// besides the plan's FreeSWITCH servers that may connect); FreeSWITCHConn and
	// Asterisk tune each server's connection (tests shorten backoffs).
	FreeSWITCH     freeswitch.Options
	FreeSWITCHConn func(*freeswitch.MediaServerConfig)
	Asterisk       func(*asterisk.Config)
}

// Node is a running callctl node.
type Node struct {
	opt    Options
	log    *slog.Logger
	engine *controller.Engine

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	fsServer *freeswitch.Server
	fsMS     map[string]*freeswitch.MediaServer
	serveErr chan error

	mu      sync.Mutex
	ariLive map[string]*asterisk.Client
}

// Start starts a node serving plan. It returns once the listeners are bound;
// connections to media servers are made (and remade) in the background.
func Start(ctx context.Context, plan *provision.Plan, opt Options) (*Node, error) {
	if opt.State == nil {
		return nil, errors.New("node: no state backend")
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.ReconcileEvery <= 0 {
		opt.ReconcileEvery = 30 * time.Second
	}
	if opt.AdoptedEvery <= 0 {
		opt.AdoptedEvery = 2 * time.Second
	}
	if opt.FreeSWITCH.Logger == nil {
		opt.FreeSWITCH.Logger = opt.Logger
	}
	n := &Node{opt: opt, log: opt.Logger, fsMS: map[string]*freeswitch.MediaServer{},
		ariLive: map[string]*asterisk.Client{}, serveErr: make(chan error, 1)}
	n.ctx, n.cancel = context.WithCancel(context.WithoutCancel(ctx))
	n.engine = controller.NewEngine(plan, controller.Options{Node: opt.ID, Limiter: opt.State, Records: opt.State, Stories: opt.State,
		Logger: opt.Logger, Metrics: opt.Metrics, LegGrace: opt.LegGrace})

	var fsList []*freeswitch.MediaServer
	for _, s := range plan.Servers {
		if len(opt.Servers) > 0 && !slices.Contains(opt.Servers, s.Name) {
			continue
		}
		switch s.Kind {
		case provision.KindFreeSWITCH:
			fsList = append(fsList, n.startFreeSWITCH(s))
		case provision.KindAsterisk:
			if err := n.startAsterisk(s); err != nil {
				n.cancel()
				n.wg.Wait()
				return nil, err
			}
		}
	}
	if a, ok := opt.State.(adopter); ok {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.watchAdopted(a)
		}()
	}
	if len(fsList) > 0 {
		if opt.ESLListen == "" {
			n.cancel()
			n.wg.Wait()
			return nil, errors.New("node: the plan has FreeSWITCH servers but no listen address for their socket application")
		}
		n.fsServer = freeswitch.NewServer(n.engine, fsList, opt.FreeSWITCH)
		if opt.Registry != nil {
			if err := opt.Registry.Register(n.fsServer); err != nil {
				n.cancel()
				n.wg.Wait()
				return nil, fmt.Errorf("node: metrics of the FreeSWITCH listener: %w", err)
			}
		}
		if err := n.fsServer.Listen(n.ctx, opt.ESLListen); err != nil {
			n.cancel()
			n.wg.Wait()
			return nil, fmt.Errorf("node: listen for FreeSWITCH: %w", err)
		}
		go func() { n.serveErr <- n.fsServer.Serve() }()
		n.log.Info("listening for FreeSWITCH socket connections", "addr", n.fsServer.Addr().String())
	}
	if opt.Registry != nil {
		// Registered once the node's connections are set up: a scrape reads
		// them without the node's lock.
		if err := opt.Registry.Register(eventQueues{n}); err != nil {
			n.log.Warn("event queue metrics not registered", "err", err)
		}
	}
	return n, nil
}

// Engine is the node's engine.
func (n *Node) Engine() *controller.Engine { return n.engine }

// ESLAddr is the address FreeSWITCH's socket application connects to, nil
// when the node serves no FreeSWITCH.
func (n *Node) ESLAddr() net.Addr {
	if n.fsServer == nil {
		return nil
	}
	return n.fsServer.Addr()
}

// SetPlan switches the node to a new plan: new calls route with it.
// Connections follow the plan the node started with; a server added or
// moved in a new plan needs a restart of the node, which it says. The
// counted legs of a server the new plan no longer has are released: it is
// no longer a media server of callctl's, and nothing can check its channels.
func (n *Node) SetPlan(p *provision.Plan) {
	old := n.engine.Plan()
	n.engine.SetPlan(p)
	for _, s := range p.Servers {
		o := old.Server(s.Name)
		if o == nil || o.Kind != s.Kind || !sameConn(o, s) {
			n.log.Warn("the new plan adds or changes a media server connection: restart the node to use it", "server", s.Name)
		}
	}
	for _, o := range old.Servers {
		if p.Server(o.Name) != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
		released, err := n.opt.State.ReleaseServer(ctx, o.Name)
		cancel()
		if err != nil {
			n.log.Error("the new plan removes a media server; releasing its counted legs failed", "server", o.Name, "err", err)
			continue
		}
		n.log.Warn("the new plan removes a media server: its counted legs released (restart the node to drop its connection)",
			"server", o.Name, "released", released)
	}
}

func sameConn(a, b *provision.ServerInfo) bool {
	switch {
	case a.ESL != nil && b.ESL != nil:
		return *a.ESL == *b.ESL
	case a.ARI != nil && b.ARI != nil:
		return *a.ARI == *b.ARI
	}
	return a.ESL == nil && b.ESL == nil && a.ARI == nil && b.ARI == nil
}

func (n *Node) startFreeSWITCH(s *provision.ServerInfo) *freeswitch.MediaServer {
	cfg := freeswitch.MediaServerConfig{Name: s.Name, Address: s.ESL.Address, Password: s.ESL.Password,
		Context: s.ESL.Context, Logger: n.log}
	if n.opt.FreeSWITCHConn != nil {
		n.opt.FreeSWITCHConn(&cfg)
	}
	ms := freeswitch.NewMediaServer(cfg)
	n.fsMS[s.Name] = ms
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		_ = ms.Run(n.ctx)
	}()
	// Every node keeps its own Event Socket connection (its calls need it);
	// only the owner reconciles the server's counted legs.
	go func() {
		defer n.wg.Done()
		_ = n.opt.State.Run(n.ctx, s.Name, func(ctx context.Context, t controller.Term) {
			n.log.Info("owner of media server", "server", s.Name, "term", t.Token)
			n.reconcileLoop(ctx, ms)
		})
	}()
	return ms
}

func (n *Node) startAsterisk(s *provision.ServerInfo) error {
	cfg, err := asterisk.FromServer(s, n.log)
	if err != nil {
		return fmt.Errorf("node: server %s: %w", s.Name, err)
	}
	if n.opt.Asterisk != nil {
		n.opt.Asterisk(&cfg)
	}
	if _, err := asterisk.New(cfg); err != nil {
		return fmt.Errorf("node: server %s: %w", s.Name, err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		// Asterisk lets one WebSocket serve an application: only the owner
		// connects, and hands calls to the engine under its term.
		_ = n.opt.State.Run(n.ctx, s.Name, func(ctx context.Context, t controller.Term) {
			client, err := asterisk.New(cfg)
			if err != nil {
				n.log.Error("asterisk client", "server", s.Name, "err", err)
				return
			}
			n.log.Info("owner of media server: connecting its ARI application", "server", s.Name, "term", t.Token)
			n.mu.Lock()
			n.ariLive[s.Name] = client
			n.mu.Unlock()
			defer func() {
				n.mu.Lock()
				delete(n.ariLive, s.Name)
				n.mu.Unlock()
			}()
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				n.reconcileLoop(ctx, client)
			}()
			if err := client.Run(ctx, &fenced{engine: n.engine, owners: n.opt.State, term: t, log: n.log}); err != nil && ctx.Err() == nil {
				n.log.Error("asterisk application stopped", "server", s.Name, "err", err)
			}
			wg.Wait()
			n.log.Info("no longer the owner of media server", "server", s.Name, "term", t.Token)
		})
	}()
	return nil
}

// fenced hands a call to the engine only once across owners: a handover
// never processes a call twice.
type fenced struct {
	engine *controller.Engine
	owners controller.Owners
	term   controller.Term
	log    *slog.Logger
}

// claimKeyed is a call that names its hand-over itself: a channel the
// media server hands over again (an Asterisk caller its dialplan sent back
// into the application) is a new hand-over of the same channel id.
type claimKeyed interface{ ClaimKey() string }

func (f *fenced) Handle(ms controller.MediaServer, call controller.Call) error {
	key := "call:" + call.ID()
	if k, ok := call.(claimKeyed); ok {
		key = k.ClaimKey()
	}
	ctx, cancel := context.WithTimeout(call.Context(), 3*time.Second)
	first, err := f.owners.Claim(ctx, f.term, key)
	cancel()
	switch {
	case errors.Is(err, controller.ErrNotOwner):
		f.log.Warn("call arrived after this node lost the server; left to the new owner", "call", call.ID(), "server", ms.Name())
		return nil
	case err != nil:
		// The state store is unreachable: the call is still ours (we hold
		// the application's only connection), so handle it.
		f.log.Warn("could not record the call's claim; handling it", "call", call.ID(), "err", err)
	case !first:
		f.log.Info("call already handled by an earlier owner", "call", call.ID())
		return nil
	}
	return f.engine.Handle(ms, call)
}

// reconcileLoop releases counted legs whose channels the server no longer
// has: at once when ownership begins, then periodically.
func (n *Node) reconcileLoop(ctx context.Context, ms controller.MediaServer) {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if _, err := controller.ReconcileServer(rctx, ms, n.opt.State, n.log); err != nil && ctx.Err() == nil {
			n.log.Debug("reconcile skipped", "server", ms.Name(), "err", err)
			t.Reset(time.Second)
		} else {
			t.Reset(n.opt.ReconcileEvery)
		}
		cancel()
	}
}

// adopter is a state backend that adopts the counted legs of nodes that
// died (the Redis one; in a single process there is nobody to adopt from).
type adopter interface {
	// Adopted lists the servers on which this node holds adopted legs.
	Adopted() []string
	// AdoptedChanged is signalled when the node adopts legs.
	AdoptedChanged() <-chan struct{}
}

// watchAdopted checks the legs this node adopted against their servers'
// live channels, at once when it adopts and then every AdoptedEvery while
// any is left: each is released when its channel is gone. A server this
// node cannot ask (an Asterisk another node owns) is left to its owner's
// reconciliation; its legs stay counted until then.
func (n *Node) watchAdopted(a adopter) {
	t := time.NewTicker(n.opt.AdoptedEvery)
	defer t.Stop()
	unasked := map[string]bool{} // servers that did not answer, said once
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-a.AdoptedChanged():
		case <-t.C:
		}
		for _, server := range a.Adopted() {
			ms := n.mediaServer(server)
			if ms == nil {
				n.log.Debug("adopted legs on a media server this node cannot ask; its owner reconciles them", "server", server)
				continue
			}
			ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
			_, err := controller.ReconcileServer(ctx, ms, n.opt.State, n.log)
			cancel()
			switch {
			case err != nil && n.ctx.Err() == nil && !unasked[server]:
				unasked[server] = true
				n.log.Warn("adopted legs not checked: their media server does not answer; they stay counted until it does",
					"server", server, "err", err)
			case err == nil && unasked[server]:
				delete(unasked, server)
				n.log.Info("adopted legs checked again: their media server answers", "server", server)
			}
		}
	}
}

// mediaServer is the connection this node has to server, or nil: every
// FreeSWITCH it serves, an Asterisk only while it owns it.
func (n *Node) mediaServer(server string) controller.MediaServer {
	if ms := n.fsMS[server]; ms != nil {
		return ms
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if c := n.ariLive[server]; c != nil {
		return c
	}
	return nil
}

// Shutdown drains the node: FreeSWITCH gets no new connections (its
// dialplan falls back to the next node), new Asterisk calls are refused,
// and the calls in progress end by themselves until ctx ends; then they are
// ended. Connections close last.
func (n *Node) Shutdown(ctx context.Context) error {
	var fsErr error
	var wg sync.WaitGroup
	if n.fsServer != nil {
		// Closing the listener first sends new FreeSWITCH calls to the next
		// node of the dialplan; the connections in progress are waited for.
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.fsServer.Shutdown(ctx); err != nil {
				fsErr = fmt.Errorf("freeswitch listener: %w", err)
			}
		}()
	}
	err := n.engine.Drain(ctx)
	wg.Wait()
	n.cancel()
	n.wg.Wait()
	return errors.Join(err, fsErr)
}

// Close stops the node at once: active calls are ended.
func (n *Node) Close() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = n.Shutdown(ctx)
}

// Ready waits until every FreeSWITCH inbound connection of the node is up and
// every Asterisk server it serves has a connected application (on this node
// or, in a cluster, wherever its owner is: only this node's are checked when
// it owns them).
func (n *Node) Ready(ctx context.Context, asteriskHere ...string) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		st := n.Status()
		ready := true
		for name := range n.fsMS {
			ready = ready && st[name] == "connected"
		}
		for _, name := range asteriskHere {
			ready = ready && st[name] == "connected"
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not ready: %w", n.opt.ID, ctx.Err())
		case <-t.C:
		}
	}
}

// Status says, per media server the node serves, how its connection is:
// "connected", "disconnected", or for an Asterisk this node does not own,
// "standby" (another node holds its application).
func (n *Node) Status() map[string]string {
	out := map[string]string{}
	for name, ms := range n.fsMS {
		out[name] = "disconnected"
		if ms.Connected() {
			out[name] = "connected"
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range n.engine.Plan().Servers {
		if s.Kind != provision.KindAsterisk || (len(n.opt.Servers) > 0 && !slices.Contains(n.opt.Servers, s.Name)) {
			continue
		}
		c := n.ariLive[s.Name]
		switch {
		case c == nil:
			out[s.Name] = "standby"
		case c.Connected():
			out[s.Name] = "connected"
		default:
			out[s.Name] = "disconnected"
		}
	}
	return out
}
