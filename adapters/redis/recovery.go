package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// lineage tells the masters a node has worked with apart by their run id,
// which Redis draws at random each time it starts. Every new connection
// reads it before any command runs: a master with a run id not seen before
// is a Redis that restarted (and may have come back without its data) or a
// replica promoted by a failover (which may have missed the last writes).
type lineage struct {
	mu      sync.Mutex
	known   map[string]bool
	armed   bool // the masters of the start are known: a new one is a change
	warned  bool
	changed func(runID string)
	log     *slog.Logger
}

// arm makes every master seen from now on a change; called once the
// node has reached every master (loading its scripts).
func (l *lineage) arm() {
	l.mu.Lock()
	l.armed = true
	l.mu.Unlock()
}

// onConnect is go-redis's OnConnect: it runs on each new connection after
// authentication, before the connection serves a command.
func (l *lineage) onConnect(ctx context.Context, cn *goredis.Conn) error {
	info, err := cn.Info(ctx, "server", "replication").Result()
	if err != nil {
		l.mu.Lock()
		warn := !l.warned
		l.warned = true
		l.mu.Unlock()
		if warn {
			l.log.Warn("Redis INFO refused: a restart or failover is noticed only through the epoch (allow INFO to the callctl user)",
				"err", err)
		}
		return nil
	}
	var runID, role string
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		switch {
		case !ok:
		case k == "run_id":
			runID = v
		case k == "role":
			role = v
		}
	}
	if runID == "" || role != "master" {
		return nil // a sentinel, or a replica: counts are on masters
	}
	l.mu.Lock()
	seen := l.known[runID]
	l.known[runID] = true
	change := !seen && l.armed
	l.mu.Unlock()
	if change {
		l.changed(runID)
	}
	return nil
}

// lineageChanged: a connection reached a master the node has not seen
// before. Counted legs are refused from now on, before any command runs on
// that master, until the nodes have put their legs back.
func (s *Store) lineageChanged(runID string) {
	// Refusing first, then counting the change: an acquire reads the count
	// before it checks for refusal, so it either is refused or sees the
	// count change by the time its answer arrives.
	s.suspectLoss("a Redis master restarted or took over (run id " + runID + "): its data may be older than the counts")
	s.epochGen.Add(1)
}

// suspectLoss starts refusing counted legs and has the heartbeat begin (or
// join) a recovery. It logs once per recovery.
func (s *Store) suspectLoss(why string) {
	s.lost.Store(true)
	if !s.recovering.Swap(true) {
		s.nLoss.Add(1)
		s.log.Error("Redis may have lost counted legs: new counted legs are refused until every live node has put its legs back",
			"reason", why)
	}
	s.poke()
}

// recover drives a recovery: begin or join it, put this node's legs back,
// say so, and end it once no live node is pending or its deadline passed.
// s.tickMu is held.
func (s *Store) recover(ctx context.Context) error {
	if s.lost.Load() {
		args := []any{s.epoch, token(16), s.cfg.LeaseTTL.Milliseconds()}
		for _, l := range s.live {
			args = append(args, l)
		}
		e, err := recoverScript.Run(ctx, s.rdb,
			[]string{s.gtag + "epoch", s.gtag + "rec", s.gtag + "rec:pending", s.gtag + "leases"}, args...).Text()
		if err != nil {
			return fmt.Errorf("begin recovery: %w", err)
		}
		s.lost.Store(false)
		s.epoch = e
		s.published = false
		s.recovering.Store(true)
	} else if !s.recovering.Load() && s.recov.epoch == s.epoch && s.recov.mine {
		// Another node began a recovery under this epoch and counts on
		// this one.
		s.recovering.Store(true)
		s.published = false
	}
	if !s.recovering.Load() {
		return nil
	}
	pending, left := s.recov.pending, s.recov.left
	if s.recov.epoch != s.epoch {
		pending = 0 // the recovery's record is gone (it expired)
	}
	if !s.published {
		if err := s.republish(ctx); err != nil {
			return err
		}
		res, err := publishedScript.Run(ctx, s.rdb, []string{s.gtag + "leases", s.gtag + "rec", s.gtag + "rec:pending"}, s.epoch, s.inc).Slice()
		if err != nil || len(res) != 3 {
			return fmt.Errorf("recovery: %v %w", res, err)
		}
		if e, _ := res[2].(string); e != "" && e != s.epoch {
			// Another loss began a newer recovery: join it.
			s.lost.Store(true)
			return nil
		}
		s.published = true
		pending, _ = res[0].(int64)
		ms, _ := res[1].(int64)
		left = time.Duration(ms) * time.Millisecond
		s.log.Info("counted legs put back after Redis lost data", "nodes_pending", pending)
	}
	if pending > 0 {
		return nil
	}
	s.recovering.Store(false)
	s.recovered = time.Now()
	reason := "every live node put its legs back"
	if left <= 0 {
		reason = "every live node put its legs back; the nodes that did not come back within a lease TTL are taken as dead"
	}
	s.log.Info("counting legs again after Redis lost data", "reason", reason, "epoch", s.epoch)
	return nil
}

// republish makes Redis's view of this node's legs its own after a loss:
// what Redis counts under its lease that it does not hold is released (a
// release Redis lost), and every leg it holds or adopted is put back.
func (s *Store) republish(ctx context.Context) error {
	s.sync.Lock()
	defer s.sync.Unlock()
	s.mu.Lock()
	lease := s.lease
	parts := map[string]bool{}
	for name := range s.registered {
		parts[name] = true
	}
	for _, lh := range s.local {
		parts["s:"+lh.h.Leg.Server] = true
		if lh.h.Leg.Org != "" {
			parts["o:"+lh.h.Leg.Org] = true
		}
	}
	// The registry of the lease may be gone with the data.
	s.registered = map[string]bool{}
	s.mu.Unlock()
	for name := range parts {
		p := s.partOf(name)
		ids, err := s.rdb.SMembers(ctx, p.prefix+"l:"+lease).Result()
		if err != nil {
			return fmt.Errorf("put legs back: %w", err)
		}
		var extra []any
		s.mu.Lock()
		for _, id := range ids {
			if lh := s.local[id]; lh == nil || lh.state == releasing {
				extra = append(extra, id, "")
			}
		}
		s.mu.Unlock()
		if len(extra) == 0 {
			continue
		}
		args := append([]any{p.prefix, tombstoneTTL.Milliseconds(), 0}, extra...)
		if err := dropScript.Run(ctx, s.rdb, []string{p.holds()}, args...).Err(); err != nil {
			return fmt.Errorf("put legs back: %w", err)
		}
		for i := 0; i < len(extra); i += 2 {
			id := extra[i].(string)
			s.forget(id)
			s.log.Warn("released a leg Redis still counted for this node after its release was lost", "call", callOf(id), "hold", id)
		}
	}
	return s.putBackLocked(ctx, false)
}

// putBack counts again in Redis the legs this node holds: all of them, or
// only those let through uncounted while Redis was down.
func (s *Store) putBack(ctx context.Context, onlyUncounted bool) error {
	s.sync.Lock()
	defer s.sync.Unlock()
	return s.putBackLocked(ctx, onlyUncounted)
}

type putBackItem struct {
	id, other, channel string
}

func (s *Store) putBackLocked(ctx context.Context, onlyUncounted bool) error {
	s.mu.Lock()
	lease := s.lease
	byPart := map[string][]putBackItem{}
	var names []string
	add := func(name string, it putBackItem) {
		if _, ok := byPart[name]; !ok {
			names = append(names, name)
		}
		byPart[name] = append(byPart[name], it)
	}
	var uncountedIDs []string
	for id, lh := range s.local {
		if lh.state == releasing || onlyUncounted && lh.state != uncounted {
			continue
		}
		if lh.state == uncounted {
			uncountedIDs = append(uncountedIDs, id)
		}
		add("s:"+lh.h.Leg.Server, putBackItem{id, lh.h.Leg.Org, lh.h.Channel})
		if lh.h.Leg.Org != "" {
			add("o:"+lh.h.Leg.Org, putBackItem{id, lh.h.Leg.Server, lh.h.Channel})
		}
	}
	s.mu.Unlock()
	if len(names) == 0 {
		return nil
	}
	parts := make([]part, len(names))
	for i, n := range names {
		parts[i] = s.partOf(n)
	}
	if err := s.register(ctx, lease, parts); err != nil {
		return fmt.Errorf("put legs back: %w", err)
	}
	stayReleased := map[string]bool{}
	for _, p := range parts {
		items := byPart[p.name]
		for len(items) > 0 {
			batch := items[:min(len(items), 200)]
			items = items[len(batch):]
			args := []any{p.prefix, lease}
			for _, it := range batch {
				args = append(args, it.id, it.other, it.channel)
			}
			gone, err := putBackScript.Run(ctx, s.rdb, []string{p.holds(), p.prefix + "l:" + lease}, args...).StringSlice()
			if err != nil {
				return fmt.Errorf("put legs back: %w", err)
			}
			for _, id := range gone {
				stayReleased[id] = true
			}
		}
	}
	s.mu.Lock()
	for _, id := range uncountedIDs {
		if lh := s.local[id]; lh != nil && lh.state == uncounted {
			lh.state = held
		}
	}
	for id := range stayReleased {
		// Released elsewhere (its channel was found gone): an adopted leg is
		// over; a call's own leg is released by the call as it ends.
		if lh := s.local[id]; lh != nil && lh.state == adopted {
			delete(s.local, id)
		}
	}
	n := 0
	for _, items := range byPart {
		n += len(items)
	}
	s.mu.Unlock()
	s.log.Warn("counted legs put back in Redis", "partition_entries", n, "stayed_released", len(stayReleased),
		"only_uncounted", onlyUncounted)
	return nil
}

// errLeaseLost: the lease is not alive in Redis (adopted, or lost with the
// data).
var errLeaseLost = errors.New("lease lost")

// register records, before the first leg is counted there, the partitions
// where lease counts legs, so that whoever adopts the lease finds them.
func (s *Store) register(ctx context.Context, lease string, parts []part) error {
	missing := s.unregistered(parts)
	if len(missing) == 0 {
		return nil
	}
	// One registration at a time: the many calls that arrive at once for a
	// new partition wait for the first, instead of all asking Redis.
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if missing = s.unregistered(parts); len(missing) == 0 {
		return nil
	}
	r, err := registerScript.Run(ctx, s.rdb, []string{s.gtag + "leases", s.gtag + "lp:" + lease},
		append([]any{lease}, missing...)...).Int()
	if err != nil {
		return fmt.Errorf("register partitions: %w", err)
	}
	if r != 1 {
		return errLeaseLost
	}
	s.mu.Lock()
	if s.lease == lease {
		for _, m := range missing {
			s.registered[m.(string)] = true
		}
	}
	s.mu.Unlock()
	return nil
}

// unregistered lists the partitions of parts not registered for the lease.
func (s *Store) unregistered(parts []part) []any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var missing []any
	for _, p := range parts {
		if !s.registered[p.name] {
			missing = append(missing, p.name)
		}
	}
	return missing
}
