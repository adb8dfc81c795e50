package memory

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/callctl/callctl/controller"
)

// records is a capped in-memory log of call records.
type records struct {
	mu   sync.Mutex
	cap  int
	ents []entry // oldest first
	last id
	// added is closed and replaced on every append, waking followers.
	added chan struct{}
}

type entry struct {
	id  id
	rec []byte // JSON, so a follower never shares the writer's slices
}

// id mirrors a Redis stream id: milliseconds and a sequence within them.
type id struct{ ms, seq uint64 }

func (a id) less(b id) bool { return a.ms < b.ms || a.ms == b.ms && a.seq < b.seq }

func (r *records) init(n int) {
	r.cap = n
	r.added = make(chan struct{})
}

// Write appends a finished call's record, dropping the oldest beyond the cap.
func (s *Store) Write(ctx context.Context, rec *controller.Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("record %s: %w", rec.CallID, err)
	}
	ms := uint64(s.opt.Now().UnixMilli())
	r := &s.rec
	r.mu.Lock()
	defer r.mu.Unlock()
	nid := id{ms: ms}
	if !r.last.less(nid) {
		nid = id{ms: r.last.ms, seq: r.last.seq + 1}
	}
	r.last = nid
	r.ents = append(r.ents, entry{id: nid, rec: b})
	if over := len(r.ents) - r.cap; over > 0 {
		r.ents = append(r.ents[:0], r.ents[over:]...)
	}
	close(r.added)
	r.added = make(chan struct{})
	return nil
}

// Flush returns at once: Write stores synchronously.
func (s *Store) Flush(ctx context.Context) error { return nil }

// ParseFrom reads Follow's start position: "0" (or "all") from the oldest
// record kept, "" or "$" only records written from now on, a stream id
// "<ms>-<seq>" after that id, or an RFC 3339 time after that time.
func ParseFrom(from string) (ms, seq uint64, newOnly bool, err error) {
	switch from {
	case "", "$":
		return 0, 0, true, nil
	case "0", "all":
		return 0, 0, false, nil
	}
	if t, terr := time.Parse(time.RFC3339Nano, from); terr == nil {
		ms := t.UnixMilli()
		if ms < 1 {
			return 0, 0, false, nil
		}
		// After every record of the millisecond before t.
		return uint64(ms - 1), ^uint64(0), false, nil
	}
	a, b, ok := strings.Cut(from, "-")
	ms, err = strconv.ParseUint(a, 10, 64)
	if err != nil {
		return 0, 0, false, fmt.Errorf("follow from %q: want 0, $, a stream id or an RFC 3339 time", from)
	}
	if ok {
		if seq, err = strconv.ParseUint(b, 10, 64); err != nil {
			return 0, 0, false, fmt.Errorf("follow from %q: bad sequence: %w", from, err)
		}
	}
	return ms, seq, false, nil
}

// Follow calls fn with each record after from (see ParseFrom), in order,
// then waits for new ones, until ctx ends (it returns nil then) or fn
// returns an error (returned as is).
func (s *Store) Follow(ctx context.Context, from string, fn func(controller.Record) error) error {
	ms, seq, newOnly, err := ParseFrom(from)
	if err != nil {
		return err
	}
	r := &s.rec
	r.mu.Lock()
	after := id{ms: ms, seq: seq}
	if newOnly {
		after = r.last
	}
	r.mu.Unlock()
	for {
		r.mu.Lock()
		var batch []entry
		for _, e := range r.ents {
			if after.less(e.id) {
				batch = append(batch, e)
			}
		}
		wake := r.added
		r.mu.Unlock()
		for _, e := range batch {
			var rec controller.Record
			if err := json.Unmarshal(e.rec, &rec); err != nil {
				return fmt.Errorf("follow: record %d-%d: %w", e.id.ms, e.id.seq, err)
			}
			if err := fn(rec); err != nil {
				return err
			}
			after = e.id
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		}
	}
}
