// Package accounting says which legs of a call count against channel limits
// (SPEC §5) and defines the Limiter that holds the counts.
//
// A leg that crosses a server's edge counts 1 on that server: an external
// (PSTN) leg, or an inter-server trunk leg in either direction. Legs between two
// phones of the same server count 0. Each counted leg also counts against the
// org on whose side it is, for the per-org limits.
package accounting

import (
	"context"
	"errors"
	"strconv"
	"strings"
)

// Kind is why a leg counts.
type Kind uint8

// Leg kinds.
const (
	PSTNIn Kind = iota + 1
	PSTNOut
	TrunkIn
	TrunkOut
)

func (k Kind) String() string {
	switch k {
	case PSTNIn:
		return "pstn-in"
	case PSTNOut:
		return "pstn-out"
	case TrunkIn:
		return "trunk-in"
	case TrunkOut:
		return "trunk-out"
	}
	return "none"
}

// MarshalText writes the kind's name.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a kind's name (records read back from a stream).
func (k *Kind) UnmarshalText(b []byte) error {
	for c := PSTNIn; c <= TrunkOut; c++ {
		if c.String() == string(b) {
			*k = c
			return nil
		}
	}
	return errors.New("unknown leg kind " + strconv.Quote(string(b)))
}

// Leg is one counted leg: on which server, for which org, and why.
type Leg struct {
	Server string `json:"server"`
	Org    string `json:"org"`
	Kind   Kind   `json:"kind"`
	// Remote legs are counted by the call that the leg creates on the other
	// server (the trunk call arriving there), not by this one; they are listed
	// so a decision shows every leg the call will cost.
	Remote bool `json:"remote,omitempty"`
}

// Legs is the set of legs a decision counts. The first few live in an array,
// which keeps routing free of allocations for every call the plan can
// produce today; any more go to a slice, so no counted leg is ever dropped.
type Legs struct {
	n    uint8
	legs [3]Leg
	more []Leg
}

// Add appends a leg.
func (l *Legs) Add(g Leg) {
	if int(l.n) < len(l.legs) {
		l.legs[l.n] = g
		l.n++
		return
	}
	// The full slice expression makes a copy of Legs that adds its own leg
	// reallocate instead of writing into the array the original shares.
	l.more = append(l.more[:len(l.more):len(l.more)], g)
}

// Len is the number of legs.
func (l *Legs) Len() int { return int(l.n) + len(l.more) }

// At returns leg i.
func (l *Legs) At(i int) Leg {
	if i < len(l.legs) {
		if i >= int(l.n) {
			panic("accounting: leg index " + itoa(i) + " out of range " + itoa(l.Len()))
		}
		return l.legs[i]
	}
	return l.more[i-len(l.legs)]
}

// Slice returns the legs as a slice (allocates; for output, not hot paths).
func (l Legs) Slice() []Leg {
	out := make([]Leg, 0, l.Len())
	out = append(out, l.legs[:l.n]...)
	return append(out, l.more...)
}

// Count returns the number of legs counted on server, local and remote.
func (l *Legs) Count(server string) int {
	n := 0
	for i := 0; i < l.Len(); i++ {
		if l.At(i).Server == server {
			n++
		}
	}
	return n
}

func (l Legs) String() string {
	var b strings.Builder
	for i := 0; i < l.Len(); i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		g := l.At(i)
		b.WriteString(g.Server)
		b.WriteString(":")
		b.WriteString(g.Kind.String())
		b.WriteString("(")
		b.WriteString(g.Org)
		b.WriteString(")")
		if g.Remote {
			b.WriteString("[counted there]")
		}
	}
	return b.String()
}

// ErrLimit is returned by Acquire when a server or org is at its limit.
var ErrLimit = errors.New("channel limit reached")

// ErrUnavailable is returned when the counts cannot be reached (the shared
// store is down) and the limiter fails closed.
var ErrUnavailable = errors.New("channel counts unavailable")

// LimitError says which limit refused a leg.
type LimitError struct {
	Scope string // "server" or "org"
	Name  string
	Limit int
}

func (e *LimitError) Error() string {
	return e.Scope + " " + e.Name + " is at its channel limit of " + itoa(e.Limit)
}

// Unwrap lets errors.Is(err, ErrLimit) hold.
func (e *LimitError) Unwrap() error { return ErrLimit }

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// Hold is one acquired leg, identified so a release is idempotent.
type Hold struct {
	// ID is unique per leg (the call id plus the leg's own id).
	ID  string
	Leg Leg
	// Channel is the media server's id of the channel the leg is, so that a
	// hold whose node died can be released as soon as the media server
	// confirms the channel is gone (reconciliation).
	Channel string
	Limit   Limits
}

// Limits are the limits in force when a leg is acquired (0 = unlimited).
type Limits struct {
	Server int
	Org    int
}

// Limiter counts legs against the limits, exactly, across every node of a
// cluster. Acquire is atomic with the limit check; Release is idempotent (a
// repeated release, or one that arrives before its acquire, never corrupts a
// count).
type Limiter interface {
	Acquire(ctx context.Context, h Hold) error
	Release(ctx context.Context, id string) error
	// Count returns the legs held now on a server and for an org.
	Count(ctx context.Context, scope, name string) (int, error)
}
