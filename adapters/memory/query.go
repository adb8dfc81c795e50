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
