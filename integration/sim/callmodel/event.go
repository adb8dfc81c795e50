package callmodel

import "time"

// EventKind names what happened.
type EventKind uint8

// Event kinds. Every channel produces ChannelCreated first and
// ChannelDestroyed last; between them the others follow the call.
const (
	ChannelCreated EventKind = iota + 1
	// ChannelRinging: the far end alerts (first time only).
	ChannelRinging
	// ChannelEarlyMedia: early media started (first time only).
	ChannelEarlyMedia
	ChannelAnswered
	// ChannelBridged: Channel (the side that asked for the bridge) and Other
	// are now connected.
	ChannelBridged
	// ChannelUnbridged: the bridge between Channel and Other ended.
	ChannelUnbridged
	// ChannelHangup: the channel hung up with Channel.Cause; Reason says why.
	ChannelHangup
	// ChannelDestroyed: the channel is gone. It comes after everything the
	// hangup caused in the same transaction.
	ChannelDestroyed
	// ChannelUpdated: caller id, destination or context changed (a transfer).
	ChannelUpdated
	// Note is an event a front emits for itself (for example the start and
	// end of a dialplan application); Name and Data are the front's.
	Note
	// ServerRestarted: the server lost all its channels at once, without
	// hangup events, as a crashed and restarted media server does.
	ServerRestarted
	// ServerStopped: the server is shutting down for good.
	ServerStopped
)

func (k EventKind) String() string {
	switch k {
	case ChannelCreated:
		return "ChannelCreated"
	case ChannelRinging:
		return "ChannelRinging"
	case ChannelEarlyMedia:
		return "ChannelEarlyMedia"
	case ChannelAnswered:
		return "ChannelAnswered"
	case ChannelBridged:
		return "ChannelBridged"
	case ChannelUnbridged:
		return "ChannelUnbridged"
	case ChannelHangup:
		return "ChannelHangup"
	case ChannelDestroyed:
		return "ChannelDestroyed"
	case ChannelUpdated:
		return "ChannelUpdated"
	case Note:
		return "Note"
	case ServerRestarted:
		return "ServerRestarted"
	case ServerStopped:
		return "ServerStopped"
	}
	return "unknown"
}

// HangupReason says where a hangup came from.
type HangupReason uint8

// Hangup reasons.
const (
	// ByRequest: a front asked for it (API kill, hangup application, a
	// failed bridge, a controller's hangup command).
	ByRequest HangupReason = iota
	// ByRemote: the far end hung up (phone, PSTN, the peer of a trunk call,
	// a simulated caller).
	ByRemote
	// ByPartner: the other half of a local pair hung up.
	ByPartner
	// ByTimeout: a dial or ring timer expired.
	ByTimeout
	// ByServer: the server is stopping.
	ByServer
)

func (r HangupReason) String() string {
	switch r {
	case ByRequest:
		return "request"
	case ByRemote:
		return "remote"
	case ByPartner:
		return "partner"
	case ByTimeout:
		return "timeout"
	case ByServer:
		return "server"
	}
	return "unknown"
}

// Event is one fact about a server, numbered by the server's sequence.
type Event struct {
	Seq    uint64
	Time   time.Time
	Server string
	Kind   EventKind
	// Channel is the subject (zero for server events).
	Channel Snapshot
	// Other is the second channel of a bridge event.
	Other Snapshot
	// Reason is set on ChannelHangup.
	Reason HangupReason
	// Name and Data carry a Note.
	Name string
	Data any
	// Stamp is what the server's Stamper attached when the event was queued.
	Stamp any
}
