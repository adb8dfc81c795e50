package freeswitch

import (
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/hunt"
)

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
// outcome and the cause to record, through the controller's one reading of
// causes and dial statuses. originate_disposition is the result of this
// very originate (FreeSWITCH sets it on every attempt); the other variables
// may be left over from an earlier attempt on the same channel, so they
// only fill in when it is missing or not a cause.
func (v BridgeVars) Outcome() (hunt.Outcome, string) {
	if o, cause, ok := controller.DialStatusOutcome(v.Disposition); ok && o == hunt.Answered {
		return o, cause
	}
	for _, c := range [...]string{v.Disposition, v.LegCause, v.FailedCause, v.LastBridgeCause, v.BridgeCause} {
		if o, ok := controller.CauseOutcome(c); ok {
			return o, c
		}
	}
	if o, cause, ok := controller.DialStatusOutcome(v.DialStatus); ok {
		return o, cause
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
