package controller

import (
	"strconv"

	"github.com/callctl/callctl/controller/hunt"
)

// How a dial attempt ended, read the same way whatever the media server:
// one event gives one record on every kind. Media servers report Q.850
// hangup causes, by name (USER_BUSY) or by number (17), and a dial status
// (BUSY, NOANSWER, ...); the adapters choose which of their signals to
// trust for an attempt, and read each through the functions below.

// AnswerCause is the cause recorded for an attempt that was answered.
const AnswerCause = "ANSWER"

// q850 names every Q.850 cause by the name records carry (the name
// FreeSWITCH gives it), and says what it means for a dial attempt.
var q850 = [...]struct {
	code    int
	name    string
	outcome hunt.Outcome // Pending: the cause alone does not say
}{
	{0, "NONE", hunt.Pending},
	{1, "UNALLOCATED_NUMBER", hunt.Unreachable},
	{2, "NO_ROUTE_TRANSIT_NET", hunt.Unreachable},
	{3, "NO_ROUTE_DESTINATION", hunt.Unreachable},
	{6, "CHANNEL_UNACCEPTABLE", hunt.Failed},
	{7, "CALL_AWARDED_DELIVERED", hunt.Failed},
	// A normal clearing of a channel that was never answered says nothing
	// of why: the dial status does.
	{16, "NORMAL_CLEARING", hunt.Pending},
	{17, "USER_BUSY", hunt.Busy},
	{18, "NO_USER_RESPONSE", hunt.NoAnswer},
	{19, "NO_ANSWER", hunt.NoAnswer},
	// The subscriber is not attached anywhere: not registered, whichever
	// server says it.
	{20, "SUBSCRIBER_ABSENT", hunt.NotRegistered},
	{21, "CALL_REJECTED", hunt.Rejected},
	{22, "NUMBER_CHANGED", hunt.Failed},
	{23, "REDIRECTION_TO_NEW_DESTINATION", hunt.Failed},
	{25, "EXCHANGE_ROUTING_ERROR", hunt.Failed},
	{27, "DESTINATION_OUT_OF_ORDER", hunt.Unreachable},
	{28, "INVALID_NUMBER_FORMAT", hunt.Failed},
	{29, "FACILITY_REJECTED", hunt.Failed},
	{30, "RESPONSE_TO_STATUS_ENQUIRY", hunt.Failed},
	{31, "NORMAL_UNSPECIFIED", hunt.Pending},
	{34, "NORMAL_CIRCUIT_CONGESTION", hunt.Congested},
	{38, "NETWORK_OUT_OF_ORDER", hunt.Unreachable},
	{41, "NORMAL_TEMPORARY_FAILURE", hunt.Failed},
	{42, "SWITCH_CONGESTION", hunt.Congested},
	{43, "ACCESS_INFO_DISCARDED", hunt.Failed},
	{44, "REQUESTED_CHAN_UNAVAIL", hunt.Unreachable},
	{45, "PRE_EMPTED", hunt.Failed},
	{50, "FACILITY_NOT_SUBSCRIBED", hunt.Failed},
	{52, "OUTGOING_CALL_BARRED", hunt.Failed},
	{54, "INCOMING_CALL_BARRED", hunt.Failed},
	{57, "BEARERCAPABILITY_NOTAUTH", hunt.Failed},
	{58, "BEARERCAPABILITY_NOTAVAIL", hunt.Failed},
	{63, "SERVICE_UNAVAILABLE", hunt.Failed},
	{65, "BEARERCAPABILITY_NOTIMPL", hunt.Failed},
	{66, "CHAN_NOT_IMPLEMENTED", hunt.Failed},
	{69, "FACILITY_NOT_IMPLEMENTED", hunt.Failed},
	{79, "SERVICE_NOT_IMPLEMENTED", hunt.Failed},
	{81, "INVALID_CALL_REFERENCE", hunt.Failed},
	{88, "INCOMPATIBLE_DESTINATION", hunt.Failed},
	{95, "INVALID_MSG_UNSPECIFIED", hunt.Failed},
	{96, "MANDATORY_IE_MISSING", hunt.Failed},
	{97, "MESSAGE_TYPE_NONEXIST", hunt.Failed},
	{98, "WRONG_MESSAGE", hunt.Failed},
	{99, "IE_NONEXIST", hunt.Failed},
	{100, "INVALID_IE_CONTENTS", hunt.Failed},
	{101, "WRONG_CALL_STATE", hunt.Failed},
	{102, "RECOVERY_ON_TIMER_EXPIRE", hunt.Unreachable},
	{103, "MANDATORY_IE_LENGTH_ERROR", hunt.Failed},
	{111, "PROTOCOL_ERROR", hunt.Failed},
	{127, "INTERWORKING", hunt.Failed},
}

// Causes past Q.850 that FreeSWITCH reports by name only.
var extraCauses = map[string]hunt.Outcome{
	"ORIGINATOR_CANCEL":   hunt.Cancelled,
	"LOSE_RACE":           hunt.Cancelled,
	"PICKED_OFF":          hunt.Cancelled,
	"ALLOTTED_TIMEOUT":    hunt.NoAnswer,
	"PROGRESS_TIMEOUT":    hunt.NoAnswer,
	"USER_NOT_REGISTERED": hunt.NotRegistered,
}

var (
	causeByCode = map[int]int{}             // code -> index in q850
	causeByName = map[string]hunt.Outcome{} // every known name
)

func init() {
	for i, c := range q850 {
		causeByCode[c.code] = i
		causeByName[c.name] = c.outcome
	}
	for n, o := range extraCauses {
		causeByName[n] = o
	}
}

// CauseName is the name records carry for a Q.850 cause number (17:
// USER_BUSY); a number outside the table is CAUSE_<n>.
func CauseName(code int) string {
	if i, ok := causeByCode[code]; ok {
		return q850[i].name
	}
	return "CAUSE_" + strconv.Itoa(code)
}

// CauseOutcome is what a cause, by name, says of an attempt that ended
// with it. ok is false when it says nothing by itself (NORMAL_CLEARING,
// NONE, an empty or malformed value): then the dial status decides. A
// well-formed cause callctl does not know is a failure of that target.
func CauseOutcome(cause string) (o hunt.Outcome, ok bool) {
	if o, known := causeByName[cause]; known {
		return o, o != hunt.Pending
	}
	switch cause {
	case "", "failure", "SUCCESS", "ANSWER":
		// Not a cause: what FreeSWITCH leaves in a cause variable when the
		// originate failed without one, or succeeded.
		return hunt.Pending, false
	}
	for i := 0; i < len(cause); i++ {
		if x := cause[i]; !(x >= 'A' && x <= 'Z' || x == '_' || x >= '0' && x <= '9') {
			return hunt.Pending, false
		}
	}
	return hunt.Failed, true
}

// DialStatusOutcome reads a dial status as both kinds set it (Asterisk's
// DIALSTATUS and Dial event, FreeSWITCH's DIALSTATUS and
// originate_disposition): the outcome and the cause to record, by its
// Q.850 name where there is one. ok is false for a status that says
// nothing of the end (RINGING, PROGRESS, empty).
func DialStatusOutcome(status string) (o hunt.Outcome, cause string, ok bool) {
	switch status {
	case "ANSWER", "SUCCESS":
		return hunt.Answered, AnswerCause, true
	case "BUSY":
		return hunt.Busy, "USER_BUSY", true
	case "NOANSWER":
		return hunt.NoAnswer, "NO_ANSWER", true
	case "CONGESTION":
		return hunt.Congested, "NORMAL_CIRCUIT_CONGESTION", true
	case "CHANUNAVAIL":
		return hunt.Unreachable, "CHANUNAVAIL", true
	case "CANCEL":
		return hunt.Cancelled, "ORIGINATOR_CANCEL", true
	}
	return hunt.Pending, "", false
}
