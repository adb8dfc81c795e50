// Package hunt is sequential group dialing (SPEC §3, seed 002) as a state
// machine: it is told the outcome of each attempt and says what to ring next.
// It does no I/O and keeps no clock of its own; the engine feeds it.
package hunt

import (
	"encoding/json"
	"fmt"
	"time"
)

// Outcome of one dial attempt.
type Outcome uint8

// Outcomes. Everything but Answered moves the hunt to the next member at once.
const (
	Pending       Outcome = iota
	Answered              // bridged: the hunt stops
	Busy                  // USER_BUSY
	NoAnswer              // rang for the ring timeout
	Rejected              // the member declined (CALL_REJECTED)
	Unreachable           // unreachable, out of order, no route
	NotRegistered         // skipped without ringing
	Failed                // anything else that went wrong
	Congested             // a channel limit refused the leg (SPEC §5)
	Cancelled             // the caller hung up while it rang
)

var outcomeNames = [...]string{"pending", "answered", "busy", "no-answer", "rejected", "unreachable",
	"not-registered", "failed", "congested", "cancelled"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// MarshalText writes the outcome's name.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// ParseOutcome reads an outcome's name.
func ParseOutcome(s string) (Outcome, error) {
	for i, n := range outcomeNames {
		if n == s {
			return Outcome(i), nil
		}
	}
	return Pending, fmt.Errorf("unknown outcome %q", s)
}

// UnmarshalText reads an outcome's name.
func (o *Outcome) UnmarshalText(b []byte) error {
	v, err := ParseOutcome(string(b))
	*o = v
	return err
}

// Attempt is one member rung (or skipped), for the call record.
type Attempt struct {
	Target  string    `json:"target"`
	Server  string    `json:"server,omitempty"`
	Outcome Outcome   `json:"outcome"`
	Cause   string    `json:"cause,omitempty"`
	Start   time.Time `json:"start"`
	// Ring is how long it rang; records carry it as ring_ms.
	Ring time.Duration `json:"-"`
	// Forward says the target was rung because the call was forwarded
	// (forward-noanswer, forward-busy, forward-limit, or fallback: a group
	// nobody answered went to its fallback), ForwardedBy whose forward it
	// was (a user, a limit: "server srv12", or the fallback's org).
	Forward     string `json:"forward,omitempty"`
	ForwardedBy string `json:"forwarded_by,omitempty"`
}

// attemptJSON is an Attempt as records carry it: the ring time in
// milliseconds.
type attemptJSON struct {
	Target  string    `json:"target"`
	Server  string    `json:"server,omitempty"`
	Outcome Outcome   `json:"outcome"`
	Cause   string    `json:"cause,omitempty"`
	Start   time.Time `json:"start"`
	RingMS  int64     `json:"ring_ms"`
	Forward string    `json:"forward,omitempty"`
	By      string    `json:"forwarded_by,omitempty"`
}

// MarshalJSON writes the ring time in milliseconds (ring_ms).
func (a Attempt) MarshalJSON() ([]byte, error) {
	return json.Marshal(attemptJSON{Target: a.Target, Server: a.Server, Outcome: a.Outcome, Cause: a.Cause, Start: a.Start,
		RingMS: a.Ring.Milliseconds(), Forward: a.Forward, By: a.ForwardedBy})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (a *Attempt) UnmarshalJSON(b []byte) error {
	var j attemptJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*a = Attempt{Target: j.Target, Server: j.Server, Outcome: j.Outcome, Cause: j.Cause, Start: j.Start,
		Ring: time.Duration(j.RingMS) * time.Millisecond, Forward: j.Forward, ForwardedBy: j.By}
	return nil
}

// State of a hunt.
type State uint8

// States.
const (
	Ringing   State = iota // a member is being rung (or about to be)
	Connected              // a member answered
	Exhausted              // nobody answered
	Aborted                // the caller hung up
)

func (s State) String() string {
	return [...]string{"ringing", "connected", "exhausted", "aborted"}[s]
}

// Hunt walks an ordered list of members once each.
type Hunt struct {
	n     int
	pos   int
	state State
}

// New starts a hunt over n members (already in ringing order and free of
// repeats: the routing core applied the cycle guard).
func New(n int) *Hunt {
	h := &Hunt{n: n}
	if n == 0 {
		h.state = Exhausted
	}
	return h
}

// State is where the hunt is.
func (h *Hunt) State() State { return h.state }

// Next returns the index of the member to ring now, and false when the hunt
// is over (connected, exhausted or aborted).
func (h *Hunt) Next() (int, bool) {
	if h.state != Ringing || h.pos >= h.n {
		return 0, false
	}
	return h.pos, true
}

// Report records the outcome of the current member and moves on.
func (h *Hunt) Report(a Attempt) State {
	if h.state != Ringing {
		return h.state
	}
	switch a.Outcome {
	case Answered:
		h.state = Connected
	case Cancelled:
		h.state = Aborted
	default:
		h.pos++
		if h.pos >= h.n {
			h.state = Exhausted
		}
	}
	return h.state
}

// Abort ends the hunt because the caller left.
func (h *Hunt) Abort() {
	if h.state == Ringing {
		h.state = Aborted
	}
}
