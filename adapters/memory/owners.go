package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/callctl/callctl/controller"
)

// owners hands each media server to one Run at a time. In a single node
// that is this process; the terms and fencing still hold, so code written
// for a cluster behaves the same here.
type owners struct {
	mu      sync.Mutex
	servers map[string]*ownedServer
}

type ownedServer struct {
	token  uint64
	leader bool
	// free is signalled when the current leader steps down.
	free   chan struct{}
	events map[string]time.Time
}

func (o *owners) init() { o.servers = map[string]*ownedServer{} }

func (o *owners) server(name string) *ownedServer {
	s := o.servers[name]
	if s == nil {
		s = &ownedServer{free: make(chan struct{}, 1), events: map[string]time.Time{}}
		s.free <- struct{}{}
		o.servers[name] = s
	}
	return s
}

// Run leads server whenever no other Run in this process does, until ctx
// ends. A lead that returns on its own is called again (new term) after a
// pause, so a lead that fails at once does not spin.
func (s *Store) Run(ctx context.Context, server string, lead func(ctx context.Context, t controller.Term)) error {
	s.own.mu.Lock()
	srv := s.own.server(server)
	s.own.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-srv.free:
		}
		s.own.mu.Lock()
		srv.token++
		srv.leader = true
		t := controller.Term{Server: server, Node: s.opt.Node, Token: srv.token}
		s.own.mu.Unlock()
		s.log.Info("media server owned", "server", server, "node", t.Node, "token", t.Token)
		lead(ctx, t)
		s.own.mu.Lock()
		srv.leader = false
		s.own.mu.Unlock()
		srv.free <- struct{}{}
		s.log.Info("media server released", "server", server, "token", t.Token)
		pause := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			pause.Stop()
			return ctx.Err()
		case <-pause.C:
		}
	}
}

// Claim records that term t handled event.
func (s *Store) Claim(ctx context.Context, t controller.Term, event string) (bool, error) {
	now := s.opt.Now()
	s.own.mu.Lock()
	defer s.own.mu.Unlock()
	srv := s.own.server(t.Server)
	if t.Token != srv.token || !srv.leader {
		return false, fmt.Errorf("claim %s on %s with token %d (current %d): %w",
			event, t.Server, t.Token, srv.token, controller.ErrNotOwner)
	}
	if exp, ok := srv.events[event]; ok && now.Before(exp) {
		return false, nil
	}
	if len(srv.events) > 4096 {
		for k, exp := range srv.events {
			if !now.Before(exp) {
				delete(srv.events, k)
			}
		}
	}
	srv.events[event] = now.Add(s.opt.EventTTL)
	return true, nil
}
