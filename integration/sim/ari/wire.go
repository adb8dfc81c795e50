package ari

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Asterisk prints timestamps with milliseconds and a numeric zone without a
// colon: 2026-11-22T00:09:06.396+0000.
const tsLayout = "2006-01-02T15:04:05.000-0700"

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, tsLayout)
	return append(b, '"')
}

// appendString appends s as a JSON string. Hand-written rather than
// encoding/json because every event goes through it and the key order of
// Asterisk's objects is kept by writing them field by field.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendKey(b []byte, key string) []byte {
	b = append(b, '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

func appendStrField(b []byte, key, val string) []byte {
	b = appendKey(b, key)
	return appendString(b, val)
}

func appendIntField(b []byte, key string, v int) []byte {
	b = appendKey(b, key)
	return strconv.AppendInt(b, int64(v), 10)
}

func appendBoolField(b []byte, key string, v bool) []byte {
	b = appendKey(b, key)
	return strconv.AppendBool(b, v)
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// party is a caller or connected-line identity.
type party = Party

func appendParty(b []byte, p party) []byte {
	b = append(b, '{')
	b = appendStrField(b, "name", p.Name)
	b = append(b, ',')
	b = appendStrField(b, "number", p.Number)
	return append(b, '}')
}

// cep is a channel's dialplan location (context, extension, priority) and the
// application it runs there.
type cep struct {
	Context  string
	Exten    string
	Priority int
	AppName  string
	AppData  string
}

// chanSnap is the ARI Channel object, field for field.
type chanSnap struct {
	ID          string
	Name        string
	State       string
	ProtocolID  string
	Caller      party
	Connected   party
	AccountCode string
	Dialplan    cep
	Created     time.Time
	Language    string
}

func appendChannel(b []byte, c *chanSnap) []byte {
	b = append(b, '{')
	b = appendStrField(b, "id", c.ID)
	b = append(b, ',')
	b = appendStrField(b, "name", c.Name)
	b = append(b, ',')
	b = appendStrField(b, "state", c.State)
	b = append(b, ',')
	b = appendStrField(b, "protocol_id", c.ProtocolID)
	b = append(b, ',')
	b = appendKey(b, "caller")
	b = appendParty(b, c.Caller)
	b = append(b, ',')
	b = appendKey(b, "connected")
	b = appendParty(b, c.Connected)
	b = append(b, ',')
	b = appendStrField(b, "accountcode", c.AccountCode)
	b = append(b, ',')
	b = appendKey(b, "dialplan")
	b = append(b, '{')
	b = appendStrField(b, "context", c.Dialplan.Context)
	b = append(b, ',')
	b = appendStrField(b, "exten", c.Dialplan.Exten)
	b = append(b, ',')
	b = appendIntField(b, "priority", c.Dialplan.Priority)
	b = append(b, ',')
	b = appendStrField(b, "app_name", c.Dialplan.AppName)
	b = append(b, ',')
	b = appendStrField(b, "app_data", c.Dialplan.AppData)
	b = append(b, '}', ',')
	b = appendKey(b, "creationtime")
	b = appendTime(b, c.Created)
	b = append(b, ',')
	b = appendStrField(b, "language", c.Language)
	return append(b, '}')
}

// bridgeSnap is the ARI Bridge object.
type bridgeSnap struct {
	ID         string
	Technology string
	Type       string
	Class      string
	Creator    string
	Name       string
	Channels   []string
	Created    time.Time
	VideoMode  string
}

func appendBridge(b []byte, br *bridgeSnap) []byte {
	b = append(b, '{')
	b = appendStrField(b, "id", br.ID)
	b = append(b, ',')
	b = appendStrField(b, "technology", br.Technology)
	b = append(b, ',')
	b = appendStrField(b, "bridge_type", br.Type)
	b = append(b, ',')
	b = appendStrField(b, "bridge_class", br.Class)
	b = append(b, ',')
	b = appendStrField(b, "creator", br.Creator)
	b = append(b, ',')
	b = appendStrField(b, "name", br.Name)
	b = append(b, ',')
	b = appendKey(b, "channels")
	b = appendStrings(b, br.Channels)
	b = append(b, ',')
	b = appendKey(b, "creationtime")
	b = appendTime(b, br.Created)
	b = append(b, ',')
	b = appendStrField(b, "video_mode", br.VideoMode)
	return append(b, '}')
}

// The event encoders below write the body of an event without its closing
// brace: the server appends "asterisk_id" and "application", which differ per
// receiving application, and closes the object. Key order follows the
// recorded Asterisk 22 frames.

func beginEvent(b []byte, typ string, ts time.Time) []byte {
	b = append(b, '{')
	b = appendStrField(b, "type", typ)
	b = append(b, ',')
	b = appendKey(b, "timestamp")
	return appendTime(b, ts)
}

// encChannelEvent covers ChannelCreated, ChannelStateChange,
// ChannelConnectedLine, ChannelUnhold, ChannelHold and StasisEnd.
func encChannelEvent(b []byte, typ string, ts time.Time, c *chanSnap) []byte {
	b = beginEvent(b, typ, ts)
	b = append(b, ',')
	b = appendKey(b, "channel")
	return appendChannel(b, c)
}

func encStasisStart(b []byte, ts time.Time, args []string, c, replace *chanSnap) []byte {
	b = beginEvent(b, "StasisStart", ts)
	b = append(b, ',')
	b = appendKey(b, "args")
	b = appendStrings(b, args)
	b = append(b, ',')
	b = appendKey(b, "channel")
	b = appendChannel(b, c)
	if replace != nil {
		b = append(b, ',')
		b = appendKey(b, "replace_channel")
		b = appendChannel(b, replace)
	}
	return b
}

func encCallerID(b []byte, ts time.Time, pres int, c *chanSnap) []byte {
	b = beginEvent(b, "ChannelCallerId", ts)
	b = append(b, ',')
	b = appendIntField(b, "caller_presentation", pres)
	b = append(b, ',')
	b = appendStrField(b, "caller_presentation_txt", presentationText(pres))
	b = append(b, ',')
	b = appendKey(b, "channel")
	return appendChannel(b, c)
}

func encDialplan(b []byte, ts time.Time, app, data string, c *chanSnap) []byte {
	b = beginEvent(b, "ChannelDialplan", ts)
	b = append(b, ',')
	b = appendStrField(b, "dialplan_app", app)
	b = append(b, ',')
	b = appendStrField(b, "dialplan_app_data", data)
	b = append(b, ',')
	b = appendKey(b, "channel")
	return appendChannel(b, c)
}

func encVarset(b []byte, ts time.Time, name, value string, c *chanSnap) []byte {
	b = append(b, '{')
	b = appendStrField(b, "variable", name)
	b = append(b, ',')
	b = appendStrField(b, "value", value)
	b = append(b, ',')
	b = appendStrField(b, "type", "ChannelVarset")
	b = append(b, ',')
	b = appendKey(b, "timestamp")
	b = appendTime(b, ts)
	if c != nil {
		b = append(b, ',')
		b = appendKey(b, "channel")
		b = appendChannel(b, c)
	}
	return b
}

// hangupRequest describes the optional fields of ChannelHangupRequest: a
// remote BYE from a phone carries neither cause nor soft, a DELETE carries
// cause 32 (AST_SOFTHANGUP_EXPLICIT) and soft.
type hangupRequest struct {
	HasCause bool
	Cause    int
	Soft     bool
}

func encHangupRequest(b []byte, ts time.Time, hr hangupRequest, c *chanSnap) []byte {
	b = append(b, '{')
	if hr.HasCause {
		b = appendIntField(b, "cause", hr.Cause)
		b = append(b, ',')
	}
	if hr.Soft {
		b = appendBoolField(b, "soft", true)
		b = append(b, ',')
	}
	b = appendStrField(b, "type", "ChannelHangupRequest")
	b = append(b, ',')
	b = appendKey(b, "timestamp")
	b = appendTime(b, ts)
	b = append(b, ',')
	b = appendKey(b, "channel")
	return appendChannel(b, c)
}

func encDestroyed(b []byte, ts time.Time, cause int, c *chanSnap) []byte {
	b = beginEvent(b, "ChannelDestroyed", ts)
	b = append(b, ',')
	b = appendIntField(b, "cause", cause)
	b = append(b, ',')
	b = appendStrField(b, "cause_txt", causeText(cause))
	b = append(b, ',')
	b = appendKey(b, "channel")
	return appendChannel(b, c)
}

func encDial(b []byte, ts time.Time, caller *chanSnap, status, forward, dialstring string, peer *chanSnap) []byte {
	b = beginEvent(b, "Dial", ts)
	b = append(b, ',')
	if caller != nil {
		b = appendKey(b, "caller")
		b = appendChannel(b, caller)
		b = append(b, ',')
	}
	b = appendStrField(b, "dialstatus", status)
	b = append(b, ',')
	b = appendStrField(b, "forward", forward)
	b = append(b, ',')
	b = appendStrField(b, "dialstring", dialstring)
	b = append(b, ',')
	b = appendKey(b, "peer")
	return appendChannel(b, peer)
}

// encBridgeChannel covers ChannelEnteredBridge and ChannelLeftBridge.
func encBridgeChannel(b []byte, typ string, ts time.Time, br *bridgeSnap, c *chanSnap) []byte {
	b = beginEvent(b, typ, ts)
	b = append(b, ',')
	b = appendKey(b, "bridge")
	b = appendBridge(b, br)
	b = append(b, ',')
	b = appendKey(b, "channel")
	return appendChannel(b, c)
}

// encBridgeEvent covers BridgeCreated and BridgeDestroyed.
func encBridgeEvent(b []byte, typ string, ts time.Time, br *bridgeSnap) []byte {
	b = beginEvent(b, typ, ts)
	b = append(b, ',')
	b = appendKey(b, "bridge")
	return appendBridge(b, br)
}

type blindTransfer struct {
	Transferer *chanSnap
	Exten      string
	Context    string
	Result     string
	External   bool
	Transferee *chanSnap
	Replace    *chanSnap
	Bridge     *bridgeSnap
}

func encBlindTransfer(b []byte, ts time.Time, t *blindTransfer) []byte {
	b = beginEvent(b, "BridgeBlindTransfer", ts)
	b = append(b, ',')
	b = appendKey(b, "channel")
	b = appendChannel(b, t.Transferer)
	b = append(b, ',')
	b = appendStrField(b, "exten", t.Exten)
	b = append(b, ',')
	b = appendStrField(b, "context", t.Context)
	b = append(b, ',')
	b = appendStrField(b, "result", t.Result)
	b = append(b, ',')
	b = appendBoolField(b, "is_external", t.External)
	if t.Transferee != nil {
		b = append(b, ',')
		b = appendKey(b, "transferee")
		b = appendChannel(b, t.Transferee)
	}
	if t.Replace != nil {
		b = append(b, ',')
		b = appendKey(b, "replace_channel")
		b = appendChannel(b, t.Replace)
	}
	if t.Bridge != nil {
		b = append(b, ',')
		b = appendKey(b, "bridge")
		b = appendBridge(b, t.Bridge)
	}
	return b
}

// attendedTransfer is BridgeAttendedTransfer with a link destination.
type attendedTransfer struct {
	First, Second             *chanSnap // the transferer's legs (A, B)
	Transferee, Target        *chanSnap
	FirstBridge, SecondBridge *bridgeSnap
	Link1, Link2              *chanSnap // the Local pair linking the bridges
}

func encAttendedTransfer(b []byte, ts time.Time, t *attendedTransfer) []byte {
	b = beginEvent(b, "BridgeAttendedTransfer", ts)
	for _, f := range []struct {
		key string
		c   *chanSnap
	}{{"transferer_first_leg", t.First}, {"transferer_second_leg", t.Second}, {"transferee", t.Transferee},
		{"transfer_target", t.Target}, {"destination_link_first_leg", t.Link1}, {"destination_link_second_leg", t.Link2}} {
		if f.c == nil {
			continue
		}
		b = append(b, ',')
		b = appendKey(b, f.key)
		b = appendChannel(b, f.c)
	}
	for _, f := range []struct {
		key string
		br  *bridgeSnap
	}{{"transferer_first_leg_bridge", t.FirstBridge}, {"transferer_second_leg_bridge", t.SecondBridge}} {
		if f.br == nil {
			continue
		}
		b = append(b, ',')
		b = appendKey(b, f.key)
		b = appendBridge(b, f.br)
	}
	b = append(b, ',')
	b = appendStrField(b, "destination_type", "link")
	b = append(b, ',')
	b = appendStrField(b, "result", "Success")
	b = append(b, ',')
	b = appendBoolField(b, "is_external", false)
	return b
}

// channelTransfer is the ari-only REFER report (ChannelTransfer).
type channelTransfer struct {
	Destination string
	Source      *chanSnap
	Connected   *chanSnap
	Bridge      *bridgeSnap
	State       string
	// An attended transfer (Replaces): the dialog it replaces (its SIP
	// Call-ID and tags), that dialog's channel, its partner and bridge.
	ProtocolID   string
	FromTag      string
	ToTag        string
	Replaced     *chanSnap
	Target       *chanSnap
	TargetBridge *bridgeSnap
}

func encChannelTransfer(b []byte, ts time.Time, t *channelTransfer) []byte {
	b = beginEvent(b, "ChannelTransfer", ts)
	b = append(b, ',')
	b = appendKey(b, "refer_to")
	b = append(b, '{')
	b = appendKey(b, "requested_destination")
	b = append(b, '{')
	b = appendStrField(b, "destination", t.Destination)
	if t.ProtocolID != "" {
		b = append(b, ',')
		b = appendStrField(b, "protocol_id", t.ProtocolID)
		b = append(b, ',')
		b = appendKey(b, "additional_protocol_params")
		b = append(b, '[', '{')
		b = appendStrField(b, "parameter_name", "from")
		b = append(b, ',')
		b = appendStrField(b, "parameter_value", t.FromTag)
		b = append(b, '}', ',', '{')
		b = appendStrField(b, "parameter_name", "to")
		b = append(b, ',')
		b = appendStrField(b, "parameter_value", t.ToTag)
		b = append(b, '}', ']')
	}
	b = append(b, '}')
	if t.Replaced != nil {
		b = append(b, ',')
		b = appendKey(b, "destination_channel")
		b = appendChannel(b, t.Replaced)
	}
	if t.Target != nil {
		b = append(b, ',')
		b = appendKey(b, "connected_channel")
		b = appendChannel(b, t.Target)
	}
	if t.TargetBridge != nil {
		b = append(b, ',')
		b = appendKey(b, "bridge")
		b = appendBridge(b, t.TargetBridge)
	}
	b = append(b, '}', ',')
	b = appendKey(b, "referred_by")
	b = append(b, '{')
	b = appendKey(b, "source_channel")
	b = appendChannel(b, t.Source)
	if t.Connected != nil {
		b = append(b, ',')
		b = appendKey(b, "connected_channel")
		b = appendChannel(b, t.Connected)
	}
	if t.Bridge != nil {
		b = append(b, ',')
		b = appendKey(b, "bridge")
		b = appendBridge(b, t.Bridge)
	}
	b = append(b, '}')
	if t.State != "" {
		b = append(b, ',')
		b = appendStrField(b, "state", t.State)
	}
	return b
}

// finishEvent closes an event body for one application.
func finishEvent(b []byte, body []byte, asteriskID, app string) []byte {
	b = append(b, body...)
	b = append(b, ',')
	b = appendStrField(b, "asterisk_id", asteriskID)
	b = append(b, ',')
	b = appendStrField(b, "application", app)
	return append(b, '}')
}

func presentationText(pres int) string {
	switch pres {
	case 0x00:
		return "Presentation Allowed, Not Screened"
	case 0x01:
		return "Presentation Allowed, Passed Screen"
	case 0x02:
		return "Presentation Allowed, Failed Screen"
	case 0x03:
		return "Presentation Allowed, Network Number"
	case 0x20:
		return "Presentation Prohibited, Not Screened"
	case 0x21:
		return "Presentation Prohibited, Passed Screen"
	case 0x22:
		return "Presentation Prohibited, Failed Screen"
	case 0x23:
		return "Presentation Prohibited, Network Number"
	case 0x43:
		return "Number Unavailable"
	}
	return "Unknown"
}
