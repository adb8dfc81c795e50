package freeswitch

import "github.com/callctl/callctl/controller/hunt"

// BridgeVars are the channel variables FreeSWITCH leaves on the caller's
// channel when a bridge ends, as seen on its CHANNEL_EXECUTE_COMPLETE (trace
// b3: originate_disposition USER_BUSY, DIALSTATUS BUSY,
// last_bridge_hangup_cause USER_BUSY, originate_failed_cause USER_BUSY).
type BridgeVars struct {
	Disposition     string // variable_originate_disposition
	DialStatus      string // variable_DIALSTATUS
	LastBridgeCause string // variable_last_bridge_hangup_cause
	BridgeCause     string // variable_bridge_hangup_cause
	FailedCause     string // variable_originate_failed_cause
	// LegCause is the Hangup-Cause of the leg's own CHANNEL_HANGUP_COMPLETE,
	// when it is known: the one value that cannot be left over from an
	// earlier bridge of the same caller.
	LegCause string
}

// Outcome maps what FreeSWITCH reported about one bridge to the hunt's
// outcome and the cause to record. originate_disposition is the result of
// this very originate (FreeSWITCH sets it on every attempt); the other
// variables may be left over from an earlier attempt on the same channel, so
// they only fill in when it is missing or not a cause.
func (v BridgeVars) Outcome() (hunt.Outcome, string) {
	switch v.Disposition {
	case "SUCCESS", "ANSWER":
		return hunt.Answered, "SUCCESS"
	}
	for _, c := range [...]string{v.Disposition, v.LegCause, v.FailedCause, v.LastBridgeCause, v.BridgeCause} {
		if o, ok := causeOutcome(c); ok {
			return o, c
		}
	}
	switch v.DialStatus {
	case "SUCCESS":
		return hunt.Answered, "SUCCESS"
	case "BUSY":
		return hunt.Busy, "USER_BUSY"
	case "NOANSWER":
		return hunt.NoAnswer, "NO_ANSWER"
	case "CONGESTION":
		return hunt.Congested, "NORMAL_CIRCUIT_CONGESTION"
	case "CHANUNAVAIL":
		return hunt.Unreachable, "CHANUNAVAIL"
	case "CANCEL":
		return hunt.Cancelled, "ORIGINATOR_CANCEL"
	}
	cause := v.Disposition
	if cause == "" {
		cause = v.DialStatus
	}
	if cause == "" {
		cause = "UNKNOWN"
	}
	return hunt.Failed, cause
}

// causeOutcome maps a FreeSWITCH hangup cause name; ok is false for a value
// that is not a cause (empty, "failure", "NONE").
func causeOutcome(c string) (hunt.Outcome, bool) {
	switch c {
	case "", "NONE", "failure", "SUCCESS", "ANSWER":
		return hunt.Pending, false
	case "USER_BUSY":
		return hunt.Busy, true
	case "NO_ANSWER", "ALLOTTED_TIMEOUT", "NO_USER_RESPONSE", "PROGRESS_TIMEOUT":
		return hunt.NoAnswer, true
	case "CALL_REJECTED":
		return hunt.Rejected, true
	case "USER_NOT_REGISTERED", "SUBSCRIBER_ABSENT":
		return hunt.NotRegistered, true
	case "NO_ROUTE_DESTINATION", "UNALLOCATED_NUMBER", "DESTINATION_OUT_OF_ORDER", "NETWORK_OUT_OF_ORDER",
		"NO_ROUTE_TRANSIT_NET", "RECOVERY_ON_TIMER_EXPIRE":
		return hunt.Unreachable, true
	case "NORMAL_CIRCUIT_CONGESTION", "SWITCH_CONGESTION":
		return hunt.Congested, true
	case "ORIGINATOR_CANCEL", "LOSE_RACE", "PICKED_OFF":
		return hunt.Cancelled, true
	}
	// Any other cause name (NORMAL_TEMPORARY_FAILURE, INCOMPATIBLE_DESTINATION,
	// ...) is a failure of this member; the hunt moves on.
	for i := 0; i < len(c); i++ {
		if x := c[i]; !(x >= 'A' && x <= 'Z' || x == '_' || x >= '0' && x <= '9') {
			return hunt.Pending, false
		}
	}
	return hunt.Failed, true
}
