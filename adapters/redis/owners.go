package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/callctl/callctl/controller"
)

func (s *Store) ownKeys(server string) (lease, fence string) {
	t := "{" + s.cfg.Prefix + ":own:" + server + "}:"
	return t + "lease", t + "fence"
}

// Run campaigns for server until ctx ends and calls lead for each term won.
// The owner renews its lease every third of owner_ttl; lead's context is
// cancelled once the lease could have lapsed without a renewal (a tenth of the
// TTL before it would in Redis), so the next owner, which can only win after
// the lease expired in Redis, never overlaps the last. Events are fenced on
// top of that with Claim.
func (s *Store) Run(ctx context.Context, server string, lead func(ctx context.Context, t controller.Term)) error {
	leaseKey, fenceKey := s.ownKeys(server)
	ttl := s.cfg.OwnerTTL
	poll := ttl / 4
	if !s.adopts.Swap(true) {
		// A node that serves media servers adopts the legs of dead nodes
		// (and takes back its own earlier run's) from now on.
		s.poke()
	}
	var lastOwner string
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		sent := time.Now()
		won, tok, who, err := s.campaign(ctx, leaseKey, fenceKey, 0)
		switch {
		case err != nil:
			if ctx.Err() == nil && lastOwner != "?" {
				s.log.Warn("media server ownership: campaign failed", "server", server, "err", err)
				lastOwner = "?"
			}
		case !won:
			if who != lastOwner {
				s.log.Info("media server owned by another node", "server", server, "owner", who)
				lastOwner = who
			}
		default:
			lastOwner = ""
			s.lead(ctx, controller.Term{Server: server, Node: s.node, Token: tok}, leaseKey, fenceKey, sent, lead)
			// Then wait like a loser: a lead that keeps failing at once
			// (its media server unreachable) must not spin, and another
			// node may do better.
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// lead runs one term: lead in its goroutine, renewals here.
func (s *Store) lead(ctx context.Context, term controller.Term, leaseKey, fenceKey string, sent time.Time,
	lead func(ctx context.Context, t controller.Term)) {
	ttl := s.cfg.OwnerTTL
	margin := ttl / 10
	log := s.log.With("server", term.Server, "token", term.Token)
	log.Info("media server owned: leading")
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		lead(lctx, term)
	}()
	valid := time.NewTimer(time.Until(sent.Add(ttl - margin)))
	defer valid.Stop()
	renew := time.NewTicker(ttl / 3)
	defer renew.Stop()
	lost := func(why string) {
		cancel()
		<-done
		log.Warn("media server ownership lost: stopped leading", "reason", why)
	}
	for {
		select {
		case <-done:
			// lead returned on its own: give the server up for another node.
			s.resign(leaseKey, term)
			log.Info("media server released: lead ended")
			return
		case <-ctx.Done():
			cancel()
			<-done
			s.resign(leaseKey, term)
			log.Info("media server released: node stopping")
			return
		case <-valid.C:
			lost("lease not renewed in time")
			return
		case <-renew.C:
			at := time.Now()
			rctx, rcancel := context.WithTimeout(ctx, ttl/3)
			won, _, who, err := s.campaign(rctx, leaseKey, fenceKey, term.Token)
			rcancel()
			switch {
			case err != nil:
				// Keep leading until the lease could lapse; valid fires then.
				log.Warn("media server ownership: renewal failed", "err", err)
			case !won:
				lost("lease taken by " + who)
				return
			default:
				if !valid.Stop() {
					select {
					case <-valid.C:
						lost("lease not renewed in time")
						return
					default:
					}
				}
				valid.Reset(time.Until(at.Add(ttl - margin)))
			}
		}
	}
}

func (s *Store) campaign(ctx context.Context, leaseKey, fenceKey string, token uint64) (bool, uint64, string, error) {
	res, err := campaignScript.Run(ctx, s.rdb, []string{leaseKey, fenceKey}, s.inc, s.cfg.OwnerTTL.Milliseconds(),
		strconv.FormatUint(token, 10)).Slice()
	if err != nil {
		return false, 0, "", fmt.Errorf("campaign: %w", err)
	}
	if len(res) != 2 {
		return false, 0, "", fmt.Errorf("campaign: unexpected reply %v", res)
	}
	won, _ := res[0].(int64)
	val, _ := res[1].(string)
	if won != 1 {
		return false, 0, val, nil
	}
	tok, err := strconv.ParseUint(val, 10, 64)
	if err != nil {
		return false, 0, "", fmt.Errorf("campaign: token %q: %w", val, err)
	}
	return true, tok, "", nil
}

func (s *Store) resign(leaseKey string, term controller.Term) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.OwnerTTL)
	defer cancel()
	if err := resignScript.Run(ctx, s.rdb, []string{leaseKey}, s.inc, strconv.FormatUint(term.Token, 10)).Err(); err != nil {
		s.log.Warn("media server ownership: resign failed; the lease will lapse", "server", term.Server, "err", err)
	}
}

// Claim records that the owner in term t handles event. The term must still
// hold the server's lease: a deposed owner (even one nobody replaced yet)
// gets ErrNotOwner.
func (s *Store) Claim(ctx context.Context, t controller.Term, event string) (bool, error) {
	if t.Node != s.node {
		return false, fmt.Errorf("claim %s on %s: term of node %s: %w", event, t.Server, t.Node, controller.ErrNotOwner)
	}
	leaseKey, fenceKey := s.ownKeys(t.Server)
	evKey := "{" + s.cfg.Prefix + ":own:" + t.Server + "}:e:" + event
	r, err := claimScript.Run(ctx, s.rdb, []string{fenceKey, leaseKey, evKey}, strconv.FormatUint(t.Token, 10), s.inc,
		(10 * time.Minute).Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("claim %s on %s: %w", event, t.Server, err)
	}
	switch r {
	case 1:
		return true, nil
	case 0:
		return false, nil
	}
	return false, fmt.Errorf("claim %s on %s with token %d: %w", event, t.Server, t.Token, controller.ErrNotOwner)
}
