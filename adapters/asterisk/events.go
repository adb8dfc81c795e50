package asterisk

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/CyCoreSystems/ari/v5"
)

// event is the part of an ARI event that callctl reads. It is decoded
// leniently: unknown event types (CallBroadcast, ... that newer Asterisk
// versions send) decode like any other and are ignored by type; a field of the wrong JSON type is dropped rather than losing the
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
	// FirstLeg and SecondLeg are a BridgeAttendedTransfer's transferer
	// channels: the REFER's dialog and the dialog it replaced.
	FirstLeg, SecondLeg string
	// Transfer is a ChannelTransfer's content (a REFER under
	// PJSIP_TRANSFER_HANDLING(ari-only)); nil for other events.
	Transfer *transferData
}

// transferData is what callctl reads of a ChannelTransfer: who sent the
// REFER (Source) in which call (its bridge and the party it talks to),
// where to (Destination, and for an attended transfer the dialog it
// replaces: ProtocolID, with the channel of that dialog and its partner).
// State is set only on the events transfer_progress re-publishes.
type transferData struct {
	State        string
	Destination  string
	ProtocolID   string
	Source       channelData
	Connected    string // referred_by.connected_channel
	Bridge       string // referred_by.bridge
	Replaced     string // refer_to.destination_channel
	Target       string // refer_to.connected_channel
	TargetBridge string // refer_to.bridge
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

// wireEvent is decoded in one pass. For a field of an unexpected JSON type,
// encoding/json reports an *json.UnmarshalTypeError but still fills every
// other field: a ChannelDestroyed is never lost to an odd field next to its
// channel id.
type wireEvent struct {
	Type           string       `json:"type"`
	Channel        *wireChannel `json:"channel"`
	Peer           *wireChannel `json:"peer"`
	ReplaceChannel *wireChannel `json:"replace_channel"`
	Args           []string     `json:"args"`
	Cause          *int         `json:"cause"`
	Soft           bool         `json:"soft"`
	DialStatus     string       `json:"dialstatus"`
	Bridge         *struct {
		ID string `json:"id"`
	} `json:"bridge"`
	State     string       `json:"state"`
	FirstLeg  *wireChannel `json:"transferer_first_leg"`
	SecondLeg *wireChannel `json:"transferer_second_leg"`
	ReferTo   *struct {
		Requested *struct {
			Destination string `json:"destination"`
			ProtocolID  string `json:"protocol_id"`
		} `json:"requested_destination"`
		Destination *wireChannel `json:"destination_channel"`
		Connected   *wireChannel `json:"connected_channel"`
		Bridge      *wireBridge  `json:"bridge"`
	} `json:"refer_to"`
	ReferredBy *struct {
		Source    *wireChannel `json:"source_channel"`
		Connected *wireChannel `json:"connected_channel"`
		Bridge    *wireBridge  `json:"bridge"`
	} `json:"referred_by"`
}

type wireBridge struct {
	ID string `json:"id"`
}

func (b *wireBridge) id() string {
	if b == nil {
		return ""
	}
	return b.ID
}

type wireChannel struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	State  string `json:"state"`
	Caller struct {
		Name   string `json:"name"`
		Number string `json:"number"`
	} `json:"caller"`
	Dialplan struct {
		Context string `json:"context"`
		Exten   string `json:"exten"`
	} `json:"dialplan"`
	Creationtime string `json:"creationtime"`
}

// bodyTypes are the event types whose content callctl reads; the others
// (most of the stream: ChannelVarset, ChannelDialplan, ...) are only
// recognised by their type.
var bodyTypes = map[string]bool{
	ari.Events.StasisStart: true, ari.Events.StasisEnd: true, ari.Events.ChannelDestroyed: true,
	ari.Events.ChannelHangupRequest: true, ari.Events.Dial: true, ari.Events.BridgeBlindTransfer: true,
	ari.Events.BridgeAttendedTransfer: true, eventChannelTransfer: true,
}

// eventChannelTransfer is newer than ari/v5's list of event names.
const eventChannelTransfer = "ChannelTransfer"

// decodeEvent reads one WebSocket frame. It fails only when the frame is
// not a JSON object or has no type; odd fields are skipped.
func decodeEvent(data []byte) (event, error) {
	if t, ok := topLevelType(data); ok && !bodyTypes[t] {
		return event{Type: t}, nil
	}
	var w wireEvent
	if err := json.Unmarshal(data, &w); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			return event{}, err
		}
	}
	if w.Type == "" {
		return event{}, errNoType
	}
	e := event{Type: w.Type, Args: w.Args, Soft: w.Soft, DialStatus: w.DialStatus}
	e.Channel = w.Channel.data()
	e.Peer = w.Peer.data()
	e.ReplaceChannel = w.ReplaceChannel.data()
	if w.Cause != nil {
		e.Cause, e.HasCause = *w.Cause, true
	}
	if w.Bridge != nil {
		e.BridgeID = w.Bridge.ID
	}
	if w.Type == eventChannelTransfer {
		e.Transfer = w.transfer()
	}
	e.FirstLeg, e.SecondLeg = w.FirstLeg.data().ID, w.SecondLeg.data().ID
	return e, nil
}

// transfer reads a ChannelTransfer; parts that are missing stay empty.
func (w *wireEvent) transfer() *transferData {
	t := &transferData{State: w.State}
	if r := w.ReferTo; r != nil {
		if r.Requested != nil {
			t.Destination, t.ProtocolID = r.Requested.Destination, r.Requested.ProtocolID
		}
		t.Replaced = r.Destination.data().ID
		t.Target = r.Connected.data().ID
		t.TargetBridge = r.Bridge.id()
	}
	if r := w.ReferredBy; r != nil {
		t.Source = r.Source.data()
		t.Connected = r.Connected.data().ID
		t.Bridge = r.Bridge.id()
	}
	return t
}

func (w *wireChannel) data() channelData {
	if w == nil {
		return channelData{}
	}
	c := channelData{ID: w.ID, Name: w.Name, State: w.State, CallerNumber: w.Caller.Number, CallerName: w.Caller.Name,
		Context: w.Dialplan.Context, Exten: w.Dialplan.Exten}
	if w.Creationtime != "" {
		if t, err := time.Parse(ariTime, w.Creationtime); err == nil {
			c.Created = t
		}
	}
	return c
}

// topLevelType finds the value of the "type" key of a JSON object without
// decoding the rest of it. ok is false when it cannot tell (not an object,
// no type, escapes, malformed): the full decoder then decides.
func topLevelType(b []byte) (string, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return "", false
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != '"' {
			return "", false
		}
		end, ok := stringEnd(b, i)
		if !ok {
			return "", false
		}
		key := b[i+1 : end]
		i = skipSpace(b, end+1)
		if i >= len(b) || b[i] != ':' {
			return "", false
		}
		i = skipSpace(b, i+1)
		if string(key) == "type" {
			if i >= len(b) || b[i] != '"' {
				return "", false
			}
			vend, ok := stringEnd(b, i)
			if !ok {
				return "", false
			}
			v := b[i+1 : vend]
			for _, c := range v {
				if c == '\\' || c < 0x20 {
					return "", false
				}
			}
			return string(v), len(v) > 0
		}
		if i, ok = skipValue(b, i); !ok {
			return "", false
		}
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != ',' {
			return "", false
		}
		i++
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index of the quote closing the string opening at i.
func stringEnd(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j, true
		}
	}
	return 0, false
}

// skipValue returns the index just after the JSON value starting at i.
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		end, ok := stringEnd(b, i)
		return end + 1, ok
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, ok := stringEnd(b, j)
				if !ok {
					return 0, false
				}
				j = end
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\r' && b[j] != '\t' {
		j++
	}
	return j, j > i
}
