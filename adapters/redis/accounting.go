package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/callctl/callctl/controller/accounting"
)

// callOf is the call id part of a hold id (`<call>/in-<record>/<i>`, `<call>/<leg>/<i>`).
func callOf(id string) string {
	if i := strings.IndexByte(id, '/'); i >= 0 {
		return id[:i]
	}
	return id
}

// clean says whether a name can go in a hold record (fields are separated
// by the unit separator).
func clean(v string) bool { return !strings.ContainsRune(v, '\x1f') }

// part is one accounting partition: a server's or an org's counts.
type part struct {
	name   string // "s:<server>" or "o:<org>", as registered with a lease
	prefix string // "{<prefix>:acct:s:<server>}:"
}

func (s *Store) serverPart(server string) part { return s.partOf("s:" + server) }
func (s *Store) orgPart(org string) part       { return s.partOf("o:" + org) }

func (s *Store) partOf(name string) part {
	return part{name: name, prefix: "{" + s.cfg.Prefix + ":acct:" + name + "}:"}
}

func (p part) holds() string { return p.prefix + "h" }

// Acquire counts h's leg against its server's and its org's limits. It is
// idempotent. On a single Redis it costs one script; on a Redis Cluster a
// leg with an org costs two (one per partition): in one round trip when at
// most one of the two has a limit, in two (the org first) when both have.
func (s *Store) Acquire(ctx context.Context, h accounting.Hold) error {
	if h.ID == "" || h.Leg.Server == "" {
		return fmt.Errorf("acquire: hold needs an id and a server (id %q, server %q)", h.ID, h.Leg.Server)
	}
	if !clean(h.ID) || !clean(h.Leg.Server) || !clean(h.Leg.Org) || !clean(h.Channel) {
		return fmt.Errorf("acquire %s: control character in the hold", h.ID)
	}
	s.mu.Lock()
	lh := s.local[h.ID]
	tomb := s.released(h.ID)
	s.mu.Unlock()
	switch {
	case lh != nil && (lh.state == held || lh.state == adopted):
		return nil // a repeated acquire: counted once
	case tomb:
		return fmt.Errorf("acquire %s: %w", h.ID, ErrReleased)
	}
	gen := s.epochGen.Load()
	if !s.up.Load() {
		return s.unavailable(h, false, errors.New("Redis is down"))
	}
	if s.recovering.Load() {
		return s.unavailable(h, false, errRecovering)
	}
	for try := 0; ; try++ {
		r, err := s.acquireOnce(ctx, h, gen)
		if errors.Is(err, accounting.ErrLimit) {
			return err
		}
		if err != nil {
			if failed(ctx, err) && !errors.Is(err, errRecovering) {
				s.markDown(err)
			}
			return s.unavailable(h, true, err)
		}
		switch r {
		case 1:
			return nil
		case -3:
			return fmt.Errorf("acquire %s: %w", h.ID, ErrReleased)
		case -4:
			// This node's lease was adopted (it was cut off longer than its
			// TTL) or lost with Redis's data: renew it, put the legs back,
			// try again.
			if try > 0 {
				return s.unavailable(h, false, errors.New("lease lost"))
			}
			s.tickMu.Lock()
			err := s.beat(ctx)
			s.tickMu.Unlock()
			if err != nil {
				return s.unavailable(h, false, err)
			}
			continue
		}
		return fmt.Errorf("acquire %s: unexpected script result %d", h.ID, r)
	}
}

// errRecovering refuses counted legs while Redis's data is rebuilt.
var errRecovering = errors.New("Redis lost data: the nodes are putting their legs back")

// acquireOnce runs the acquire scripts. It returns 1 when the leg is
// counted (s.local has it), -3 or -4 as the scripts do, or a
// LimitError.
func (s *Store) acquireOnce(ctx context.Context, h accounting.Hold, gen uint64) (int64, error) {
	// The read lock keeps a reconciliation of this node's legs from seeing
	// the hold in Redis before it is in s.local.
	s.sync.RLock()
	defer s.sync.RUnlock()
	lease := s.Lease()
	srv := s.serverPart(h.Leg.Server)
	parts := []part{srv}
	var org part
	if h.Leg.Org != "" {
		org = s.orgPart(h.Leg.Org)
		parts = append(parts, org)
	}
	if err := s.register(ctx, lease, parts); err != nil {
		if errors.Is(err, errLeaseLost) {
			return -4, nil
		}
		return 0, err
	}
	srvCall := s.acquireCall(srv, h, h.Leg.Org, lease, h.Limit.Server)
	var r [2]int64
	var err error
	switch {
	case h.Leg.Org == "":
		r[0], err = s.runScript(ctx, srvCall)
		r[1] = 1
	case !s.clustered:
		// Both partitions on one Redis: one script, both limits at once.
		var v int64
		v, err = s.runScript(ctx, &scriptCall{sc: acquireBothScript,
			keys: append(srvCall.keys, org.holds(), org.prefix+"l:"+lease, org.prefix+"t:"+h.ID, org.prefix+"gone:"+lease),
			args: []any{h.ID, h.Leg.Server, h.Leg.Org, lease, h.Channel, h.Limit.Server, h.Limit.Org}})
		r[0], r[1] = v, v
		if v == -2 {
			r[0], r[1] = 0, -1
		}
	case h.Limit.Server > 0 && h.Limit.Org > 0:
		// The org first: a leg it refuses never counts on the server.
		if r[1], err = s.runScript(ctx, s.acquireCall(org, h, h.Leg.Server, lease, h.Limit.Org)); err == nil && r[1] == 1 {
			r[0], err = s.runScript(ctx, srvCall)
		} else {
			r[0] = 0 // not sent
		}
	default:
		var rs []int64
		rs, err = s.runScripts(ctx, srvCall, s.acquireCall(org, h, h.Leg.Server, lease, h.Limit.Org))
		if err == nil {
			r[0], r[1] = rs[0], rs[1]
		}
	}
	if err != nil {
		return 0, err
	}
	if s.epochGen.Load() != gen || s.recovering.Load() {
		// Redis changed under the scripts (restart or failover seen on a new
		// connection): what they counted may rest on lost data. It is
		// released (unavailable).
		return 0, errRecovering
	}
	if r[0] == 1 && r[1] == 1 {
		s.mu.Lock()
		s.local[h.ID] = &localHold{h: h, state: held}
		s.mu.Unlock()
		return 1, nil
	}
	// One partition refused: undo the other (no tombstone: the hold id may
	// be acquired again, e.g. after a lease was renewed).
	var undo []*scriptCall
	if r[0] == 1 {
		undo = append(undo, s.releaseCall(srv, h.ID, 0))
	}
	if r[1] == 1 && h.Leg.Org != "" {
		undo = append(undo, s.releaseCall(org, h.ID, 0))
	}
	if len(undo) > 0 {
		if _, err := s.runScripts(ctx, undo...); err != nil {
			return 0, fmt.Errorf("undo a half-counted leg: %w", err)
		}
	}
	switch {
	case r[0] == -1:
		return 0, &accounting.LimitError{Scope: "server", Name: h.Leg.Server, Limit: h.Limit.Server}
	case r[1] == -1:
		return 0, &accounting.LimitError{Scope: "org", Name: h.Leg.Org, Limit: h.Limit.Org}
	case r[0] == -4 || r[1] == -4:
		return -4, nil
	case r[0] == -3 || r[1] == -3:
		return -3, nil
	}
	return min(r[0], r[1]), nil
}

func (s *Store) acquireCall(p part, h accounting.Hold, other, lease string, limit int) *scriptCall {
	return &scriptCall{sc: acquireScript,
		keys: []string{p.holds(), p.prefix + "l:" + lease, p.prefix + "t:" + h.ID, p.prefix + "gone:" + lease},
		args: []any{h.ID, other, lease, h.Channel, limit}}
}

func (s *Store) releaseCall(p part, id string, tombstone time.Duration) *scriptCall {
	return &scriptCall{sc: releaseScript, keys: []string{p.holds(), p.prefix + "t:" + id},
		args: []any{id, tombstone.Milliseconds(), p.prefix}}
}

// unavailable handles an acquire that could not be decided: fail closed
// (refuse; if it was sent, release it in case it ran after all) or fail open.
func (s *Store) unavailable(h accounting.Hold, sent bool, cause error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lh, ok := s.local[h.ID]; ok && lh.state != releasing {
		return nil // acquired before (a repeated acquire)
	}
	if s.cfg.FailOpen && !errors.Is(cause, errRecovering) {
		s.local[h.ID] = &localHold{h: h, state: uncounted}
		s.log.Warn("counted leg let through uncounted: Redis unavailable (fail open); it is counted once Redis is back",
			"call", callOf(h.ID), "hold", h.ID, "server", h.Leg.Server, "org", h.Leg.Org, "err", cause)
		return nil
	}
	if sent {
		// The scripts may have run even though no answer came back: release
		// the leg later, which also keeps a late arrival from counting.
		s.local[h.ID] = &localHold{h: h, state: releasing}
		s.poke()
	}
	return fmt.Errorf("acquire %s: %w (%w)", h.ID, accounting.ErrUnavailable, cause)
}

// Release uncounts hold id in one round trip. It is idempotent; releasing an
// id never acquired is remembered so that a late acquire is refused. While
// Redis is down the release waits in memory and is sent once Redis is back
// (nil is returned: the release will happen).
func (s *Store) Release(ctx context.Context, id string) error {
	s.sync.RLock()
	defer s.sync.RUnlock()
	s.mu.Lock()
	lh := s.local[id]
	if lh == nil {
		// Never counted here: nothing in Redis to release (the partitions
		// are not even known); a late acquire of it is refused.
		s.tombstone(id)
		s.mu.Unlock()
		return nil
	}
	lh.state = releasing
	s.mu.Unlock()
	if !s.up.Load() {
		s.log.Warn("release of a counted leg waits for Redis", "call", callOf(id), "hold", id)
		return nil
	}
	if err := s.release(ctx, lh.h); err != nil {
		if failed(ctx, err) {
			s.markDown(err)
		}
		s.log.Warn("release of a counted leg waits for Redis", "call", callOf(id), "hold", id, "err", err)
	}
	return nil
}

// release uncounts a hold in its partitions (one round trip) and forgets it
// once Redis has it.
func (s *Store) release(ctx context.Context, h accounting.Hold) error {
	calls := []*scriptCall{s.releaseCall(s.serverPart(h.Leg.Server), h.ID, tombstoneTTL)}
	switch {
	case h.Leg.Org != "" && !s.clustered:
		o := s.releaseCall(s.orgPart(h.Leg.Org), h.ID, tombstoneTTL)
		calls[0] = &scriptCall{sc: releaseBothScript, keys: append(calls[0].keys, o.keys...), args: append(calls[0].args, o.args...)}
	case h.Leg.Org != "":
		calls = append(calls, s.releaseCall(s.orgPart(h.Leg.Org), h.ID, tombstoneTTL))
	}
	if _, err := s.runScripts(ctx, calls...); err != nil {
		return fmt.Errorf("release %s: %w", h.ID, err)
	}
	s.mu.Lock()
	if lh := s.local[h.ID]; lh != nil && lh.state == releasing {
		delete(s.local, h.ID)
	}
	s.mu.Unlock()
	return nil
}

// tombstone remembers an id released before it was acquired; s.mu is held.
func (s *Store) tombstone(id string) {
	now := time.Now()
	if len(s.tombs) > 4096 {
		for k, exp := range s.tombs {
			if now.After(exp) {
				delete(s.tombs, k)
			}
		}
	}
	s.tombs[id] = now.Add(tombstoneTTL)
}

// released says whether id was released before it was acquired; s.mu is held.
func (s *Store) released(id string) bool {
	exp, ok := s.tombs[id]
	return ok && time.Now().Before(exp)
}

// syncPending sends the releases that waited and counts the legs let
// through uncounted.
func (s *Store) syncPending(ctx context.Context) error {
	s.mu.Lock()
	var rel []accounting.Hold
	unc := 0
	for _, lh := range s.local {
		switch lh.state {
		case releasing:
			rel = append(rel, lh.h)
		case uncounted:
			unc++
		}
	}
	s.mu.Unlock()
	if len(rel) > 0 {
		s.sync.RLock()
		done := 0
		var err error
		for _, h := range rel {
			if err = s.release(ctx, h); err != nil {
				break
			}
			done++
		}
		s.sync.RUnlock()
		s.log.Info("releases that waited for Redis sent", "sent", done, "waiting", len(rel)-done)
		if err != nil {
			return err
		}
	}
	if unc > 0 {
		return s.putBack(ctx, true)
	}
	return nil
}

// Count returns the legs held now on a server (scope "server") or for an org
// (scope "org"), across the cluster.
func (s *Store) Count(ctx context.Context, scope, name string) (int, error) {
	var p part
	switch scope {
	case "server":
		p = s.serverPart(name)
	case "org":
		p = s.orgPart(name)
	default:
		return 0, fmt.Errorf("count: unknown scope %q (want server or org)", scope)
	}
	n, err := s.rdb.HLen(ctx, p.holds()).Result()
	if err != nil {
		return 0, fmt.Errorf("count %s %s: %w: %w", scope, name, accounting.ErrUnavailable, err)
	}
	return int(n), nil
}

// Reconcile releases the holds on server whose channel is not in live and
// that are older than the reconcile minimum age, whichever node holds them.
func (s *Store) Reconcile(ctx context.Context, server string, live []string) (int, error) {
	alive := make(map[string]struct{}, len(live))
	for _, c := range live {
		alive[c] = struct{}{}
	}
	n, err := s.drop(ctx, server, max(s.cfg.ReconcileMinAge, 0), func(channel string) bool {
		_, up := alive[channel]
		return !up
	}, "released a counted leg: its channel is gone")
	if err != nil {
		return n, fmt.Errorf("reconcile %s: %w", server, err)
	}
	return n, nil
}

// ReleaseServer releases every leg counted on server, whichever node holds
// it: the operator's way out for a media server that will not come back
// (its channels cannot be checked), and what happens to the legs of a server
// removed from the plan.
func (s *Store) ReleaseServer(ctx context.Context, server string) (int, error) {
	n, err := s.drop(ctx, server, 0, func(string) bool { return true }, "released a counted leg: its server's legs were released")
	if err != nil {
		return n, fmt.Errorf("release the legs of %s: %w", server, err)
	}
	if n > 0 {
		s.log.Warn("released every counted leg of a media server", "server", server, "released", n)
	}
	return n, nil
}

// drop releases the holds on server whose channel gone says is gone and
// that are at least minAge old, with their org counts.
func (s *Store) drop(ctx context.Context, server string, minAge time.Duration, gone func(channel string) bool, why string) (int, error) {
	p := s.serverPart(server)
	recs, err := s.rdb.HGetAll(ctx, p.holds()).Result()
	if err != nil {
		return 0, err
	}
	var cand []any
	for id, rec := range recs {
		f := strings.Split(rec, "\x1f")
		if len(f) == 4 && gone(f[2]) {
			cand = append(cand, id, f[2])
		}
	}
	released := 0
	for len(cand) > 0 {
		batch := cand[:min(len(cand), 400)]
		cand = cand[len(batch):]
		args := append([]any{p.prefix, tombstoneTTL.Milliseconds(), minAge.Milliseconds()}, batch...)
		out, err := dropScript.Run(ctx, s.rdb, []string{p.holds()}, args...).StringSlice()
		if err != nil {
			return released, err
		}
		var orgs []*scriptCall
		for i := 0; i+1 < len(out); i += 2 {
			id, org := out[i], out[i+1]
			s.log.Info(why, "call", callOf(id), "hold", id, "server", server)
			if org != "" {
				orgs = append(orgs, s.releaseCall(s.orgPart(org), id, tombstoneTTL))
			}
			s.forget(id)
			released++
		}
		if _, err := s.runScripts(ctx, orgs...); err != nil {
			return released, err
		}
	}
	return released, nil
}

// forget drops what this node knew of a hold another path released; a
// later release of it by the engine is then a no-op.
func (s *Store) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.local[id]; ok {
		delete(s.local, id)
		s.tombstone(id)
	}
}

// isNil says whether err is Redis's "no value".
func isNil(err error) bool { return errors.Is(err, goredis.Nil) }
