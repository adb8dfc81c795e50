package callmodel

import "strings"

// Cause is a hangup cause: the name FreeSWITCH and the Q.850 tables use
// (NORMAL_CLEARING, USER_BUSY, ...) and its numeric value. For the Q.850
// causes (1..127) Code is the Q.850 value; a few causes exist only in the
// media servers' own tables (ORIGINATOR_CANCEL 487, USER_NOT_REGISTERED 606,
// ...) and keep those numbers. Q850 folds them into a real Q.850 value.
type Cause struct {
	Name string
	Code int
}

// The causes the simulator produces or accepts. The table is the common
// subset of FreeSWITCH's switch_call_cause_t and Asterisk's causes[].
var (
	CauseNone                    = Cause{"NONE", 0}
	CauseUnallocatedNumber       = Cause{"UNALLOCATED_NUMBER", 1}
	CauseNoRouteTransitNet       = Cause{"NO_ROUTE_TRANSIT_NET", 2}
	CauseNoRouteDestination      = Cause{"NO_ROUTE_DESTINATION", 3}
	CauseChannelUnacceptable     = Cause{"CHANNEL_UNACCEPTABLE", 6}
	CauseNormalClearing          = Cause{"NORMAL_CLEARING", 16}
	CauseUserBusy                = Cause{"USER_BUSY", 17}
	CauseNoUserResponse          = Cause{"NO_USER_RESPONSE", 18}
	CauseNoAnswer                = Cause{"NO_ANSWER", 19}
	CauseSubscriberAbsent        = Cause{"SUBSCRIBER_ABSENT", 20}
	CauseCallRejected            = Cause{"CALL_REJECTED", 21}
	CauseNumberChanged           = Cause{"NUMBER_CHANGED", 22}
	CauseRedirectionToNewDest    = Cause{"REDIRECTION_TO_NEW_DESTINATION", 23}
	CauseExchangeRoutingError    = Cause{"EXCHANGE_ROUTING_ERROR", 25}
	CauseDestinationOutOfOrder   = Cause{"DESTINATION_OUT_OF_ORDER", 27}
	CauseInvalidNumberFormat     = Cause{"INVALID_NUMBER_FORMAT", 28}
	CauseFacilityRejected        = Cause{"FACILITY_REJECTED", 29}
	CauseNormalUnspecified       = Cause{"NORMAL_UNSPECIFIED", 31}
	CauseNormalCircuitCongestion = Cause{"NORMAL_CIRCUIT_CONGESTION", 34}
	CauseNetworkOutOfOrder       = Cause{"NETWORK_OUT_OF_ORDER", 38}
	CauseNormalTemporaryFailure  = Cause{"NORMAL_TEMPORARY_FAILURE", 41}
	CauseSwitchCongestion        = Cause{"SWITCH_CONGESTION", 42}
	CauseRequestedChanUnavail    = Cause{"REQUESTED_CHAN_UNAVAIL", 44}
	CauseBearerCapNotAvail       = Cause{"BEARERCAPABILITY_NOTAVAIL", 58}
	CauseServiceUnavailable      = Cause{"SERVICE_UNAVAILABLE", 63}
	CauseIncompatibleDestination = Cause{"INCOMPATIBLE_DESTINATION", 88}
	CauseRecoveryOnTimerExpire   = Cause{"RECOVERY_ON_TIMER_EXPIRE", 102}
	CauseInterworking            = Cause{"INTERWORKING", 127}
	CauseOriginatorCancel        = Cause{"ORIGINATOR_CANCEL", 487}
	CauseCrash                   = Cause{"CRASH", 500}
	CauseSystemShutdown          = Cause{"SYSTEM_SHUTDOWN", 501}
	CauseLoseRace                = Cause{"LOSE_RACE", 502}
	CauseManagerRequest          = Cause{"MANAGER_REQUEST", 503}
	CauseBlindTransfer           = Cause{"BLIND_TRANSFER", 600}
	CauseAttendedTransfer        = Cause{"ATTENDED_TRANSFER", 601}
	CauseAllottedTimeout         = Cause{"ALLOTTED_TIMEOUT", 602}
	CauseUserChallenge           = Cause{"USER_CHALLENGE", 603}
	CauseMediaTimeout            = Cause{"MEDIA_TIMEOUT", 604}
	CausePickedOff               = Cause{"PICKED_OFF", 605}
	CauseUserNotRegistered       = Cause{"USER_NOT_REGISTERED", 606}
	CauseProgressTimeout         = Cause{"PROGRESS_TIMEOUT", 607}
)

var allCauses = []Cause{
	CauseNone, CauseUnallocatedNumber, CauseNoRouteTransitNet, CauseNoRouteDestination,
	CauseChannelUnacceptable, CauseNormalClearing, CauseUserBusy, CauseNoUserResponse,
	CauseNoAnswer, CauseSubscriberAbsent, CauseCallRejected, CauseNumberChanged,
	CauseRedirectionToNewDest, CauseExchangeRoutingError, CauseDestinationOutOfOrder,
	CauseInvalidNumberFormat, CauseFacilityRejected, CauseNormalUnspecified,
	CauseNormalCircuitCongestion, CauseNetworkOutOfOrder, CauseNormalTemporaryFailure,
	CauseSwitchCongestion, CauseRequestedChanUnavail, CauseBearerCapNotAvail,
	CauseServiceUnavailable, CauseIncompatibleDestination, CauseRecoveryOnTimerExpire,
	CauseInterworking, CauseOriginatorCancel, CauseCrash, CauseSystemShutdown,
	CauseLoseRace, CauseManagerRequest, CauseBlindTransfer, CauseAttendedTransfer,
	CauseAllottedTimeout, CauseUserChallenge, CauseMediaTimeout, CausePickedOff,
	CauseUserNotRegistered, CauseProgressTimeout,
}

var (
	causeByName = map[string]Cause{}
	causeByCode = map[int]Cause{}
)

func init() {
	for _, c := range allCauses {
		causeByName[c.Name] = c
		causeByCode[c.Code] = c
	}
}

// CauseByName looks a cause up by its name, case-insensitively.
func CauseByName(name string) (Cause, bool) {
	c, ok := causeByName[strings.ToUpper(strings.TrimSpace(name))]
	return c, ok
}

// CauseByCode looks a cause up by its numeric value.
func CauseByCode(code int) (Cause, bool) {
	c, ok := causeByCode[code]
	return c, ok
}

// IsZero reports whether no cause is set.
func (c Cause) IsZero() bool { return c.Name == "" }

// Q850 is the Q.850 value of the cause. Causes outside the Q.850 range fold
// into NORMAL_CLEARING (16), as FreeSWITCH's switch_channel_cause_q850 does.
func (c Cause) Q850() int {
	if c.Code <= CauseInterworking.Code {
		return c.Code
	}
	return CauseNormalClearing.Code
}

func (c Cause) String() string {
	if c.IsZero() {
		return "NONE"
	}
	return c.Name
}

// CauseError is returned when a dial fails with a hangup cause.
type CauseError struct{ Cause Cause }

func (e *CauseError) Error() string { return "call failed: " + e.Cause.Name }
