package callmodel

import (
	"fmt"
	"strings"
	"time"
)

// EndpointKind is the kind of far end a Dial reaches.
type EndpointKind uint8

// Endpoint kinds. Local pairs (loopback, Local) are not endpoints: a front
// creates them with Tx.NewLocalPair and runs its own dialplan on the B half.
const (
	EndpointPhone EndpointKind = iota + 1 // a simulated phone registered on the dialing server
	EndpointPSTN                          // a number of the simulated PSTN
	EndpointTrunk                         // a call to another simulated server
)

// Endpoint is what a Dial reaches.
type Endpoint struct {
	Kind EndpointKind
	// Target is the phone extension, the PSTN number or, for a trunk, the
	// destination the receiving server sees.
	Target string
	// Server is the receiving server of a trunk call.
	Server string
}

// PhoneEndpoint reaches the phone ext registered on the dialing server.
func PhoneEndpoint(ext string) Endpoint { return Endpoint{Kind: EndpointPhone, Target: ext} }

// PSTNEndpoint reaches a number of the simulated PSTN.
func PSTNEndpoint(number string) Endpoint { return Endpoint{Kind: EndpointPSTN, Target: number} }

// TrunkEndpoint reaches dest on another server.
func TrunkEndpoint(server, dest string) Endpoint {
	return Endpoint{Kind: EndpointTrunk, Target: dest, Server: server}
}

func (e Endpoint) String() string {
	switch e.Kind {
	case EndpointPhone:
		return "phone/" + e.Target
	case EndpointPSTN:
		return "pstn/" + e.Target
	case EndpointTrunk:
		return "trunk/" + e.Server + "/" + e.Target
	}
	return ""
}

// Mode is how a simulated phone or PSTN number reacts to a call.
type Mode uint8

// Modes of a behaviour.
const (
	ModeAnswer       Mode = iota + 1 // rings for RingFor, then answers
	ModeRing                         // rings until the caller gives up
	ModeBusy                         // USER_BUSY (SIP 486)
	ModeReject                       // CALL_REJECTED (SIP 603)
	ModeUnregistered                 // not registered: the dial fails, nothing rings
	ModeFail                         // fails with Cause (default NORMAL_TEMPORARY_FAILURE)
)

var modeNames = map[Mode]string{
	ModeAnswer: "answer", ModeRing: "ring", ModeBusy: "busy",
	ModeReject: "reject", ModeUnregistered: "unregistered", ModeFail: "fail",
}

func (m Mode) String() string {
	if s, ok := modeNames[m]; ok {
		return s
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode reads a mode name (answer, ring, busy, reject, unregistered,
// fail).
func ParseMode(s string) (Mode, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	for m, n := range modeNames {
		if n == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown behaviour mode %q (want answer, ring, busy, reject, unregistered or fail)", s)
}

// Behaviour is the script a simulated phone or PSTN number follows when it
// is called.
type Behaviour struct {
	Mode Mode
	// RingFor is how long it rings before answering (ModeAnswer) or before
	// refusing (ModeBusy, ModeReject, ModeFail; zero refuses at once).
	RingFor time.Duration
	// HangupAfter, for ModeAnswer, hangs up that long after answering
	// (zero: stays up until the other side hangs up).
	HangupAfter time.Duration
	// Cause is the failure cause of ModeFail.
	Cause Cause
	// EarlyMedia rings with early media (183) instead of 180.
	EarlyMedia bool
}

// Answer answers after ringing for ring.
func Answer(ring time.Duration) Behaviour { return Behaviour{Mode: ModeAnswer, RingFor: ring} }

// RingForever never answers.
func RingForever() Behaviour { return Behaviour{Mode: ModeRing} }

// Busy refuses with USER_BUSY.
func Busy() Behaviour { return Behaviour{Mode: ModeBusy} }

// Reject refuses with CALL_REJECTED.
func Reject() Behaviour { return Behaviour{Mode: ModeReject} }

// Unregistered is a phone that is not registered.
func Unregistered() Behaviour { return Behaviour{Mode: ModeUnregistered} }

// Fail fails with cause.
func Fail(cause Cause) Behaviour { return Behaviour{Mode: ModeFail, Cause: cause} }

// refusal is the cause a refusing behaviour hangs up with.
func (b Behaviour) refusal() Cause {
	switch b.Mode {
	case ModeBusy:
		return CauseUserBusy
	case ModeReject:
		return CauseCallRejected
	case ModeUnregistered:
		return CauseUserNotRegistered
	case ModeFail:
		if b.Cause.IsZero() {
			return CauseNormalTemporaryFailure
		}
		return b.Cause
	}
	return CauseNone
}

// TargetBehaviour is the lab convention for the extensions of the targets
// context (../shared/traces/README.md): 1XX answers and hangs up after
// 30 s, 2XX is busy, 3XX rings for ever, 4XX fails, 5XX answers and stays
// up. It reports false for anything else.
//
// Each front plays the behaviour with its own product's dialplan
// applications on the B half of a local pair (FreeSWITCH: answer,
// sched_hangup, hangup USER_BUSY, ring_ready ...).
func TargetBehaviour(ext string) (Behaviour, bool) {
	if len(ext) != 3 || ext[1] < '0' || ext[1] > '9' || ext[2] < '0' || ext[2] > '9' {
		return Behaviour{}, false
	}
	switch ext[0] {
	case '1':
		return Behaviour{Mode: ModeAnswer, HangupAfter: 30 * time.Second}, true
	case '2':
		return Busy(), true
	case '3':
		return RingForever(), true
	case '4':
		return Fail(CauseNormalTemporaryFailure), true
	case '5':
		return Answer(0), true
	}
	return Behaviour{}, false
}

// Outcome is how a ring of a phone or PSTN number ended.
type Outcome string

// Ring outcomes.
const (
	OutcomeRinging   Outcome = "ringing"   // still ringing
	OutcomeAnswered  Outcome = "answered"  // answered (End: when the call ended)
	OutcomeBusy      Outcome = "busy"      // refused busy
	OutcomeRejected  Outcome = "rejected"  // refused (CALL_REJECTED)
	OutcomeFailed    Outcome = "failed"    // failed with another cause
	OutcomeCancelled Outcome = "cancelled" // the caller gave up while it rang
	OutcomeLost      Outcome = "lost"      // the server it rang on restarted
)

// Ring records one offer of a call to a simulated phone or PSTN number.
type Ring struct {
	Server string // the server that dialed it
	// Target is the phone extension or the PSTN number.
	Target   string
	PSTN     bool
	UUID     string // the channel that rang it
	Start    time.Time
	Answered time.Time
	End      time.Time // zero while in progress
	Outcome  Outcome
	Cause    Cause // the hangup cause of the ringing channel
	// Caller is the caller id presented to the phone.
	Caller  Party
	Vars    map[string]string // channel variables of the ringing channel
	Headers map[string]string // SIP headers it received
	// Notifies are the sipfrag statuses of the NOTIFYs the phone got about
	// a REFER it sent (100, 200, 503, 603), in order.
	Notifies []int
}

// Ended reports whether the ring is over.
func (r Ring) Ended() bool { return !r.End.IsZero() }

// CallerPlan scripts a simulated caller (a phone or the PSTN placing a call).
type CallerPlan struct {
	// HangupAfterAnswer hangs up that long after the call is answered
	// (zero: never by itself).
	HangupAfterAnswer time.Duration
	// GiveUpAfter hangs up (ORIGINATOR_CANCEL) if the call is not answered
	// within this time (zero: waits for ever).
	GiveUpAfter time.Duration
}

// InboundCall describes a call offered to a server.
type InboundCall struct {
	Origin      Origin // OriginPhone, OriginPSTN or OriginTrunk
	Caller      Party
	Destination string
	Context     string
	Headers     []Var
	// NetworkIP is the address of the sender (phone, PSTN gateway or the
	// sending server).
	NetworkIP string
	// FromServer names the sending server of a trunk call.
	FromServer string
	// PeerUUID is the sending channel of a trunk call.
	PeerUUID string
	// FromExt is the calling phone's extension (OriginPhone).
	FromExt string
	Plan    CallerPlan
	// UUID, when set, is used for the new channel.
	UUID string
}
