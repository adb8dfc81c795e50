// Package memory keeps the cluster state of a single callctl node in process:
// channel counts, call records, media server ownership and call stories. It is
// the default when no Redis is configured, and the reference the Redis
// adapter is tested against (package clustertest runs one contract suite on
// both).
package memory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/accounting"
)

// Options configure a Store.
type Options struct {
	// Node is this node's id (ownership terms carry it).
	Node string
	// RecordCap is how many call records are kept (oldest dropped first);
	// 0 means 10,000.
	RecordCap int
	// ReconcileMinAge protects holds younger than this from Reconcile: a leg
	// is counted before its channel exists. 0 means 15 s; negative means none.
	ReconcileMinAge time.Duration
	// EventTTL is how long Claim remembers a handled event; 0 means 10 min.
	EventTTL time.Duration
	Logger   *slog.Logger
	// Now is the clock; tests may replace it.
	Now func() time.Time
}

// ErrReleased is returned by Acquire for a hold that was released before it
// was acquired: the leg is over, it must not be counted now.
var ErrReleased = errors.New("hold was already released")

// tombstoneTTL is how long a release that came before its acquire is
// remembered. Hold ids are unique per leg, so this only has to outlast the
// slowest acquire still in flight.
const tombstoneTTL = 10 * time.Minute

// Store is the in-process cluster state of one node. It implements
// accounting.Limiter, controller.Reconciler, controller.Owners,
// controller.RecordSink and controller.Stories.
type Store struct {
	opt Options
	log *slog.Logger

	mu      sync.Mutex
	holds   map[string]hold
	servers map[string]int
	orgs    map[string]int
	tombs   map[string]time.Time

	rec     records
	own     owners
	stories stories
}

type hold struct {
	leg     accounting.Leg
	channel string
	at      time.Time
}

var (
	_ accounting.Limiter    = (*Store)(nil)
	_ controller.Reconciler = (*Store)(nil)
	_ controller.Owners     = (*Store)(nil)
	_ controller.RecordSink = (*Store)(nil)
)

// New returns an empty store.
func New(opt Options) *Store {
	if opt.Node == "" {
		opt.Node = "node"
	}
	if opt.RecordCap <= 0 {
		opt.RecordCap = 10000
	}
	if opt.ReconcileMinAge == 0 {
		opt.ReconcileMinAge = 15 * time.Second
	}
	if opt.EventTTL <= 0 {
		opt.EventTTL = 10 * time.Minute
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	s := &Store{opt: opt, log: opt.Logger, holds: map[string]hold{}, servers: map[string]int{},
		orgs: map[string]int{}, tombs: map[string]time.Time{}}
	s.rec.init(opt.RecordCap)
	s.own.init()
	return s
}

// Acquire counts h's leg if its server and org are under their limits.
func (s *Store) Acquire(ctx context.Context, h accounting.Hold) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("acquire %s: %w", h.ID, err)
	}
	if h.ID == "" || h.Leg.Server == "" {
		return fmt.Errorf("acquire: hold needs an id and a server (id %q, server %q)", h.ID, h.Leg.Server)
	}
	now := s.opt.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.holds[h.ID]; ok {
		return nil // a repeated acquire: already counted once
	}
	if exp, ok := s.tombs[h.ID]; ok && now.Before(exp) {
		return fmt.Errorf("acquire %s: %w", h.ID, ErrReleased)
	}
	if l := h.Limit.Server; l > 0 && s.servers[h.Leg.Server] >= l {
		return &accounting.LimitError{Scope: "server", Name: h.Leg.Server, Limit: l}
	}
	if l := h.Limit.Org; l > 0 && h.Leg.Org != "" && s.orgs[h.Leg.Org] >= l {
		return &accounting.LimitError{Scope: "org", Name: h.Leg.Org, Limit: l}
	}
	s.holds[h.ID] = hold{leg: h.Leg, channel: h.Channel, at: now}
	s.servers[h.Leg.Server]++
	if h.Leg.Org != "" {
		s.orgs[h.Leg.Org]++
	}
	return nil
}

// Release uncounts hold id; releasing an unknown id remembers it, so that an
// acquire arriving late is refused instead of leaking.
func (s *Store) Release(ctx context.Context, id string) error {
	now := s.opt.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.holds[id]; !ok {
		s.tombstone(id, now)
		return nil
	}
	s.drop(id)
	return nil
}

// drop uncounts a known hold; s.mu is held.
func (s *Store) drop(id string) {
	h := s.holds[id]
	delete(s.holds, id)
	if s.servers[h.leg.Server]--; s.servers[h.leg.Server] <= 0 {
		delete(s.servers, h.leg.Server)
	}
	if h.leg.Org != "" {
		if s.orgs[h.leg.Org]--; s.orgs[h.leg.Org] <= 0 {
			delete(s.orgs, h.leg.Org)
		}
	}
}

// tombstone remembers a released id and forgets old ones; s.mu is held.
func (s *Store) tombstone(id string, now time.Time) {
	if len(s.tombs) > 1024 {
		for k, exp := range s.tombs {
			if !now.Before(exp) {
				delete(s.tombs, k)
			}
		}
	}
	s.tombs[id] = now.Add(tombstoneTTL)
}

// Count returns the legs held on a server (scope "server") or for an org
// (scope "org").
func (s *Store) Count(ctx context.Context, scope, name string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch scope {
	case "server":
		return s.servers[name], nil
	case "org":
		return s.orgs[name], nil
	}
	return 0, fmt.Errorf("count: unknown scope %q (want server or org)", scope)
}

// Reconcile releases the holds on server whose channel is not live.
func (s *Store) Reconcile(ctx context.Context, server string, live []string) (int, error) {
	alive := make(map[string]struct{}, len(live))
	for _, c := range live {
		alive[c] = struct{}{}
	}
	now := s.opt.Now()
	cutoff := now.Add(-s.opt.ReconcileMinAge)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, h := range s.holds {
		if h.leg.Server != server || h.at.After(cutoff) {
			continue
		}
		if _, ok := alive[h.channel]; ok {
			continue
		}
		s.drop(id)
		s.tombstone(id, now)
		s.log.Info("released a counted leg: its channel is gone", "call", callOf(id), "hold", id,
			"server", server, "channel", h.channel)
		n++
	}
	return n, nil
}

// ReleaseServer releases every hold on server.
func (s *Store) ReleaseServer(ctx context.Context, server string) (int, error) {
	now := s.opt.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, h := range s.holds {
		if h.leg.Server != server {
			continue
		}
		s.drop(id)
		s.tombstone(id, now)
		s.log.Info("released a counted leg: its server's legs were released", "call", callOf(id), "hold", id, "server", server)
		n++
	}
	if n > 0 {
		s.log.Warn("released every counted leg of a media server", "server", server, "released", n)
	}
	return n, nil
}

// callOf is the call id part of a hold id (`<call>/in-<record>/<i>`, `<call>/<leg>/<i>`).
func callOf(id string) string {
	for i := 0; i < len(id); i++ {
		if id[i] == '/' {
			return id[:i]
		}
	}
	return id
}
