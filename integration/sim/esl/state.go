package esl

import (
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// FreeSWITCH channel states (switch_channel_state_t).
const (
	csNew = iota
	csInit
	csRouting
	csSoftExecute
	csExecute
	csExchangeMedia
	csPark
	csConsumeMedia
	csHibernate
	csReset
	csHangup
	csReporting
	csDestroy
	csNone
)

var csNames = [...]string{
	"CS_NEW", "CS_INIT", "CS_ROUTING", "CS_SOFT_EXECUTE", "CS_EXECUTE",
	"CS_EXCHANGE_MEDIA", "CS_PARK", "CS_CONSUME_MEDIA", "CS_HIBERNATE",
	"CS_RESET", "CS_HANGUP", "CS_REPORTING", "CS_DESTROY", "CS_NONE",
}

// FreeSWITCH call states (switch_channel_callstate_t) as printed.
const (
	callDown     = "DOWN"
	callDialing  = "DIALING"
	callRinging  = "RINGING"
	callEarly    = "EARLY"
	callActive   = "ACTIVE"
	callHeld     = "HELD"
	callRingWait = "RING_WAIT"
	callHangup   = "HANGUP"
)

var callStateNumbers = map[string]int{
	callDown: 0, callDialing: 1, callRinging: 2, callEarly: 3, callActive: 4,
	callHeld: 5, callRingWait: 6, callHangup: 7,
}

// codec is what the Channel-Read/Write-Codec-* headers say.
type codec struct {
	name    string
	rate    string
	bitrate string
}

var (
	codecL16  = codec{"L16", "8000", "128000"}
	codecPCMU = codec{"PCMU", "8000", "64000"}
)

// otherProfile is the copy of the other leg's caller profile that
// FreeSWITCH attaches to a channel once it is part of an originate or a
// bridge (the Other-Leg-* headers).
type otherProfile struct {
	typ  string // "originator" or "originatee"
	snap callmodel.Snapshot
	view view
}

// view is everything about a channel that FreeSWITCH prints in its events
// beyond the model's snapshot. It is copied into every event as the event
// is produced, so later changes do not leak into earlier events.
type view struct {
	cs         int
	csNumber   int
	callState  string
	hit        bool
	callUUID   string
	codec      codec
	source     string // Caller-Source
	dialplan   string // Caller-Dialplan ("" leaves it out)
	username   string
	networkIP  string
	ani        string
	origCaller callmodel.Party
	rdnis      string
	xferSource string
	profileIdx int
	profileAt  time.Time
	xferAt     time.Time
	other      *otherProfile
}

// answerState is the Answer-State header.
func answerState(s callmodel.State) string {
	switch s {
	case callmodel.StateEarly:
		return "early"
	case callmodel.StateUp:
		return "answered"
	case callmodel.StateHangup:
		return "hangup"
	}
	return "ringing"
}
