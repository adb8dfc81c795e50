package redis

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/callctl/callctl/controller/accounting"
)

// sweep adopts the legs of other nodes whose lease expired, once this node
// has seen the lease expired and unchanged for a heartbeat. Only nodes that
// serve media servers adopt (they can ask the servers whether the channels
// are still up), and not right after Redis came back from an outage or a
// recovery: every lease looks expired then, and the live nodes (whose
// clients may take a second more to reconnect) get a lease TTL to renew
// theirs first. s.tickMu is held.
func (s *Store) sweep(ctx context.Context) error {
	if !s.adopts.Load() || time.Since(s.recovered) < s.cfg.LeaseTTL+time.Second {
		return nil
	}
	res, err := expiredScript.Run(ctx, s.rdb, []string{s.gtag + "leases"}).StringSlice()
	if err != nil {
		return fmt.Errorf("expired leases: %w", err)
	}
	now := time.Now()
	grace := s.cfg.HeartbeatInterval
	mine := s.Lease()
	current := map[string]bool{}
	for i := 0; i+1 < len(res); i += 2 {
		lease, score := res[i], res[i+1]
		if lease == mine {
			continue
		}
		current[lease] = true
		seen, ok := s.seen[lease]
		if !ok || seen.score != score {
			s.seen[lease] = seenLease{score: score, first: now}
			continue
		}
		if now.Sub(seen.first) < grace {
			continue
		}
		delete(s.seen, lease)
		ms, _ := strconv.ParseInt(score, 10, 64)
		if err := s.adopt(ctx, lease, score, "node lease expired: its counted legs adopted; they are released as their channels end",
			"expired_for", time.Since(time.UnixMilli(ms)).Round(time.Millisecond)); err != nil {
			return err
		}
	}
	for l := range s.seen {
		if !current[l] {
			delete(s.seen, l)
		}
	}
	return nil
}

// takeBack adopts, once, the legs of earlier incarnations of this node (the
// process restarted with the same id): their calls may still be up, and
// they are this node's to watch. s.tickMu is held.
func (s *Store) takeBack(ctx context.Context) error {
	if s.tookBack || !s.adopts.Load() {
		return nil
	}
	all, err := s.rdb.ZRange(ctx, s.gtag+"leases", 0, -1).Result()
	if err != nil {
		return fmt.Errorf("leases: %w", err)
	}
	for _, l := range all {
		if strings.HasPrefix(l, s.node+"/") && !strings.HasPrefix(l, s.inc) {
			if err := s.adopt(ctx, l, "", "legs of this node's previous run taken back; they are released as their channels end"); err != nil {
				return err
			}
		}
	}
	s.tookBack = true
	return nil
}

// adopt moves the legs of lease dead (if its score is still score; ""
// takes it whatever it is) to this node's lease: in Redis, where they stay
// counted, and in memory, so that they are put back if Redis loses them.
func (s *Store) adopt(ctx context.Context, dead, score, msg string, logArgs ...any) error {
	lease := s.Lease()
	res, err := claimLeaseScript.Run(ctx, s.rdb, []string{s.gtag + "leases", s.gtag + "lp:" + dead, s.gtag + "lp:" + lease},
		dead, score, lease).Result()
	if err != nil {
		return fmt.Errorf("adopt %s: %w", dead, err)
	}
	names, ok := res.([]any)
	if !ok {
		return nil // renewed meanwhile, or this node's own lease is gone
	}
	// Servers first: an org's entry whose hold is on no server is a leg the
	// dead node never finished counting.
	sort.Slice(names, func(i, j int) bool { return fmt.Sprint(names[i]) > fmt.Sprint(names[j]) })
	legs := 0
	servers := map[string]int{}
	for _, v := range names {
		name, _ := v.(string)
		p := s.partOf(name)
		s.mu.Lock()
		s.registered[name] = true
		s.mu.Unlock()
		out, err := adoptScript.Run(ctx, s.rdb, []string{p.holds(), p.prefix + "l:" + dead, p.prefix + "l:" + lease, p.prefix + "gone:" + dead},
			lease, goneTTL.Milliseconds()).StringSlice()
		if err != nil {
			return fmt.Errorf("adopt %s in %s: %w", dead, name, err)
		}
		server, isServer := strings.CutPrefix(name, "s:")
		var orphans []string
		for i := 0; i+1 < len(out); i += 2 {
			id, f := out[i], strings.Split(out[i+1], "\x1f")
			if len(f) != 4 {
				continue
			}
			if !isServer {
				orphans = append(orphans, id, f[0])
				continue
			}
			h := accounting.Hold{ID: id, Leg: accounting.Leg{Server: server, Org: f[0]}, Channel: f[2]}
			s.mu.Lock()
			if lh := s.local[id]; lh == nil || lh.state == releasing {
				s.local[id] = &localHold{h: h, state: adopted}
			}
			s.mu.Unlock()
			legs++
			servers[server]++
		}
		if err := s.dropOrphans(ctx, p, orphans); err != nil {
			return err
		}
	}
	s.log.Warn(msg, append([]any{"lease", dead, "legs", legs, "servers", servers}, logArgs...)...)
	if legs > 0 {
		select {
		case s.adoptedCh <- struct{}{}:
		default:
		}
	}
	return nil
}

// dropOrphans releases org entries (id, server pairs) whose hold is counted
// on no server: the dead node stopped between counting the org and the
// server.
func (s *Store) dropOrphans(ctx context.Context, org part, pairs []string) error {
	var calls []*scriptCall
	for i := 0; i+1 < len(pairs); i += 2 {
		id, server := pairs[i], pairs[i+1]
		ok, err := s.rdb.HExists(ctx, s.serverPart(server).holds(), id).Result()
		if err != nil {
			return fmt.Errorf("adopt: %w", err)
		}
		if !ok {
			calls = append(calls, s.releaseCall(org, id, tombstoneTTL))
		}
	}
	if len(calls) == 0 {
		return nil
	}
	if _, err := s.runScripts(ctx, calls...); err != nil {
		return fmt.Errorf("adopt: %w", err)
	}
	s.log.Warn("released org counts of legs a dead node never finished counting", "org", org.name, "legs", len(calls))
	return nil
}

// pruneAdopted forgets adopted legs that Redis no longer counts for this
// node (released by another node that found their channels gone, or taken
// back by the node that holds their call). s.tickMu is held.
func (s *Store) pruneAdopted(ctx context.Context) error {
	s.mu.Lock()
	byServer := map[string][]string{}
	for id, lh := range s.local {
		if lh.state == adopted {
			byServer[lh.h.Leg.Server] = append(byServer[lh.h.Leg.Server], id)
		}
	}
	lease := s.lease
	s.mu.Unlock()
	for server, ids := range byServer {
		vals, err := s.rdb.HMGet(ctx, s.serverPart(server).holds(), ids...).Result()
		if err != nil {
			return fmt.Errorf("adopted legs: %w", err)
		}
		for i, v := range vals {
			rec, _ := v.(string)
			if f := strings.Split(rec, "\x1f"); len(f) == 4 && f[1] == lease {
				continue
			}
			s.mu.Lock()
			if lh := s.local[ids[i]]; lh != nil && lh.state == adopted {
				delete(s.local, ids[i])
			}
			s.mu.Unlock()
		}
	}
	return nil
}

// Adopted lists the servers on which this node holds legs it adopted from a
// node that died: the node checks them against each server's live channels
// (Reconcile) until they end.
func (s *Store) Adopted() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	set := map[string]bool{}
	for _, lh := range s.local {
		if lh.state == adopted {
			set[lh.h.Leg.Server] = true
		}
	}
	out := make([]string, 0, len(set))
	for server := range set {
		out = append(out, server)
	}
	sort.Strings(out)
	return out
}

// AdoptedChanged is signalled when this node adopts legs.
func (s *Store) AdoptedChanged() <-chan struct{} { return s.adoptedCh }
