package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/callctl/callctl/controller"
)

// maxScan bounds how many stream entries one query reads: a filter that
// matches little must not read a million records per request.
const maxScan = 200_000

// Query returns the records of the stream that match, newest first, at most
// limit (0: 100). since (zero: open) bounds the stream ids read, which are
// the times the records were written (a call's end, after its start); until
// is left to match, since a call that started before it may end after.
func (s *Store) Query(ctx context.Context, since, until time.Time, match func(*controller.Record) bool, limit int) ([]controller.Record, error) {
	if limit <= 0 {
		limit = 100
	}
	end, start := "+", "-"
	if !since.IsZero() {
		start = strconv.FormatInt(since.UnixMilli(), 10)
	}
	var out []controller.Record
	scanned := 0
	for scanned < maxScan && len(out) < limit {
		msgs, err := s.rdb.XRevRangeN(ctx, s.rec.key, end, start, 500).Result()
		if err != nil {
			return nil, fmt.Errorf("read call records: %w", err)
		}
		for _, m := range msgs {
			raw, _ := m.Values["record"].(string)
			var r controller.Record
			if json.Unmarshal([]byte(raw), &r) == nil && match(&r) {
				out = append(out, r)
				if len(out) == limit {
					break
				}
			}
		}
		scanned += len(msgs)
		if len(msgs) < 500 {
			break
		}
		end = "(" + msgs[len(msgs)-1].ID
	}
	return out, nil
}
