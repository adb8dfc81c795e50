package asterisk

import (
	"encoding/json"
	"errors"
	"time"
)

// event is the part of an ARI event that callctl reads. It is decoded
// leniently: unknown event types (ChannelTransfer, CallBroadcast, ... that
// newer Asterisk versions send) decode like any other and are ignored by
// type; a field of the wrong JSON type is dropped rather than losing the
// whole frame, so a ChannelDestroyed is never missed because of an odd
// field next to its channel id.
type event struct {
	Type           string
	Channel        channelData
	Peer           channelData // Dial
	ReplaceChannel channelData // StasisStart after a transfer
	Args           []string
	Cause          int
	HasCause       bool
	Soft           bool
	DialStatus     string
	BridgeID       string
	Application    string
}

// channelData is the part of an ARI Channel that callctl reads.
type channelData struct {
	ID           string
	Name         string
	State        string
	CallerNumber string
	CallerName   string
	Context      string
	Exten        string
	Created      time.Time
}

// ariTime is the format of ARI timestamps (2026-11-22T00:09:06.395+0000).
const ariTime = "2006-01-02T15:04:05.000-0700"

// errNoType is returned for a frame without an event type.
var errNoType = errors.New("event has no type")

// rawEvent holds the fields callctl reads, undecoded: json.RawMessage takes
// any JSON value, so a field of an unexpected type cannot fail the frame.
type rawEvent struct {
	Type           json.RawMessage `json:"type"`
	Application    json.RawMessage `json:"application"`
	Channel        json.RawMessage `json:"channel"`
	Peer           json.RawMessage `json:"peer"`
	ReplaceChannel json.RawMessage `json:"replace_channel"`
	Args           json.RawMessage `json:"args"`
	Cause          json.RawMessage `json:"cause"`
	Soft           json.RawMessage `json:"soft"`
	DialStatus     json.RawMessage `json:"dialstatus"`
	Bridge         json.RawMessage `json:"bridge"`
}

type rawChannel struct {
	ID           json.RawMessage `json:"id"`
	Name         json.RawMessage `json:"name"`
	State        json.RawMessage `json:"state"`
	Caller       json.RawMessage `json:"caller"`
	Dialplan     json.RawMessage `json:"dialplan"`
	Creationtime json.RawMessage `json:"creationtime"`
}

// decodeEvent reads one WebSocket frame. It fails only when the frame is
// not a JSON object or has no type; odd fields are skipped.
func decodeEvent(data []byte) (event, error) {
	var raw rawEvent
	if err := json.Unmarshal(data, &raw); err != nil {
		return event{}, err
	}
	var e event
	str(raw.Type, &e.Type)
	if e.Type == "" {
		return event{}, errNoType
	}
	str(raw.Application, &e.Application)
	switch e.Type {
	case "StasisStart":
		e.Channel = decodeChannel(raw.Channel)
		e.ReplaceChannel = decodeChannel(raw.ReplaceChannel)
		e.Args = strs(raw.Args)
	case "StasisEnd", "ChannelStateChange":
		e.Channel = decodeChannel(raw.Channel)
	case "ChannelDestroyed", "ChannelHangupRequest":
		e.Channel = decodeChannel(raw.Channel)
		e.HasCause = num(raw.Cause, &e.Cause)
		boolean(raw.Soft, &e.Soft)
	case "Dial":
		e.Peer = decodeChannel(raw.Peer)
		str(raw.DialStatus, &e.DialStatus)
	case "ChannelEnteredBridge", "ChannelLeftBridge":
		e.Channel = decodeChannel(raw.Channel)
		e.BridgeID = bridgeID(raw.Bridge)
	case "BridgeDestroyed", "BridgeBlindTransfer", "BridgeAttendedTransfer":
		e.BridgeID = bridgeID(raw.Bridge)
	}
	return e, nil
}

func decodeChannel(m json.RawMessage) channelData {
	var c channelData
	var raw rawChannel
	if len(m) == 0 || json.Unmarshal(m, &raw) != nil {
		return c
	}
	str(raw.ID, &c.ID)
	str(raw.Name, &c.Name)
	str(raw.State, &c.State)
	if len(raw.Caller) > 0 {
		var party struct{ Number, Name json.RawMessage }
		if json.Unmarshal(raw.Caller, &party) == nil {
			str(party.Number, &c.CallerNumber)
			str(party.Name, &c.CallerName)
		}
	}
	if len(raw.Dialplan) > 0 {
		var dp struct{ Context, Exten json.RawMessage }
		if json.Unmarshal(raw.Dialplan, &dp) == nil {
			str(dp.Context, &c.Context)
			str(dp.Exten, &c.Exten)
		}
	}
	var created string
	if str(raw.Creationtime, &created) {
		if t, err := time.Parse(ariTime, created); err == nil {
			c.Created = t
		}
	}
	return c
}

func bridgeID(m json.RawMessage) string {
	var b struct{ ID json.RawMessage }
	if len(m) == 0 || json.Unmarshal(m, &b) != nil {
		return ""
	}
	var id string
	str(b.ID, &id)
	return id
}

func str(m json.RawMessage, dst *string) bool {
	return len(m) > 0 && json.Unmarshal(m, dst) == nil
}

func num(m json.RawMessage, dst *int) bool {
	return len(m) > 0 && json.Unmarshal(m, dst) == nil
}

func boolean(m json.RawMessage, dst *bool) bool {
	return len(m) > 0 && json.Unmarshal(m, dst) == nil
}

func strs(m json.RawMessage) []string {
	var raw []json.RawMessage
	if len(m) == 0 || json.Unmarshal(m, &raw) != nil {
		return nil
	}
	out := make([]string, 0, len(raw))
	for _, r := range raw {
		var s string
		if str(r, &s) {
			out = append(out, s)
		} else {
			out = append(out, "")
		}
	}
	return out
}
