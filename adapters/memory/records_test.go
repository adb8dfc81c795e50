package memory

import (
	"testing"
	"time"
)

func TestParseFrom(t *testing.T) {
	at := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in       string
		ms, seq  uint64
		newOnly  bool
		wantFail bool
	}{
		{in: "", newOnly: true},
		{in: "$", newOnly: true},
		{in: "0"},
		{in: "all"},
		{in: "1700000000000-3", ms: 1700000000000, seq: 3},
		{in: "1700000000000", ms: 1700000000000},
		{in: at.Format(time.RFC3339), ms: uint64(at.UnixMilli() - 1), seq: ^uint64(0)},
		{in: "yesterday", wantFail: true},
		{in: "12-x", wantFail: true},
	} {
		ms, seq, newOnly, err := ParseFrom(c.in)
		if c.wantFail {
			if err == nil {
				t.Errorf("ParseFrom(%q): no error", c.in)
			}
			continue
		}
		if err != nil || ms != c.ms || seq != c.seq || newOnly != c.newOnly {
			t.Errorf("ParseFrom(%q) = %d, %d, %v, %v; want %d, %d, %v", c.in, ms, seq, newOnly, err, c.ms, c.seq, c.newOnly)
		}
	}
}
