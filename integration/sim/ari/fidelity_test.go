package ari

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// The fidelity test replays the recorded Asterisk 22.10.1 scenarios
// (traces/asterisk) against the simulator with the REST calls of their
// .rest.log and compares what the simulator sends on the WebSocket with
// the .jsonl recordings: per channel, the sequence of events and the fields
// a controller reads. Timestamps, creation times, protocol ids and
// generated unique ids legitimately differ and are not compared; the
// asterisk_id is configured to match.

// --- recorded files -------------------------------------------------------------

type restCall struct {
	method string
	path   string // below /ari
	query  url.Values
	status int
	body   []byte
}

var restLine = regexp.MustCompile(`^\S+ (GET|POST|DELETE|PUT) (\S+) -> (\d+) ?(.*)$`)

func readRestLog(t *testing.T, name string) []restCall {
	t.Helper()
	return readRestLogFile(t, traceFile(t, "asterisk", name), name)
}

func readRestLogFile(t *testing.T, path, name string) []restCall {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var calls []restCall
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		m := restLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s: unrecognised line %q", name, line)
		}
		u, err := url.Parse(m[2])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var status int
		fmt.Sscan(m[3], &status)
		calls = append(calls, restCall{
			method: m[1], path: strings.TrimPrefix(u.Path, "/ari"), query: u.Query(),
			status: status, body: []byte(m[4]),
		})
	}
	return calls
}

func readTrace(t *testing.T, name string) []recEvent {
	t.Helper()
	return readTraceFile(t, traceFile(t, "asterisk", name))
}

func readTraceFile(t *testing.T, path string) []recEvent {
	t.Helper()
	name := filepath.Base(path)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []recEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		var ev jEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, recEvent{raw: append([]byte(nil), raw...), ev: ev})
	}
	return out
}

// --- comparison -------------------------------------------------------------------

var nameCounter = regexp.MustCompile(`-[0-9a-f]{8}(;[12])?$`)

func normName(n string) string { return nameCounter.ReplaceAllString(n, "-N$1") }

// labeler gives channels and bridges stable labels in order of first
// appearance, so recorded and simulated streams can be lined up whatever
// unique ids each generated.
type labeler struct{ m map[string]string }

func (l *labeler) label(id string) string {
	if id == "" {
		return ""
	}
	if l.m == nil {
		l.m = map[string]string{}
	}
	if v, ok := l.m[id]; ok {
		return v
	}
	v := fmt.Sprintf("#%d", len(l.m)+1)
	l.m[id] = v
	return v
}

func chanSig(l *labeler, c *jChannel) string {
	if c == nil {
		return "-"
	}
	return fmt.Sprintf("%s[%s %s caller=%q/%q connected=%q/%q dp=%s,%s,%d %s(%s) acct=%q lang=%s]",
		l.label(c.ID), normName(c.Name), c.State, c.Caller.Name, c.Caller.Number, c.Connected.Name,
		c.Connected.Number, c.Dialplan.Context, c.Dialplan.Exten, c.Dialplan.Priority, c.Dialplan.AppName,
		c.Dialplan.AppData, c.AccountCode, c.Language)
}

func bridgeSig(l *labeler, b *jBridge) string {
	if b == nil {
		return "-"
	}
	var ch []string
	for _, id := range b.Channels {
		ch = append(ch, l.label(id))
	}
	return fmt.Sprintf("bridge %s[%s %s %s %s name=%q channels=%v %s]", l.label(b.ID), b.Technology, b.BridgeType,
		b.BridgeClass, b.Creator, b.Name, ch, b.VideoMode)
}

// signature is everything compared for one event.
func signature(l *labeler, e *jEvent) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s app=%s eid=%s", e.Type, e.Application, e.AsteriskID)
	if e.Channel != nil {
		b.WriteString(" " + chanSig(l, e.Channel))
	}
	if e.Peer != nil {
		b.WriteString(" peer=" + chanSig(l, e.Peer))
	}
	if e.Caller != nil {
		b.WriteString(" caller=" + chanSig(l, e.Caller))
	}
	if e.ReplaceChannel != nil {
		b.WriteString(" replace=" + chanSig(l, e.ReplaceChannel))
	}
	if e.Bridge != nil {
		b.WriteString(" " + bridgeSig(l, e.Bridge))
	}
	if e.Type == "StasisStart" {
		fmt.Fprintf(&b, " args=%q", e.Args)
	}
	if e.Cause != nil {
		fmt.Fprintf(&b, " cause=%d", *e.Cause)
	}
	if e.CauseTxt != "" {
		fmt.Fprintf(&b, " cause_txt=%q", e.CauseTxt)
	}
	if e.Soft != nil {
		fmt.Fprintf(&b, " soft=%v", *e.Soft)
	}
	if e.DialStatus != nil {
		fmt.Fprintf(&b, " dialstatus=%q forward=%q dialstring=%q", *e.DialStatus, e.Forward, e.DialString)
	}
	if e.Type == "ChannelDialplan" {
		fmt.Fprintf(&b, " %s(%s)", e.DialplanApp, e.DialplanData)
	}
	if e.Type == "ChannelCallerId" {
		fmt.Fprintf(&b, " pres=%d", e.CallerPres)
	}
	if e.Type == "ChannelVarset" {
		v := e.Value
		switch {
		case strings.HasPrefix(e.Variable, "RTPAUDIOQOS"), e.Variable == "BRIDGEPVTCALLID":
			// Random SSRCs and SIP Call-IDs: only presence is compared.
			v = "<" + fmt.Sprint(v != "") + ">"
		case e.Variable == "BRIDGEPEER":
			v = normName(v)
		}
		fmt.Fprintf(&b, " %s=%q", e.Variable, v)
	}
	return b.String()
}

// groupKey is the channel (or bridge) an event is about.
func groupKey(l *labeler, e *jEvent) string {
	switch {
	case e.Channel != nil:
		return "channel " + l.label(e.Channel.ID)
	case e.Peer != nil:
		return "channel " + l.label(e.Peer.ID)
	case e.Bridge != nil:
		return "bridge " + l.label(e.Bridge.ID)
	}
	return "server"
}

type grouped struct {
	order []string
	seqs  map[string][]string
}

func groupEvents(evs []recEvent) grouped {
	var l labeler
	g := grouped{seqs: map[string][]string{}}
	for i := range evs {
		e := &evs[i].ev
		k := groupKey(&l, e)
		if _, ok := g.seqs[k]; !ok {
			g.order = append(g.order, k)
		}
		g.seqs[k] = append(g.seqs[k], signature(&l, e))
	}
	return g
}

// diffStreams lists how the simulated stream departs from the recorded
// one: the channels (in order of first appearance) and, per channel, the
// sequence of event signatures must be the same.
func diffStreams(want, got []recEvent) []string {
	var diffs []string
	w, g := groupEvents(want), groupEvents(got)
	if !reflect.DeepEqual(w.order, g.order) {
		diffs = append(diffs, fmt.Sprintf("channels in order of appearance differ:\n recorded  %v\n simulated %v", w.order, g.order))
	}
	for _, k := range w.order {
		ws, gs := w.seqs[k], g.seqs[k]
		for i := 0; i < max(len(ws), len(gs)); i++ {
			var a, b string
			if i < len(ws) {
				a = ws[i]
			}
			if i < len(gs) {
				b = gs[i]
			}
			if a != b {
				diffs = append(diffs, fmt.Sprintf("%s event %d differs:\n recorded  %s\n simulated %s", k, i, a, b))
				break
			}
		}
	}
	return diffs
}

func compareStreams(t *testing.T, what string, want, got []recEvent) {
	t.Helper()
	diffs := diffStreams(want, got)
	for _, d := range diffs {
		t.Errorf("%s: %s", what, d)
	}
	if len(diffs) > 0 {
		var rb, sb strings.Builder
		for _, e := range want {
			rb.WriteString("\n  " + eventLine(&e.ev))
		}
		for _, e := range got {
			sb.WriteString("\n  " + eventLine(&e.ev))
		}
		t.Logf("%s recorded:%s\nsimulated:%s", what, rb.String(), sb.String())
	}
	t.Logf("%s: %d recorded events, %d simulated, %d channels compared", what, len(want), len(got), len(groupEvents(want).order))
}

// TestDiffStreamsDetectsDepartures makes sure the comparison can fail.
func TestDiffStreamsDetectsDepartures(t *testing.T) {
	a := readTrace(t, "a-answer-local101.jsonl")
	b := readTrace(t, "b-busy-local201.jsonl")
	if d := diffStreams(a, a); len(d) != 0 {
		t.Fatalf("a trace differs from itself: %v", d)
	}
	if d := diffStreams(a, b); len(d) == 0 {
		t.Error("a and b traces compare equal")
	}
	dropped := append(append([]recEvent(nil), a[:5]...), a[6:]...)
	if d := diffStreams(a, dropped); len(d) == 0 {
		t.Error("a missing event was not noticed")
	}
	changed := append([]recEvent(nil), a...)
	last := changed[len(changed)-1].ev
	cause := 17
	last.Cause = &cause
	changed[len(changed)-1].ev = last
	if d := diffStreams(a, changed); len(d) == 0 {
		t.Error("a changed cause was not noticed")
	}
}

// compareResponse checks a REST reply against the recorded one: status,
// and for a JSON object the fields that do not legitimately differ.
func compareResponse(t *testing.T, what string, want restCall, status int, body []byte) {
	t.Helper()
	if status != want.status {
		t.Errorf("%s: status %d (%s), recorded %d (%s)", what, status, body, want.status, want.body)
		return
	}
	if len(bytes.TrimSpace(want.body)) == 0 {
		if len(bytes.TrimSpace(body)) != 0 {
			t.Errorf("%s: body %s, recorded none", what, body)
		}
		return
	}
	norm := func(b []byte) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v in %s", what, err, b)
		}
		delete(m, "creationtime")
		delete(m, "protocol_id")
		if n, ok := m["name"].(string); ok {
			m["name"] = normName(n)
		}
		if id, ok := m["id"].(string); ok && generatedID.MatchString(id) {
			m["id"] = "<generated>"
		}
		return m
	}
	if w, g := norm(want.body), norm(body); !reflect.DeepEqual(w, g) {
		t.Errorf("%s: body\n %v\nrecorded\n %v", what, g, w)
	}
}

var generatedID = regexp.MustCompile(`^ast\d-\d+\.\d+$`)

// --- scenarios ----------------------------------------------------------------------

func fidelityServer(t *testing.T, name, eid string, net Network) *Server {
	return startServer(t, Config{SystemName: name, EntityID: eid, RTPStats: true, Network: net})
}

// replay sends a recorded call (with channel ids renamed) and compares the
// reply.
func replay(t *testing.T, c *client, call restCall, rename map[string]string) []byte {
	t.Helper()
	path := call.path
	for from, to := range rename {
		path = strings.ReplaceAll(path, from, to)
	}
	st, body := c.do(call.method, path, call.query, nil)
	compareResponse(t, call.method+" "+path, call, st, body)
	return body
}

func destroyedBoth(id string) func(*jEvent) bool {
	return func(e *jEvent) bool {
		return e.Type == "ChannelDestroyed" && (e.Channel.ID == id || e.Channel.ID == id+";2")
	}
}

func dialplanApp(id, app string) func(*jEvent) bool {
	return func(e *jEvent) bool {
		return e.Type == "ChannelDialplan" && e.Channel.ID == id && e.DialplanApp == app
	}
}

func TestFidelityLocalTargets(t *testing.T) {
	traceFile(t, "asterisk")
	cases := []struct {
		name  string
		calls func(t *testing.T) []restCall
		waits []func(s *stream) // before each call after the first
		done  func(s *stream)
	}{
		{
			name:  "a-answer-local101",
			calls: func(t *testing.T) []restCall { return readRestLog(t, "a-answer-local101.rest.log") },
			waits: []func(*stream){
				func(s *stream) { s.wait("StasisStart", isType("StasisStart", "trace-a-101")) },
				func(s *stream) { s.wait("Wait on ;2", dialplanApp("trace-a-101;2", "Wait")) },
			},
			done: func(s *stream) { s.waitN("both destroyed", 2, destroyedBoth("trace-a-101")) },
		},
		{
			name:  "b-busy-local201",
			calls: func(t *testing.T) []restCall { return readRestLog(t, "b-busy-local201.rest.log") },
			done:  func(s *stream) { s.waitN("both destroyed", 2, destroyedBoth("trace-b-201")) },
		},
		{
			name:  "c-noanswer-local301",
			calls: func(t *testing.T) []restCall { return readRestLog(t, "c-noanswer-local301.rest.log") },
			done:  func(s *stream) { s.waitN("both destroyed", 2, destroyedBoth("trace-c-301")) },
		},
		{
			// The j log has only the reply: the request is the one the
			// README describes.
			name: "j-congestion-local401",
			calls: func(t *testing.T) []restCall {
				data, err := os.ReadFile(traceFile(t, "asterisk", "j-congestion-local401.rest.log"))
				if err != nil {
					t.Fatal(err)
				}
				body, _, _ := strings.Cut(strings.TrimSpace(string(data)), " -> ")
				return []restCall{{method: "POST", path: "/channels", status: 200, body: []byte(body),
					query: vals("endpoint", "Local/401@targets", "app", "controller", "appArgs", "lab", "channelId", "trace-j-401")}}
			},
			done: func(s *stream) { s.waitN("both destroyed", 2, destroyedBoth("trace-j-401")) },
		},
		{
			name:  "d-bridge-two-channels",
			calls: func(t *testing.T) []restCall { return readRestLog(t, "d-bridge-two-channels.rest.log") },
			waits: []func(*stream){
				nil, // originate b right after a
				nil, // create the bridge
				func(s *stream) {
					s.wait("StasisStart a", isType("StasisStart", "trace-d-leg-a"))
					s.wait("StasisStart b", isType("StasisStart", "trace-d-leg-b"))
				},
				nil, // GET the bridge
				func(s *stream) {
					s.wait("Wait a;2", dialplanApp("trace-d-leg-a;2", "Wait"))
					s.wait("Wait b;2", dialplanApp("trace-d-leg-b;2", "Wait"))
				},
				func(s *stream) { s.waitN("a destroyed", 2, destroyedBoth("trace-d-leg-a")) },
				func(s *stream) { s.waitN("b destroyed", 2, destroyedBoth("trace-d-leg-b")) },
			},
			done: func(s *stream) { s.wait("BridgeDestroyed", isType("BridgeDestroyed", "trace-d-bridge")) },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := fidelityServer(t, "ast1", "02:00:00:00:a5:01", newTestNet("ast1"))
			ev := dialEvents(t, srv, "controller", "&subscribeAll=false")
			c := newClient(t, srv)
			calls := tc.calls(t)
			for i, call := range calls {
				if i > 0 && i-1 < len(tc.waits) && tc.waits[i-1] != nil {
					tc.waits[i-1](ev)
				}
				replay(t, c, call, nil)
			}
			tc.done(ev)
			compareStreams(t, tc.name, readTrace(t, tc.name+".jsonl"), ev.snapshot())
		})
	}
}

// TestFidelityInboundSIP replays e1 and e2: sipp calls in from endpoint
// sipp (1000, then alice), the controller answers, sipp hangs up after 2 s.
func TestFidelityInboundSIP(t *testing.T) {
	traceFile(t, "asterisk")
	for _, tc := range []struct{ name, exten, callID string }{
		{"e1-sipp-uac-into-ast1-port5070", "1000", "1-14283@127.0.0.1"},
		{"e2-sipp-uac-into-ast1-port5099", "alice", "1-2250@127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := fidelityServer(t, "ast1", "02:00:00:00:a5:01", newTestNet("ast1"))
			ev := dialEvents(t, srv, "controller", "&subscribeAll=false")
			c := newClient(t, srv)
			calls := readRestLog(t, tc.name+".rest.log")
			recorded := readTrace(t, tc.name+".jsonl")

			sc := callIn(t, srv, InboundCall{Endpoint: "sipp", Context: "from-sipp", Exten: tc.exten,
				Caller: Party{Name: "sipp", Number: "sipp"}, CallID: tc.callID})
			start := ev.wait("StasisStart", isType("StasisStart", ""))
			replay(t, c, calls[0], map[string]string{recorded[0].ev.Channel.ID: start.Channel.ID})
			ev.wait("Up", func(e *jEvent) bool { return e.Type == "ChannelStateChange" && e.Channel.State == "Up" })
			// The answer reaches the caller through the dispatcher.
			eventually(t, "the caller sees the answer", func() bool { _, a := sc.state(); return a })
			sc.in.Hangup(causeNormalClearing) // sipp's BYE
			ev.wait("StasisEnd", isType("StasisEnd", start.Channel.ID))
			compareStreams(t, tc.name, recorded, ev.snapshot())
		})
	}
}

// TestFidelityTrunk replays f (ast1 calls 2099 on ast2) and g (the other
// way round) over a simulated trunk between two servers.
func TestFidelityTrunk(t *testing.T) {
	traceFile(t, "asterisk")
	for _, tc := range []struct {
		name           string
		from, to       string // dialing and receiving side trace prefixes
		dest, id       string
		fromEID, toEID string
	}{
		{name: "f-trunk-ast1-to-ast2", from: "ast1", to: "ast2", dest: "2099", id: "orig-1795306168",
			fromEID: "02:00:00:00:a5:01", toEID: "02:00:00:00:a5:02"},
		{name: "g-trunk-ast2-to-ast1", from: "ast2", to: "ast1", dest: "1099", id: "orig-1795306173",
			fromEID: "02:00:00:00:a5:02", toEID: "02:00:00:00:a5:01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			netFrom, netTo := newTestNet(tc.from), newTestNet(tc.to)
			from := fidelityServer(t, tc.from, tc.fromEID, netFrom)
			to := fidelityServer(t, tc.to, tc.toEID, netTo)
			netFrom.servers[tc.to] = to
			netTo.servers[tc.from] = from
			evFrom := dialEvents(t, from, "controller", "&subscribeAll=false")
			evTo := dialEvents(t, to, "controller", "&subscribeAll=false")
			cFrom, cTo := newClient(t, from), newClient(t, to)

			// The recorded f calls; g used the same ones the other way.
			fCalls := readRestLog(t, "f-trunk-ast1-to-ast2.ast1-side.rest.log")
			originate, del := fCalls[0], fCalls[1]
			originate.query = vals("app", "controller", "appArgs", "lab", "callerId", "Lab <5550100>",
				"channelId", tc.id, "endpoint", "PJSIP/"+tc.dest+"@"+tc.to, "timeout", "30")
			del.path = "/channels/" + tc.id
			originate.body = bytes.ReplaceAll(originate.body, []byte("orig-1795306168"), []byte(tc.id))
			originate.body = bytes.ReplaceAll(originate.body, []byte("PJSIP/ast2-"), []byte("PJSIP/"+tc.to+"-"))
			answer := readRestLog(t, "f-trunk-ast1-to-ast2.ast2-side.rest.log")[0]

			replay(t, cFrom, originate, nil)
			in := evTo.wait("StasisStart on the receiving side", isType("StasisStart", ""))
			replay(t, cTo, answer, map[string]string{"ast2-1795306168.0": in.Channel.ID})
			evFrom.wait("StasisStart on the dialing side", isType("StasisStart", tc.id))
			replay(t, cFrom, del, nil)
			evFrom.wait("ChannelDestroyed", isType("ChannelDestroyed", tc.id))
			evTo.wait("StasisEnd", isType("StasisEnd", in.Channel.ID))

			compareStreams(t, tc.name+" dialing side", readTrace(t, tc.name+"."+tc.from+"-side.jsonl"), evFrom.snapshot())
			compareStreams(t, tc.name+" receiving side", readTrace(t, tc.name+"."+tc.to+"-side.jsonl"), evTo.snapshot())
		})
	}
}
