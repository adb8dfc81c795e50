package callmodel

import (
	"time"
)

// Kind is the product a simulated server imitates.
type Kind string

// The two kinds of media server.
const (
	FreeSWITCH Kind = "freeswitch"
	Asterisk   Kind = "asterisk"
)

// Direction is seen from the server: an inbound channel was offered to it
// (a phone calling, a trunk call arriving, the B half of a local pair), an
// outbound channel was created by it (originate, dial, bridge).
type Direction uint8

// Channel directions.
const (
	Inbound Direction = iota + 1
	Outbound
)

func (d Direction) String() string {
	switch d {
	case Inbound:
		return "inbound"
	case Outbound:
		return "outbound"
	}
	return "unknown"
}

// State is the protocol-neutral signalling state of a channel.
type State uint8

// Channel states, in the order a call normally goes through them.
const (
	StateDown    State = iota // created, nothing signalled yet
	StateRinging              // the far end alerts (SIP 180)
	StateEarly                // early media (SIP 183)
	StateUp                   // answered
	StateHangup               // hung up; Cause is set
)

func (s State) String() string {
	switch s {
	case StateDown:
		return "down"
	case StateRinging:
		return "ringing"
	case StateEarly:
		return "early"
	case StateUp:
		return "up"
	case StateHangup:
		return "hangup"
	}
	return "unknown"
}

// Party is a caller id: number and display name.
type Party struct {
	Name   string
	Number string
}

// PairLeg tells which half of a local pair (FreeSWITCH loopback/NXX-a and
// -b, Asterisk Local/NXX@ctx;1 and ;2) a channel is.
type PairLeg uint8

// Local pair halves. LegA is the half the creator controls, LegB runs the
// dialplan of the pair's context.
const (
	NotPaired PairLeg = iota
	LegA
	LegB
)

// Origin says who created a channel.
type Origin uint8

// Channel origins.
const (
	OriginFront Origin = iota // created by a front (originate, dial of a local pair)
	OriginPhone               // a simulated phone placing a call
	OriginPSTN                // a call from the simulated PSTN
	OriginTrunk               // a call arriving over a trunk from another server
	OriginDial                // an outbound leg to a phone, the PSTN or a trunk
)

// ChannelSpec describes a channel to create.
type ChannelSpec struct {
	UUID        string // generated when empty
	Name        string
	Direction   Direction
	Caller      Party
	Callee      Party
	Destination string
	Context     string
	Vars        []Var
	// Headers are the SIP headers the channel carries: on an outbound
	// channel the ones it sends (custom X- headers), on an inbound one the
	// ones it received.
	Headers []Var
	// NetworkIP is the address the call came from (inbound) or goes to.
	NetworkIP string
	// Ext is the front's private state for the channel (see Tx.Ext), in
	// place before the ChannelCreated event.
	Ext any
}

// Snapshot is an immutable copy of a channel at one moment. Every event
// carries one, so observers never touch live state.
type Snapshot struct {
	Server      string
	UUID        string
	Name        string
	Direction   Direction
	State       State
	Caller      Party
	Callee      Party
	Destination string
	Context     string
	Vars        Vars
	Headers     []Var
	NetworkIP   string

	Created    time.Time
	Ringing    time.Time // first ringing (zero if never)
	EarlyMedia time.Time // first early media
	Answered   time.Time
	Bridged    time.Time // last bridge
	Hungup     time.Time
	Cause      Cause

	Origin   Origin
	Endpoint Endpoint // for OriginDial: what was dialed

	// Partner is the other half of a local pair.
	Partner string
	Leg     PairLeg
	// BridgedTo is the uuid of the channel this one is bridged with.
	BridgedTo string
	// Peer is the channel at the other end of a trunk call.
	PeerServer string
	PeerUUID   string
}

// Up reports whether the channel has been answered and not hung up.
func (s *Snapshot) Up() bool { return s.State == StateUp }

// channel is the live state, owned by its server and only touched under the
// server's lock.
type channel struct {
	snap   Snapshot // fields other than Vars are the live values
	vars   varLog
	ext    any
	timers map[*chanTimer]struct{}
	watch  []*watcher
	remote *remoteParty // set for phone/PSTN legs
	caller *callerPlan  // set for simulated callers
	dead   bool         // hung up, waiting for the end of the transaction
	// bridgeInitiator marks the side that asked for its current bridge.
	bridgeInitiator bool
}

func (c *channel) snapshot() Snapshot {
	s := c.snap
	s.Vars = c.vars.snapshot()
	return s
}
