package ari

// Q.850 cause codes as Asterisk names them (main/channel.c causes[]).
const (
	causeUnknown            = 0
	causeUnallocated        = 1
	causeNoRouteDestination = 3
	causeNormalClearing     = 16
	causeUserBusy           = 17
	causeNoUserResponse     = 18
	causeNoAnswer           = 19
	causeSubscriberAbsent   = 20 // AST_CAUSE_UNREGISTERED
	causeCallRejected       = 21
	causeAnsweredElsewhere  = 26
	causeDestOutOfOrder     = 27
	causeInvalidNumber      = 28
	causeNormalUnspecified  = 31
	causeCongestion         = 34
	causeNetworkOutOfOrder  = 38
	causeTemporaryFailure   = 41
	causeBearerNotAvail     = 58
	causeInterworking       = 127

	// softHangupExplicit is AST_SOFTHANGUP_EXPLICIT, the value that
	// ChannelHangupRequest reports as "cause" after DELETE /channels: a
	// soft-hangup flag, not a Q.850 cause.
	softHangupExplicit = 32
)

var causeTexts = map[int]string{
	1:   "Unallocated (unassigned) number",
	2:   "No route to specified transmit network",
	3:   "No route to destination",
	6:   "Channel unacceptable",
	7:   "Call awarded and being delivered in an established channel",
	8:   "Pre-empted",
	14:  "Number ported elsewhere",
	16:  "Normal Clearing",
	17:  "User busy",
	18:  "No user responding",
	19:  "User alerting, no answer",
	20:  "Subscriber absent",
	21:  "Call Rejected",
	22:  "Number changed",
	23:  "Redirected to new destination",
	26:  "Answered elsewhere",
	27:  "Destination out of order",
	28:  "Invalid number format",
	29:  "Facility rejected",
	30:  "Response to STATus ENQuiry",
	31:  "Normal, unspecified",
	34:  "Circuit/channel congestion",
	38:  "Network out of order",
	41:  "Temporary failure",
	42:  "Switching equipment congestion",
	43:  "Access information discarded",
	44:  "Requested channel not available",
	50:  "Facility not subscribed",
	52:  "Outgoing call barred",
	54:  "Incoming call barred",
	57:  "Bearer capability not authorized",
	58:  "Bearer capability not available",
	65:  "Bearer capability not implemented",
	66:  "Channel not implemented",
	69:  "Facility not implemented",
	81:  "Invalid call reference value",
	88:  "Incompatible destination",
	95:  "Invalid message unspecified",
	96:  "Mandatory information element is missing",
	97:  "Message type nonexist.",
	98:  "Wrong message",
	99:  "Info. element nonexist or not implemented",
	100: "Invalid information element contents",
	101: "Message not compatible with call state",
	102: "Recover on timer expiry",
	103: "Mandatory IE length error",
	111: "Protocol error, unspecified",
	127: "Interworking, unspecified",
}

// causeText is ast_cause2str: codes outside the table read "Unknown".
func causeText(c int) string {
	if t, ok := causeTexts[c]; ok {
		return t
	}
	return "Unknown"
}

// hangupReasons are the names DELETE /channels/{id}?reason= accepts.
var hangupReasons = map[string]int{
	"normal":             causeNormalClearing,
	"busy":               causeUserBusy,
	"congestion":         causeCongestion,
	"no_answer":          causeNoAnswer,
	"timeout":            causeNoUserResponse,
	"rejected":           causeCallRejected,
	"unallocated":        causeUnallocated,
	"normal_unspecified": causeNormalUnspecified,
	"number_incomplete":  causeInvalidNumber,
	"codec_mismatch":     causeBearerNotAvail,
	"interworking":       causeInterworking,
	"failure":            causeNetworkOutOfOrder,
	"answered_elsewhere": causeAnsweredElsewhere,
}

// dialStatusForCause is ast_hangup_cause_to_dial_status (main/dial.c): the
// Dial status published when a dialed channel goes away before answering.
func dialStatusForCause(c int) string {
	switch c {
	case causeUserBusy:
		return "BUSY"
	case causeCongestion:
		return "CONGESTION"
	case causeNoRouteDestination, causeSubscriberAbsent:
		return "CHANUNAVAIL"
	}
	return "NOANSWER"
}
