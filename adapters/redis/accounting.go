package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/callctl/callctl/controller/accounting"
)

// callOf is the call id part of a hold id (`<call>/in/<i>`, `<call>/<leg>/<i>`).
func callOf(id string) string {
	if i := strings.IndexByte(id, '/'); i >= 0 {
		return id[:i]
	}
	return id
}

// clean says whether a name can go in a hold record (fields are separated
// by the unit separator).
func clean(v string) bool { return !strings.ContainsRune(v, '\x1f') }

// Acquire counts h's leg, atomically with the server and org limit checks,
// in one round trip. It is idempotent.
func (s *Store) Acquire(ctx context.Context, h accounting.Hold) error {
	if h.ID == "" || h.Leg.Server == "" {
		return fmt.Errorf("acquire: hold needs an id and a server (id %q, server %q)", h.ID, h.Leg.Server)
	}
	if !clean(h.ID) || !clean(h.Leg.Server) || !clean(h.Leg.Org) || !clean(h.Channel) {
		return fmt.Errorf("acquire %s: control character in the hold", h.ID)
	}
	if !s.up.Load() {
		return s.unavailable(h, false, errors.New("Redis is down"))
	}
	for try := 0; ; try++ {
		// The read lock keeps a reconciliation of this node's legs from
		// seeing the hold in Redis before it is in s.local.
		s.sync.RLock()
		r, err := s.runScript(ctx, acquireScript,
			[]string{s.holdsKey, s.tag + "s:" + h.Leg.Server, s.tag + "o:" + h.Leg.Org, s.tag + "l:" + s.lease, s.leaseKey, s.tag + "t:" + h.ID},
			h.ID, h.Leg.Server, h.Leg.Org, s.lease, h.Channel, h.Limit.Server, h.Limit.Org)
		if err == nil && r == 1 {
			s.mu.Lock()
			s.local[h.ID] = &localHold{h: h, state: held}
			s.mu.Unlock()
		}
		s.sync.RUnlock()
		if err != nil {
			if failed(ctx, err) {
				s.markDown(err)
			}
			return s.unavailable(h, true, err)
		}
		switch r {
		case 1:
			return nil
		case -1:
			return &accounting.LimitError{Scope: "server", Name: h.Leg.Server, Limit: h.Limit.Server}
		case -2:
			return &accounting.LimitError{Scope: "org", Name: h.Leg.Org, Limit: h.Limit.Org}
		case -3:
			return fmt.Errorf("acquire %s: %w", h.ID, ErrReleased)
		case -4:
			// The lease lapsed (this node was cut off longer than its TTL,
			// or Redis lost it): renew it, put the legs back, try again.
			if try > 0 {
				return s.unavailable(h, false, errors.New("lease lost"))
			}
			if err := s.beat(ctx); err != nil {
				return s.unavailable(h, false, err)
			}
			continue
		}
		return fmt.Errorf("acquire %s: unexpected script result %d", h.ID, r)
	}
}

// unavailable handles an acquire that could not be decided: fail closed
// (refuse; if it was sent, release it in case it ran after all) or fail open.
func (s *Store) unavailable(h accounting.Hold, sent bool, cause error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lh, ok := s.local[h.ID]; ok && lh.state != releasing {
		return nil // acquired before (a repeated acquire)
	}
	if s.cfg.FailOpen {
		s.local[h.ID] = &localHold{h: h, state: uncounted}
		s.log.Warn("counted leg let through uncounted: Redis unavailable (fail open); it is counted once Redis is back",
			"call", callOf(h.ID), "hold", h.ID, "server", h.Leg.Server, "org", h.Leg.Org, "err", cause)
		return nil
	}
	if sent {
		// The script may have run even though no answer came back: release
		// it later, which also keeps a late arrival from counting.
		s.local[h.ID] = &localHold{h: h, state: releasing}
	}
	return fmt.Errorf("acquire %s: %w (%w)", h.ID, accounting.ErrUnavailable, cause)
}

// Release uncounts hold id in one round trip. It is idempotent; releasing an
// id never acquired leaves a tombstone so that a late acquire is refused.
// While Redis is down the release waits in memory and is sent once Redis is
// back (nil is returned: the release will happen).
func (s *Store) Release(ctx context.Context, id string) error {
	s.sync.RLock()
	defer s.sync.RUnlock()
	s.mu.Lock()
	lh := s.local[id]
	if lh == nil {
		lh = &localHold{h: accounting.Hold{ID: id}}
		s.local[id] = lh
	}
	lh.state = releasing
	s.mu.Unlock()
	if !s.up.Load() {
		s.log.Warn("release of a counted leg waits for Redis", "call", callOf(id), "hold", id)
		return nil
	}
	if err := s.release(ctx, id); err != nil {
		if failed(ctx, err) {
			s.markDown(err)
		}
		s.log.Warn("release of a counted leg waits for Redis", "call", callOf(id), "hold", id, "err", err)
		return nil
	}
	return nil
}

// release sends one release and forgets the hold once Redis has it.
func (s *Store) release(ctx context.Context, id string) error {
	_, err := s.runScript(ctx, releaseScript, []string{s.holdsKey, s.tag + "t:" + id}, id, tombstoneTTL.Milliseconds(), s.tag)
	if err != nil {
		return fmt.Errorf("release %s: %w", id, err)
	}
	s.mu.Lock()
	if lh := s.local[id]; lh != nil && lh.state == releasing {
		delete(s.local, id)
	}
	s.mu.Unlock()
	return nil
}

// syncPending sends the releases that waited and counts the legs let
// through uncounted.
func (s *Store) syncPending(ctx context.Context) {
	s.mu.Lock()
	var rel []string
	unc := 0
	for id, lh := range s.local {
		switch lh.state {
		case releasing:
			rel = append(rel, id)
		case uncounted:
			unc++
		}
	}
	s.mu.Unlock()
	if len(rel) > 0 {
		s.sync.RLock()
		done := 0
		for _, id := range rel {
			if err := s.release(ctx, id); err != nil {
				if failed(ctx, err) {
					s.markDown(err)
				}
				break
			}
			done++
		}
		s.sync.RUnlock()
		s.log.Info("releases that waited for Redis sent", "sent", done, "waiting", len(rel)-done)
	}
	if unc > 0 {
		if err := s.resync(ctx, true); err != nil && failed(ctx, err) {
			s.markDown(err)
		}
	}
}

// Count returns the legs held now on a server (scope "server") or for an org
// (scope "org"), across the cluster.
func (s *Store) Count(ctx context.Context, scope, name string) (int, error) {
	var key string
	switch scope {
	case "server":
		key = s.tag + "s:" + name
	case "org":
		key = s.tag + "o:" + name
	default:
		return 0, fmt.Errorf("count: unknown scope %q (want server or org)", scope)
	}
	n, err := s.rdb.SCard(ctx, key).Result()
	if err != nil {
		return 0, fmt.Errorf("count %s %s: %w: %w", scope, name, accounting.ErrUnavailable, err)
	}
	return int(n), nil
}

// Reconcile releases the holds on server whose channel is not in live and
// that are older than the reconcile minimum age, whichever node holds them.
func (s *Store) Reconcile(ctx context.Context, server string, live []string) (int, error) {
	ids, err := s.rdb.SMembers(ctx, s.tag+"s:"+server).Result()
	if err != nil {
		return 0, fmt.Errorf("reconcile %s: %w", server, err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	alive := make(map[string]struct{}, len(live))
	for _, c := range live {
		alive[c] = struct{}{}
	}
	var gone []any
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(len(ids), start+500)]
		vals, err := s.rdb.HMGet(ctx, s.holdsKey, chunk...).Result()
		if err != nil {
			return 0, fmt.Errorf("reconcile %s: %w", server, err)
		}
		for i, v := range vals {
			rec, ok := v.(string)
			if !ok {
				continue // released meanwhile
			}
			f := strings.Split(rec, "\x1f")
			if len(f) != 5 {
				continue
			}
			if _, up := alive[f[3]]; !up {
				gone = append(gone, chunk[i], f[3])
			}
		}
	}
	released := 0
	minAge := max(s.cfg.ReconcileMinAge, 0).Milliseconds()
	for len(gone) > 0 {
		batch := gone[:min(len(gone), 400)]
		gone = gone[len(batch):]
		args := append([]any{s.tag, tombstoneTTL.Milliseconds(), minAge}, batch...)
		ids, err := reconcileScript.Run(ctx, s.rdb, []string{s.holdsKey}, args...).StringSlice()
		if err != nil {
			return released, fmt.Errorf("reconcile %s: %w", server, err)
		}
		for _, id := range ids {
			s.log.Info("released a counted leg: its channel is gone", "call", callOf(id), "hold", id, "server", server)
		}
		released += len(ids)
	}
	return released, nil
}

// sweep releases the legs of other nodes whose lease expired, once this node
// has seen the lease expired and unchanged for a heartbeat. Not right after
// this node found Redis back from an outage, though: every lease looks
// expired then, and the live nodes (whose clients may take a second more to
// reconnect) get a lease TTL to renew theirs first.
func (s *Store) sweep(ctx context.Context) {
	if since := time.Since(s.recovered); since < s.cfg.LeaseTTL+time.Second {
		return
	}
	res, err := expiredScript.Run(ctx, s.rdb, []string{s.leaseKey}).StringSlice()
	if err != nil {
		if failed(ctx, err) {
			s.markDown(err)
		}
		return
	}
	now := time.Now()
	grace := s.cfg.HeartbeatInterval
	current := map[string]bool{}
	for i := 0; i+1 < len(res); i += 2 {
		lease, score := res[i], res[i+1]
		if lease == s.lease {
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
		n, err := reapScript.Run(ctx, s.rdb, []string{s.leaseKey, s.holdsKey}, s.tag, lease, score).Int()
		if err != nil {
			if failed(ctx, err) {
				s.markDown(err)
			}
			return
		}
		delete(s.seen, lease)
		if n >= 0 {
			ms, _ := strconv.ParseInt(score, 10, 64)
			s.log.Warn("node lease expired: its counted legs released", "lease", lease, "released", n,
				"expired_for", time.Since(time.UnixMilli(ms)).Round(time.Millisecond))
		}
	}
	for l := range s.seen {
		if !current[l] {
			delete(s.seen, l)
		}
	}
}

// isNil says whether err is Redis's "no value".
func isNil(err error) bool { return errors.Is(err, goredis.Nil) }
