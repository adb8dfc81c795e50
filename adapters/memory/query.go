package memory

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/callctl/callctl/controller"
)

// Query returns the kept records that match, newest first, at most limit
// (0: all); since and until are left to match (all records are in memory).
func (s *Store) Query(ctx context.Context, since, until time.Time, match func(*controller.Record) bool, limit int) ([]controller.Record, error) {
	r := &s.rec
	r.mu.Lock()
	ents := append([]entry(nil), r.ents...)
	r.mu.Unlock()
	var out []controller.Record
	for i := len(ents) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		var rec controller.Record
		if err := json.Unmarshal(ents[i].rec, &rec); err != nil {
			return nil, fmt.Errorf("record %d-%d: %w", ents[i].id.ms, ents[i].id.seq, err)
		}
		if match(&rec) {
			out = append(out, rec)
		}
	}
	return out, nil
}

// ReleaseServer releases every counted leg on server: the operator's way out
// for a media server that will not come back. Each is tombstoned, so a late
// release or a re-publication cannot count it again.
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
		s.log.Warn("counted leg released by an operator", "call", callOf(id), "hold", id, "server", server)
		n++
	}
	return n, nil
}
