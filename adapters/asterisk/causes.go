package asterisk

import (
	"strconv"

	"github.com/callctl/callctl/controller/hunt"
)

// Q.850 causes as Asterisk reports them in ChannelDestroyed.cause.
const (
	causeUnknown       = 0
	causeUnallocated   = 1
	causeNoRoute       = 3
	causeNormal        = 16
	causeBusy          = 17
	causeNoUserResp    = 18
	causeNoAnswer      = 19
	causeAbsent        = 20
	causeRejected      = 21
	causeOutOfOrder    = 27
	causeCongestion    = 34
	causeNetworkDown   = 38
	causeTempFailure   = 41
	causeSwitchCongest = 42
	causeChanUnavail   = 44
)

// causeNames are the names callctl writes in records for the causes it
// meets; anything else is written as its number.
var causeNames = map[int]string{
	causeUnallocated:   "UNALLOCATED_NUMBER",
	causeNoRoute:       "NO_ROUTE_DESTINATION",
	causeNormal:        "NORMAL_CLEARING",
	causeBusy:          "USER_BUSY",
	causeNoUserResp:    "NO_USER_RESPONSE",
	causeNoAnswer:      "NO_ANSWER",
	causeAbsent:        "SUBSCRIBER_ABSENT",
	causeRejected:      "CALL_REJECTED",
	causeOutOfOrder:    "DESTINATION_OUT_OF_ORDER",
	causeCongestion:    "NORMAL_CIRCUIT_CONGESTION",
	causeNetworkDown:   "NETWORK_OUT_OF_ORDER",
	causeTempFailure:   "NORMAL_TEMPORARY_FAILURE",
	causeSwitchCongest: "SWITCH_CONGESTION",
	causeChanUnavail:   "REQUESTED_CHAN_UNAVAIL",
}

// causeName is the record name of a Q.850 cause.
func causeName(c int) string {
	if n, ok := causeNames[c]; ok {
		return n
	}
	return "CAUSE_" + strconv.Itoa(c)
}

// outcomeOf maps how an unanswered attempt ended to a hunt outcome.
//
// cause is ChannelDestroyed.cause of the channel callctl originated. With
// Local channels Asterisk destroys that half with cause 0 when the callee
// was busy or congested (traces b and j): then Dial.dialstatus says what
// happened, and failing that, the cause of the ;2 half (cause2).
func outcomeOf(cause int, dialStatus string, cause2 int) (hunt.Outcome, string) {
	if o, ok := outcomeOfCause(cause); ok {
		return o, causeName(cause)
	}
	switch dialStatus {
	case "BUSY":
		return hunt.Busy, "BUSY"
	case "CONGESTION":
		return hunt.Congested, "CONGESTION"
	case "NOANSWER":
		return hunt.NoAnswer, "NOANSWER"
	case "CHANUNAVAIL":
		return hunt.Unreachable, "CHANUNAVAIL"
	}
	if o, ok := outcomeOfCause(cause2); ok {
		return o, causeName(cause2)
	}
	if dialStatus != "" {
		return hunt.Failed, dialStatus
	}
	return hunt.Failed, causeName(cause)
}

func outcomeOfCause(c int) (hunt.Outcome, bool) {
	switch c {
	case causeBusy:
		return hunt.Busy, true
	case causeNoAnswer, causeNoUserResp:
		return hunt.NoAnswer, true
	case causeRejected:
		return hunt.Rejected, true
	case causeAbsent, causeNoRoute, causeUnallocated, causeOutOfOrder, causeChanUnavail:
		return hunt.Unreachable, true
	case causeCongestion, causeSwitchCongest:
		return hunt.Congested, true
	case causeNetworkDown, causeTempFailure:
		return hunt.Failed, true
	}
	return hunt.Pending, false
}
