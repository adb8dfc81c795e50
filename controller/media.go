package controller

import (
	"context"
	"errors"
	"time"

	"github.com/callctl/callctl/controller/hunt"
	"github.com/callctl/callctl/controller/routing"
)

// The interfaces below are all the engine knows of media servers. Adapters
// (FreeSWITCH over the Event Socket, Asterisk over ARI) implement them; no
// protocol word appears here.

// Call is one call a media server handed to callctl. The engine owns it from
// Handle until it ends: every method may block on the network and takes a
// context; none may panic on what the media server sends.
type Call interface {
	// ID is the media server's id of the caller's channel.
	ID() string
	// Info is what the media server told about the call when it arrived.
	Info() CallInfo
	// Dial rings one target and, if it answers, connects it to the caller.
	// It returns when the target answered (the Leg is then live), or when the
	// attempt is over without answer; in that case no channel of the attempt
	// remains when it returns, and no Leg is returned (nor with an error). Cancelling ctx (the caller left, or the engine
	// gave up) cancels the ringing leg at once.
	Dial(ctx context.Context, spec DialSpec) (Leg, DialResult, error)
	// Reject ends an unanswered call with a cause (SIP code and Q.850).
	Reject(ctx context.Context, cause routing.Cause) error
	// Hangup ends the call (every leg of it) with a cause.
	Hangup(ctx context.Context, cause routing.Cause) error
	// Handoff returns the call to the media server's own dialplan with the
	// dialed string (feature codes). The call stays callctl's: Context stays
	// live until the channel ends (or moves on to a new owner, a transfer
	// back to callctl), so that its counted legs are released only then.
	Handoff(ctx context.Context, dialed string) error
	// Context is done once the caller's channel is gone (the adapter cancels
	// it from the hangup event, so the engine needs no goroutine to watch).
	Context() context.Context
	// EndCause is the media server's hangup cause once the call is gone.
	EndCause() string
}

// HuntDialer is implemented by calls whose media server can ring several
// targets one after the other by itself (FreeSWITCH: one bridge with '|'
// failover), with no round trip to callctl between two of them.
type HuntDialer interface {
	// DialHunt rings specs in order, each for its Timeout, until one
	// answers. done is called on the caller's goroutine, in order, once each
	// target rung is over (its channel gone) or answered, with its index and
	// result, whose Sent and At bound that target's own ring; a target the
	// hunt never reached gets no call. It returns the index of the target
	// that answered and its live Leg, or -1. Cancelling ctx ends the hunt:
	// the ringing target is cancelled and no further one rings (the media
	// server may end the caller's channel for that). An error wrapping
	// ErrDialOneByOne means nothing rang and the targets must be dialed one
	// by one.
	DialHunt(ctx context.Context, specs []DialSpec, done func(i int, res DialResult)) (Leg, int, error)
}

// ErrDialOneByOne is wrapped by DialHunt when it cannot ring the targets
// in one go (before anything rang).
var ErrDialOneByOne = errors.New("targets must be dialed one by one")

// TransferNoter is implemented by calls whose media server can report,
// after the call was connected, that a transfer made it carry another
// call's party (an attended transfer linking the two calls): Transferred
// is closed then, and TransferNote says which.
type TransferNoter interface {
	Transferred() <-chan struct{}
	TransferNote() TransferNote
}

// TransferNote describes a transfer that made a connected call carry
// another call's party.
type TransferNote struct {
	Kind routing.Transfer
	// FromCall is the call (its channel id) the party came from; By the
	// user who transferred it when the media server tells ("": the phone
	// FromCall was connected to).
	FromCall string
	By       string
}

// CallInfo is what the engine needs to route a call.
type CallInfo struct {
	Server string
	// Source is the signalling source identity (address, PJSIP endpoint).
	Source     string
	Caller     string
	CallerName string
	Domain     string
	// MarkOrg is the org mark a trunk call carries (trusted only from trunks).
	MarkOrg string
	Dialed  string
	// Transfer is set when the call reaches callctl again because it was
	// transferred: by a user (blind, attended), or by the media server
	// itself with no user (ivr: an IVR, uuid_transfer, an ARI redirect).
	Transfer routing.Transfer
	// Previous is the destination the call had before the transfer
	// (FreeSWITCH's Caller-RDNIS): an IVR transfer of a call callctl does
	// not know routes in the org of that DID.
	Previous       string
	OriginalCaller string
	OriginalName   string
	// TransferredFrom is the call (its channel id) this transfer took the
	// party from, when it was another channel's (Asterisk's transfers bring
	// the party back as a new channel); empty: the same channel.
	TransferredFrom string
	// ConsultationOf is the channel that originated this call itself, as
	// the media server names it: a phone's leg consulting someone before an
	// attended transfer (FreeSWITCH's att_xfer originates from the phone's
	// channel). The engine believes it only for a leg it connected to a user
	// itself.
	ConsultationOf string
	// Withheld: the caller asked for its number to be withheld (SIP
	// Privacy: id, when the media server tells).
	Withheld bool
	// Start is when the media server created the channel.
	Start time.Time
	// Arrived is when the event handing the call to callctl was read: the
	// first dial step is timed from it (zero: from when the engine takes
	// the call).
	Arrived time.Time
}

// DialSpec says what to ring.
type DialSpec struct {
	// LegID is the id the new leg gets (callctl chooses it so that events of
	// the leg are recognised from the first one).
	LegID string
	// Target is the dial string: an endpoint from the plan, or a trunk
	// template filled with a destination that passed provision.ValidDialed.
	Target         string
	CallerIDNumber string
	CallerIDName   string
	// Withheld: present the caller as withheld (presentation restricted,
	// no number, "Anonymous"); CallerIDNumber and CallerIDName are empty.
	Withheld bool
	// Timeout is the ring time; 0 means the media server's default.
	Timeout time.Duration
	// MarkOrg is carried to the other server on trunk calls.
	MarkOrg string
	// Trunk says the target is reached over a trunk (to a server or the PSTN).
	Trunk bool
}

// BackstopSeconds is the ring limit to give the media server itself, in the
// whole seconds media servers count: past Timeout, so that callctl's own
// timer (the engine cancels the attempt at Timeout) ends the ring and the
// server's only catches an attempt callctl lost track of. 0 when Timeout is.
func (s DialSpec) BackstopSeconds() int {
	if s.Timeout <= 0 {
		return 0
	}
	return int((s.Timeout+time.Second-1)/time.Second) + 2
}

// DialResult is the outcome of one attempt.
type DialResult struct {
	Outcome hunt.Outcome
	// Cause is the media server's cause (USER_BUSY, 17, BUSY, ...).
	Cause string
	// Sent is when the request that rings the target left for the media
	// server, At when the event telling the outcome (or the answer)
	// reached callctl; zero when there was none. The engine times its dial
	// steps with them.
	Sent, At time.Time
}

// Leg is an answered target connected to the caller.
type Leg interface {
	ID() string
	// Ended is closed once the leg's channel is gone.
	Ended() <-chan struct{}
}

// MediaServer is what the engine asks of a media server outside a call.
type MediaServer interface {
	Name() string
	// Registered says whether the endpoint can be rung now (a phone that is
	// not registered is skipped without ringing).
	Registered(ctx context.Context, endpoint string) (bool, error)
	// LiveChannels lists the ids of the channels up on the server, to
	// reconcile counted legs.
	LiveChannels(ctx context.Context) ([]string, error)
}

// ErrCallGone is returned by Call methods when the caller's channel no longer
// exists.
var ErrCallGone = errors.New("call is gone")

// ErrCallJoined is returned by Hangup and Reject when the media server
// joined the caller's channel to another call by itself (an attended
// transfer bridged it with the transfer target): it is not callctl's to
// hang up, and its counted legs stay counted until Context is done.
var ErrCallJoined = errors.New("call joined to another by the media server")

// CauseAttendedTransfer is the end cause (EndCause) of a call whose caller
// was replaced by an attended transfer (a REFER with Replaces): its
// connected leg lives on, joined to the transferred party.
const CauseAttendedTransfer = "ATTENDED_TRANSFER"
