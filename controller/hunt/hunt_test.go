package hunt_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/callctl/callctl/controller/hunt"
)

func TestHuntMovesOnUntilAnswered(t *testing.T) {
	h := hunt.New(4)
	outcomes := []hunt.Outcome{hunt.Busy, hunt.NotRegistered, hunt.NoAnswer, hunt.Answered}
	for want, o := range outcomes {
		i, ok := h.Next()
		if !ok || i != want {
			t.Fatalf("Next = %d %v, want %d", i, ok, want)
		}
		h.Report(hunt.Attempt{Target: string(rune('a' + i)), Outcome: o})
	}
	if h.State() != hunt.Connected {
		t.Fatalf("state %s, want connected", h.State())
	}
	if _, ok := h.Next(); ok {
		t.Fatal("rang on after an answer")
	}
}

func TestNobodyAnswers(t *testing.T) {
	h := hunt.New(2)
	h.Report(hunt.Attempt{Outcome: hunt.Rejected})
	if st := h.Report(hunt.Attempt{Outcome: hunt.Failed}); st != hunt.Exhausted {
		t.Fatalf("state %s, want exhausted", st)
	}
	if _, ok := h.Next(); ok {
		t.Fatal("Next after exhaustion")
	}
}

func TestCallerLeaves(t *testing.T) {
	h := hunt.New(3)
	h.Report(hunt.Attempt{Outcome: hunt.Busy})
	if st := h.Report(hunt.Attempt{Outcome: hunt.Cancelled}); st != hunt.Aborted {
		t.Fatalf("state %s, want aborted", st)
	}
	if _, ok := h.Next(); ok {
		t.Fatal("a member rang after the caller left")
	}
	// Reports after the end change nothing.
	h.Report(hunt.Attempt{Outcome: hunt.Answered})
	if _, ok := h.Next(); h.State() != hunt.Aborted || ok {
		t.Fatalf("late report changed the hunt: %s", h.State())
	}
	h2 := hunt.New(0)
	if h2.State() != hunt.Exhausted {
		t.Fatal("empty hunt should be exhausted")
	}
}

func TestOutcomeNames(t *testing.T) {
	for o := hunt.Pending; o <= hunt.Cancelled; o++ {
		b, _ := o.MarshalText()
		var back hunt.Outcome
		if err := back.UnmarshalText(b); err != nil || back != o {
			t.Errorf("%s does not round-trip: %v", o, err)
		}
	}
}

// Records carry ring times in milliseconds, and read them back.
func TestAttemptJSONInMilliseconds(t *testing.T) {
	a := hunt.Attempt{Target: "77721403", Outcome: hunt.Busy, Ring: 2500 * time.Millisecond}
	b, err := json.Marshal(a)
	if err != nil || !strings.Contains(string(b), `"ring_ms":2500`) || strings.Contains(string(b), "ring_ns") {
		t.Fatalf("%s %v", b, err)
	}
	var back hunt.Attempt
	if err := json.Unmarshal(b, &back); err != nil || back.Ring != a.Ring || back.Outcome != hunt.Busy {
		t.Fatalf("%+v %v", back, err)
	}
}
