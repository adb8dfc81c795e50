package esl

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// fsEvent is one FreeSWITCH event, shared read-only by every connection
// it is delivered to. Its headers are built on first use, outside the
// model's lock (by the first writer or filter that needs them), from what
// was captured when the event was produced; each wire form is encoded
// once.
type fsEvent struct {
	name string
	uuid string // Unique-ID, for myevents
	seq  uint64
	at   time.Time
	core core
	// a channel event
	snap *callmodel.Snapshot
	view view
	pre  []header
	post []header
	// a server event: its headers after the base ones
	plain   []header
	body    string
	hasBody bool

	buildOnce sync.Once
	headers   []header

	plainOnce sync.Once
	plainWire []byte
	jsonOnce  sync.Once
	jsonWire  []byte
}

// hdrs returns the event's headers, building them the first time.
func (e *fsEvent) hdrs() []header {
	e.buildOnce.Do(func() {
		if e.headers != nil {
			return
		}
		if e.snap != nil {
			e.headers = e.core.channelHeaders(e.name, e.seq, e.at, e.snap, &e.view, e.pre, e.post)
			return
		}
		h := e.core.baseHeaders(make([]header, 0, 16+len(e.plain)), e.name, e.seq, e.at)
		e.headers = append(h, e.plain...)
	})
	return e.headers
}

// get returns a header value (case-insensitive name), as filters look
// headers up.
func (e *fsEvent) get(name string) (string, bool) {
	for _, h := range e.hdrs() {
		if strings.EqualFold(h.name, name) {
			return h.value, true
		}
	}
	if e.hasBody && strings.EqualFold(name, "_body") {
		return e.body, true
	}
	return "", false
}

// serializePlain is switch_event_serialize with url encoding.
func (e *fsEvent) serializePlain() []byte {
	hs := e.hdrs()
	size := len(e.body) + 32
	for _, h := range hs {
		size += len(h.name) + len(h.value) + 8
	}
	b := make([]byte, 0, size+size/8)
	for _, h := range hs {
		b = append(b, h.name...)
		b = append(b, ':', ' ')
		b = appendURLEncoded(b, h.value)
		b = append(b, '\n')
	}
	if e.hasBody {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(e.body)), 10)
		b = append(b, '\n', '\n')
		b = append(b, e.body...)
	} else {
		b = append(b, '\n')
	}
	return b
}

// serializeJSON is switch_event_serialize_json (cJSON, unformatted).
func (e *fsEvent) serializeJSON() []byte {
	hs := e.hdrs()
	size := len(e.body) + 64
	for _, h := range hs {
		size += len(h.name) + len(h.value) + 8
	}
	b := make([]byte, 1, size+size/8)
	b[0] = '{'
	for i, h := range hs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, h.name)
		b = append(b, ':')
		if items, ok := strings.CutPrefix(h.value, "ARRAY::"); ok {
			// a multi-valued header is a JSON array (switch_event_serialize_json)
			b = append(b, '[')
			for j, it := range strings.Split(items, "|:") {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, it)
			}
			b = append(b, ']')
			continue
		}
		b = appendJSONString(b, h.value)
	}
	if e.hasBody {
		if len(hs) > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, "Content-Length")
		b = append(b, ':')
		b = appendJSONString(b, strconv.Itoa(len(e.body)))
		b = append(b, ',')
		b = appendJSONString(b, "_body")
		b = append(b, ':')
		b = appendJSONString(b, e.body)
	}
	return append(b, '}')
}

func frameEvent(kind string, payload []byte) []byte {
	b := make([]byte, 0, len(payload)+48)
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(payload)), 10)
	b = append(b, "\nContent-Type: text/event-"...)
	b = append(b, kind...)
	b = append(b, '\n', '\n')
	return append(b, payload...)
}

// wirePlain is the framed text/event-plain form.
func (e *fsEvent) wirePlain() []byte {
	e.plainOnce.Do(func() { e.plainWire = frameEvent("plain", e.serializePlain()) })
	return e.plainWire
}

// wireJSON is the framed text/event-json form.
func (e *fsEvent) wireJSON() []byte {
	e.jsonOnce.Do(func() { e.jsonWire = frameEvent("json", e.serializeJSON()) })
	return e.jsonWire
}

// core is the identity every event carries.
type core struct {
	uuid       string
	hostname   string
	switchname string
	ipv4       string
	ipv6       string
}

type calling struct{ file, fn, line string }

// Where FreeSWITCH 1.10 raises each event (Event-Calling-* headers), as
// recorded in the traces.
var callingOf = map[string]calling{
	"CHANNEL_ANSWER":           {"switch_channel.c", "switch_channel_perform_mark_answered", "3846"},
	"CHANNEL_BRIDGE":           {"switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", "1689"},
	"CHANNEL_CALLSTATE":        {"switch_channel.c", "switch_channel_perform_set_callstate", "301"},
	"CHANNEL_CREATE":           {"switch_core_state_machine.c", "switch_core_session_run", "626"},
	"CHANNEL_DESTROY":          {"switch_core_session.c", "switch_core_session_perform_destroy", "1584"},
	"CHANNEL_EXECUTE":          {"switch_core_session.c", "switch_core_session_exec", "2944"},
	"CHANNEL_EXECUTE_COMPLETE": {"switch_core_session.c", "switch_core_session_exec", "2967"},
	"CHANNEL_HANGUP":           {"switch_channel.c", "switch_channel_perform_hangup", "3445"},
	"CHANNEL_HANGUP_COMPLETE":  {"switch_core_state_machine.c", "switch_core_session_reporting_state", "943"},
	"CHANNEL_ORIGINATE":        {"switch_core_state_machine.c", "switch_core_session_run", "632"},
	"CHANNEL_OUTGOING":         {"switch_core_session.c", "switch_core_session_outgoing_channel", "768"},
	"CHANNEL_PARK":             {"switch_ivr.c", "switch_ivr_park", "1002"},
	"CHANNEL_UNPARK":           {"switch_ivr.c", "switch_ivr_park", "1213"},
	"CHANNEL_PROGRESS":         {"switch_channel.c", "switch_channel_perform_mark_ring_ready_value", "3505"},
	"CHANNEL_PROGRESS_MEDIA":   {"switch_channel.c", "switch_channel_perform_mark_pre_answered", "3651"},
	"CHANNEL_STATE":            {"switch_channel.c", "switch_channel_perform_set_running_state", "2408"},
	"CHANNEL_UNBRIDGE":         {"switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", "1879"},
	"CHANNEL_UUID":             {"switch_core_session.c", "switch_core_session_set_uuid", "2051"},
	"CHANNEL_DATA":             {"mod_event_socket.c", "parse_command", "2021"},
	"HEARTBEAT":                {"switch_core.c", "send_heartbeat", "95"},
	"BACKGROUND_JOB":           {"mod_event_socket.c", "api_exec", "1572"},
}

// withVariables lists the events switch_channel_event_set_extended_data
// adds the channel variables to.
var withVariables = map[string]bool{
	"CHANNEL_CREATE": true, "CHANNEL_ORIGINATE": true, "CHANNEL_UUID": true,
	"CHANNEL_ANSWER": true, "CHANNEL_PARK": true, "CHANNEL_UNPARK": true,
	"CHANNEL_BRIDGE": true, "CHANNEL_UNBRIDGE": true, "CHANNEL_PROGRESS": true,
	"CHANNEL_PROGRESS_MEDIA": true, "CHANNEL_HANGUP": true,
	"CHANNEL_HANGUP_COMPLETE": true, "CHANNEL_DATA": true,
	"CHANNEL_EXECUTE": true, "CHANNEL_EXECUTE_COMPLETE": true,
	"CHANNEL_DESTROY": true,
}

func usec(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMicro(), 10)
}

// baseHeaders are the headers every event starts with.
func (c *core) baseHeaders(h []header, name string, seq uint64, at time.Time) []header {
	cl, ok := callingOf[name]
	if !ok {
		cl = calling{"switch_event.c", "switch_event_fire", "1"}
	}
	return append(h,
		header{"Event-Name", name},
		header{"Core-UUID", c.uuid},
		header{"FreeSWITCH-Hostname", c.hostname},
		header{"FreeSWITCH-Switchname", c.switchname},
		header{"FreeSWITCH-IPv4", c.ipv4},
		header{"FreeSWITCH-IPv6", c.ipv6},
		header{"Event-Date-Local", at.Local().Format("2006-01-02 15:04:05")},
		header{"Event-Date-GMT", at.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")},
		header{"Event-Date-Timestamp", usec(at)},
		header{"Event-Calling-File", cl.file},
		header{"Event-Calling-Function", cl.fn},
		header{"Event-Calling-Line-Number", cl.line},
		header{"Event-Sequence", strconv.FormatUint(seq, 10)},
	)
}

// profile header names, per prefix, computed once.
const (
	pDirection = iota
	pLogicalDirection
	pUsername
	pDialplan
	pCallerIDName
	pCallerIDNumber
	pOrigCallerIDName
	pOrigCallerIDNumber
	pCalleeIDName
	pCalleeIDNumber
	pNetworkAddr
	pANI
	pRDNIS
	pDestinationNumber
	pUniqueID
	pSource
	pTransferSource
	pContext
	pChannelName
	pProfileIndex
	pProfileCreatedTime
	pChannelCreatedTime
	pChannelAnsweredTime
	pChannelProgressTime
	pChannelProgressMediaTime
	pChannelHangupTime
	pChannelTransferTime
	pChannelResurrectTime
	pChannelBridgedTime
	pChannelLastHold
	pChannelHoldAccum
	pScreenBit
	pPrivacyHideName
	pPrivacyHideNumber
	pCount
)

var profileFields = [pCount]string{
	"Direction", "Logical-Direction", "Username", "Dialplan", "Caller-ID-Name",
	"Caller-ID-Number", "Orig-Caller-ID-Name", "Orig-Caller-ID-Number", "Callee-ID-Name",
	"Callee-ID-Number", "Network-Addr", "ANI", "RDNIS", "Destination-Number", "Unique-ID",
	"Source", "Transfer-Source", "Context", "Channel-Name", "Profile-Index",
	"Profile-Created-Time", "Channel-Created-Time", "Channel-Answered-Time",
	"Channel-Progress-Time", "Channel-Progress-Media-Time", "Channel-Hangup-Time",
	"Channel-Transfer-Time", "Channel-Resurrect-Time", "Channel-Bridged-Time",
	"Channel-Last-Hold", "Channel-Hold-Accum", "Screen-Bit", "Privacy-Hide-Name",
	"Privacy-Hide-Number",
}

var profileNames = map[string]*[pCount]string{}

func init() {
	for _, prefix := range []string{"Caller", "Channel", "Other-Leg"} {
		var names [pCount]string
		for i, f := range profileFields {
			names[i] = prefix + "-" + f
		}
		profileNames[prefix] = &names
	}
}

// profileHeaders is switch_caller_profile_event_set_data with prefix
// "Caller" (or "Channel" in the connect reply, "Other-Leg").
func profileHeaders(h []header, prefix string, s *callmodel.Snapshot, v *view) []header {
	n := profileNames[prefix]
	p := func(i int, value string) { h = append(h, header{n[i], value}) }
	dir := s.Direction.String()
	p(pDirection, dir)
	p(pLogicalDirection, dir)
	if v.username != "" {
		p(pUsername, v.username)
	}
	if v.dialplan != "" {
		p(pDialplan, v.dialplan)
	}
	if s.Caller.Name != "" {
		p(pCallerIDName, s.Caller.Name)
	}
	p(pCallerIDNumber, s.Caller.Number)
	if v.origCaller.Name != "" {
		p(pOrigCallerIDName, v.origCaller.Name)
	}
	p(pOrigCallerIDNumber, v.origCaller.Number)
	if s.Callee.Name != "" {
		p(pCalleeIDName, s.Callee.Name)
	}
	if s.Callee.Number != "" {
		p(pCalleeIDNumber, s.Callee.Number)
	}
	if v.networkIP != "" {
		p(pNetworkAddr, v.networkIP)
	}
	p(pANI, v.ani)
	if v.rdnis != "" {
		p(pRDNIS, v.rdnis)
	}
	p(pDestinationNumber, s.Destination)
	p(pUniqueID, s.UUID)
	p(pSource, v.source)
	if v.xferSource != "" {
		p(pTransferSource, v.xferSource)
	}
	p(pContext, s.Context)
	p(pChannelName, s.Name)
	p(pProfileIndex, strconv.Itoa(max(v.profileIdx, 1)))
	p(pProfileCreatedTime, usec(v.profileAt))
	p(pChannelCreatedTime, usec(s.Created))
	p(pChannelAnsweredTime, usec(s.Answered))
	p(pChannelProgressTime, usec(s.Ringing))
	p(pChannelProgressMediaTime, usec(s.EarlyMedia))
	p(pChannelHangupTime, usec(s.Hungup))
	p(pChannelTransferTime, usec(v.xferAt))
	p(pChannelResurrectTime, "0")
	p(pChannelBridgedTime, usec(s.Bridged))
	p(pChannelLastHold, "0")
	p(pChannelHoldAccum, "0")
	p(pScreenBit, "true")
	p(pPrivacyHideName, "false")
	p(pPrivacyHideNumber, "false")
	return h
}

// channelHeaders is switch_channel_event_set_basic_data plus the caller
// profile and the other leg's profile.
func channelHeaders(h []header, s *callmodel.Snapshot, v *view) []header {
	csNum := v.csNumber
	h = append(h,
		header{"Channel-State", csNames[v.cs]},
		header{"Channel-Call-State", v.callState},
		header{"Channel-State-Number", strconv.Itoa(csNum)},
		header{"Channel-Name", s.Name},
		header{"Unique-ID", s.UUID},
		header{"Call-Direction", s.Direction.String()},
		header{"Presence-Call-Direction", s.Direction.String()},
		header{"Channel-HIT-Dialplan", strconv.FormatBool(v.hit)},
		header{"Channel-Call-UUID", v.callUUID},
		header{"Answer-State", answerState(s.State)},
	)
	if s.State == callmodel.StateHangup {
		h = append(h, header{"Hangup-Cause", s.Cause.Name})
	}
	if v.codec.name != "" {
		h = append(h,
			header{"Channel-Read-Codec-Name", v.codec.name},
			header{"Channel-Read-Codec-Rate", v.codec.rate},
			header{"Channel-Read-Codec-Bit-Rate", v.codec.bitrate},
			header{"Channel-Write-Codec-Name", v.codec.name},
			header{"Channel-Write-Codec-Rate", v.codec.rate},
			header{"Channel-Write-Codec-Bit-Rate", v.codec.bitrate},
		)
	}
	h = profileHeaders(h, "Caller", s, v)
	if o := v.other; o != nil {
		h = append(h, header{"Other-Type", o.typ})
		oh := profileHeaders(nil, "Other-Leg", &o.snap, &o.view)
		h = append(h, oh...)
	}
	return h
}

func variableHeaders(h []header, vars callmodel.Vars) []header {
	vars.Each(func(name, value string) {
		h = append(h, header{variableName(name), value})
	})
	return h
}

// variableName is "variable_"+name, interned: the same few dozen names
// come back in every event.
func variableName(name string) string {
	if v, ok := varNames.Load(name); ok {
		return v.(string)
	}
	v := "variable_" + name
	if varNameCount.Add(1) <= maxVarNames {
		varNames.Store(name, v)
	}
	return v
}

// the intern table stays bounded whatever names controllers invent
const maxVarNames = 4096

var (
	varNames     sync.Map
	varNameCount atomic.Int64
)

// reportingVariables are the variables FreeSWITCH computes when the
// channel reaches CS_REPORTING (hangup cause, stamps, durations).
func reportingVariables(h []header, s *callmodel.Snapshot) []header {
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Local().Format("2006-01-02 15:04:05")
	}
	epoch := func(t time.Time) string {
		if t.IsZero() {
			return "0"
		}
		return strconv.FormatInt(t.Unix(), 10)
	}
	secs := func(a, b time.Time) string {
		if a.IsZero() || b.IsZero() {
			return "0"
		}
		return strconv.FormatInt(int64(b.Sub(a)/time.Second), 10)
	}
	msecs := func(a, b time.Time) string {
		if a.IsZero() || b.IsZero() {
			return "0"
		}
		return strconv.FormatInt(int64(b.Sub(a)/time.Millisecond), 10)
	}
	add := func(n, v string) { h = append(h, header{"variable_" + n, v}) }
	add("hangup_cause", s.Cause.Name)
	add("hangup_cause_q850", strconv.Itoa(s.Cause.Q850()))
	add("digits_dialed", "none")
	add("start_stamp", stamp(s.Created))
	if !s.Answered.IsZero() {
		add("answer_stamp", stamp(s.Answered))
	}
	add("end_stamp", stamp(s.Hungup))
	add("start_epoch", epoch(s.Created))
	add("start_uepoch", usec(s.Created))
	add("answer_epoch", epoch(s.Answered))
	add("answer_uepoch", usec(s.Answered))
	add("progress_epoch", epoch(s.Ringing))
	add("progress_uepoch", usec(s.Ringing))
	add("end_epoch", epoch(s.Hungup))
	add("end_uepoch", usec(s.Hungup))
	add("caller_id", "\""+s.Caller.Name+"\" <"+s.Caller.Number+">")
	add("duration", secs(s.Created, s.Hungup))
	add("billsec", secs(s.Answered, s.Hungup))
	add("progresssec", secs(s.Created, s.Ringing))
	add("answersec", secs(s.Created, s.Answered))
	add("waitsec", secs(s.Created, s.Answered))
	add("mduration", msecs(s.Created, s.Hungup))
	add("billmsec", msecs(s.Answered, s.Hungup))
	return h
}

// channelHeaders builds a channel event's headers: base headers, pre (the
// event-specific headers FreeSWITCH adds before the channel data), the
// channel data, the variables when the event carries them, then post.
func (c *core) channelHeaders(name string, seq uint64, at time.Time, s *callmodel.Snapshot, v *view, pre, post []header) []header {
	h := make([]header, 0, 64+s.Vars.Len())
	h = c.baseHeaders(h, name, seq, at)
	h = append(h, pre...)
	h = channelHeaders(h, s, v)
	if withVariables[name] {
		h = variableHeaders(h, s.Vars)
		if name == "CHANNEL_HANGUP_COMPLETE" || name == "CHANNEL_DESTROY" {
			h = reportingVariables(h, s)
		}
	}
	return append(h, post...)
}
