package esl

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// The fidelity test replays the recorded scenarios against the simulator
// with the commands of the .session files and compares what the
// simulator sends with what FreeSWITCH 1.10.12 sent.

// speed is how much faster than real time the scenarios run. Not more: a
// recorded 2 s linger becomes 400 ms, in which the replay's next command must
// arrive even on a loaded machine (at 10, 200 ms were sometimes missed).
const speed = 5

// simEvents are the events the simulator raises. Everything else in the
// recordings (CODEC, API, CALL_UPDATE, PLAYBACK_*, *_SCHEDULE,
// PRIVATE_COMMAND, HEARTBEAT, ...) is noise a controller does not rely on.
var simEvents = map[string]bool{
	"CHANNEL_CREATE": true, "CHANNEL_DESTROY": true, "CHANNEL_STATE": true,
	"CHANNEL_CALLSTATE": true, "CHANNEL_ANSWER": true, "CHANNEL_HANGUP": true,
	"CHANNEL_HANGUP_COMPLETE": true, "CHANNEL_EXECUTE": true,
	"CHANNEL_EXECUTE_COMPLETE": true, "CHANNEL_BRIDGE": true, "CHANNEL_UNBRIDGE": true,
	"CHANNEL_PROGRESS": true, "CHANNEL_PROGRESS_MEDIA": true, "CHANNEL_OUTGOING": true,
	"CHANNEL_PARK": true, "CHANNEL_UNPARK": true, "CHANNEL_ORIGINATE": true,
	"CHANNEL_UUID": true, "BACKGROUND_JOB": true,
}

func significant(f *frame) bool {
	if f.event == nil || f.contentType() == "command/reply" {
		return true
	}
	return simEvents[f.ev("Event-Name")]
}

// role is a channel name without its network address: the part of a name
// that does not depend on where the servers run.
func role(name string) string {
	if i := strings.IndexByte(name, '@'); i >= 0 {
		return name[:i]
	}
	return name
}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

func normUUIDs(s string) string { return uuidRE.ReplaceAllString(s, "<uuid>") }

// frameKey identifies a frame across the recording and the simulation.
func frameKey(f *frame) string {
	if f.contentType() == "command/reply" && f.event != nil {
		return "connect-reply"
	}
	if f.event != nil {
		k := f.ev("Event-Name") + "|" + role(f.ev("Channel-Name")) + "|" + f.ev("Application")
		switch f.ev("Event-Name") {
		case "CHANNEL_STATE":
			k += "|" + f.ev("Channel-State")
		case "CHANNEL_CALLSTATE":
			k += "|" + f.ev("Channel-Call-State")
		}
		return k
	}
	switch f.contentType() {
	case "api/response":
		return "api|" + normUUIDs(f.body)
	case "text/disconnect-notice":
		return "notice|" + f.get("Content-Disposition")
	}
	return f.contentType() + "|" + normUUIDs(f.get("Reply-Text"))
}

// session replays one recorded connection against a simulator connection.
type session struct {
	t      *testing.T
	rec    *recording
	client *rawClient
	got    []*frame
	mu     *sync.Mutex
	uuids  map[string]string // recorded uuid -> simulated uuid
	roles  map[string]string // role -> recorded uuid
}

func newSession(t *testing.T, rec *recording, client *rawClient, mu *sync.Mutex, uuids map[string]string) *session {
	s := &session{t: t, rec: rec, client: client, mu: mu, uuids: uuids, roles: map[string]string{}}
	for _, f := range rec.frames {
		for _, p := range [][2]string{{"Unique-ID", "Channel-Name"}, {"Other-Leg-Unique-ID", "Other-Leg-Channel-Name"}} {
			if u := f.ev(p[0]); u != "" {
				if r := role(f.ev(p[1])); r != "" {
					if _, ok := s.roles[r]; !ok {
						s.roles[r] = u
					}
				}
			}
		}
	}
	return s
}

func (s *session) take(f *frame) {
	s.got = append(s.got, f)
	for _, p := range [][2]string{{"Unique-ID", "Channel-Name"}, {"Other-Leg-Unique-ID", "Other-Leg-Channel-Name"}} {
		if u := f.ev(p[0]); u != "" {
			if recUUID, ok := s.roles[role(f.ev(p[1]))]; ok {
				s.mu.Lock()
				if _, known := s.uuids[recUUID]; !known {
					s.uuids[recUUID] = u
				}
				s.mu.Unlock()
			}
		}
	}
}

// addrRE matches the loopback host:port of a controller, which depends on
// where the test listens.
var addrRE = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// waitKey reads simulator frames until n frames with key arrived.
func (s *session) waitKey(key string, n int) {
	s.t.Helper()
	count := 0
	for _, f := range s.got {
		if frameKey(f) == key {
			count++
		}
	}
	deadline := time.After(waitLong)
	for count < n {
		select {
		case f, ok := <-s.client.frames:
			if !ok {
				s.t.Fatalf("%s: connection closed while waiting for %q #%d", s.rec.name, key, n)
			}
			s.take(f)
			if frameKey(f) == key {
				count++
			}
		case <-deadline:
			var keys []string
			for _, f := range s.got {
				keys = append(keys, frameKey(f))
			}
			s.t.Fatalf("%s: no %q #%d from the simulator; got:\n%s", s.rec.name, key, n, strings.Join(keys, "\n"))
		}
	}
}

func (s *session) mapUUIDs(text string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uuidRE.ReplaceAllStringFunc(text, func(u string) string {
		if m, ok := s.uuids[u]; ok {
			return m
		}
		return u
	})
}

// replay sends the recorded commands, each once the simulator has sent
// the equivalent of the last frame FreeSWITCH had sent before it, and
// after the same (scaled) pause; then it reads until the connection ends.
func (s *session) replay() {
	s.t.Helper()
	for _, cmd := range s.rec.commands {
		j := cmd.after - 1
		for j >= 0 && !significant(s.rec.frames[j]) {
			j--
		}
		var anchorAt time.Duration
		if j >= 0 {
			key := frameKey(s.rec.frames[j])
			n := 0
			for _, f := range s.rec.frames[:j+1] {
				if frameKey(f) == key {
					n++
				}
			}
			s.waitKey(key, n)
			anchorAt = s.rec.frameAt[j]
		}
		if gap := cmd.at - anchorAt; gap > 0 {
			time.Sleep(min(gap/speed, 2*time.Second))
		}
		s.client.send(s.mapUUIDs(cmd.text))
	}
	if s.rec.closedByServer {
		for _, f := range s.client.closed() {
			s.take(f)
		}
		return
	}
	// the transcript ends with the connection open: read up to its last
	// significant frame
	last := len(s.rec.frames) - 1
	for last >= 0 && !significant(s.rec.frames[last]) {
		last--
	}
	key := frameKey(s.rec.frames[last])
	n := 0
	for _, f := range s.rec.frames[:last+1] {
		if frameKey(f) == key {
			n++
		}
	}
	s.waitKey(key, n)
}

// comparison collects the differences between a recording and the
// simulation.
type comparison struct {
	t     *testing.T
	name  string
	uuids map[string]string
	diffs []string
}

func (c *comparison) diff(format string, args ...any) {
	c.diffs = append(c.diffs, fmt.Sprintf(format, args...))
}

func (c *comparison) report() {
	c.t.Helper()
	for _, d := range c.diffs {
		c.t.Errorf("%s: %s", c.name, d)
	}
}

func eventLabel(f *frame) string {
	n := strings.TrimPrefix(f.ev("Event-Name"), "CHANNEL_")
	switch f.ev("Event-Name") {
	case "CHANNEL_STATE":
		n += "(" + strings.TrimPrefix(f.ev("Channel-State"), "CS_") + ")"
	case "CHANNEL_CALLSTATE":
		n += "(" + f.ev("Channel-Call-State") + ")"
	case "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE":
		n += "(" + f.ev("Application") + ")"
	case "CHANNEL_HANGUP":
		n += "(" + f.ev("Hangup-Cause") + ")"
	}
	return n
}

// perRole groups the significant channel events by channel role.
func perRole(frames []*frame) (map[string][]*frame, []string) {
	out := map[string][]*frame{}
	var order []string
	for _, f := range frames {
		if f.event == nil || f.contentType() == "command/reply" || !significant(f) {
			continue
		}
		r := role(f.ev("Channel-Name"))
		if r == "" {
			continue
		}
		if _, ok := out[r]; !ok {
			order = append(order, r)
		}
		out[r] = append(out[r], f)
	}
	return out, order
}

func labels(fs []*frame) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = eventLabel(f)
	}
	return out
}

// compareConnection checks one connection's frames.
func (c *comparison) compareConnection(rec *recording, got []*frame, outbound bool) {
	// replies, api responses and notices, in order
	var wantR, gotR []string
	for _, f := range rec.frames {
		if f.event == nil || f.contentType() == "command/reply" {
			wantR = append(wantR, frameKey(f))
		}
	}
	for _, f := range got {
		if f.event == nil || f.contentType() == "command/reply" {
			gotR = append(gotR, frameKey(f))
		}
	}
	if strings.Join(wantR, "\n") != strings.Join(gotR, "\n") {
		c.diff("replies and notices differ:\nrecorded:\n  %s\nsimulated:\n  %s", strings.Join(wantR, "\n  "), strings.Join(gotR, "\n  "))
	}
	// an api response comes before the events the command caused
	c.compareAPIPlacement(rec.frames, got)

	want, order := perRole(rec.frames)
	have, _ := perRole(got)
	for _, r := range order {
		w, h := want[r], have[r]
		if outbound {
			// the CHANNEL_PARK of the socket application races with
			// myevents: FreeSWITCH delivers it or not
			if len(w) > 0 && w[0].ev("Event-Name") == "CHANNEL_PARK" {
				w = w[1:]
			}
			if len(h) > 0 && h[0].ev("Event-Name") == "CHANNEL_PARK" {
				h = h[1:]
			}
		}
		wl, hl := labels(w), labels(h)
		if strings.Join(wl, " ") != strings.Join(hl, " ") {
			c.diff("events of %s differ:\nrecorded:  %s\nsimulated: %s", r, strings.Join(wl, " "), strings.Join(hl, " "))
			continue
		}
		for i := range w {
			c.compareEvent(r, i, w[i], h[i])
		}
	}
	for r := range have {
		if _, ok := want[r]; !ok {
			c.diff("simulated channel %s does not exist in the recording: %s", r, strings.Join(labels(have[r]), " "))
		}
	}
	// hangups, their causes and their order
	hangups := func(fs []*frame) string {
		var out []string
		for _, f := range fs {
			if f.ev("Event-Name") == "CHANNEL_HANGUP" {
				out = append(out, role(f.ev("Channel-Name"))+"="+f.ev("Hangup-Cause"))
			}
		}
		return strings.Join(out, " ")
	}
	if w, h := hangups(rec.frames), hangups(got); w != h {
		c.diff("hangup order differs:\nrecorded:  %s\nsimulated: %s", w, h)
	}
	// background jobs
	jobs := func(fs []*frame) string {
		var out []string
		for _, f := range fs {
			if f.ev("Event-Name") == "BACKGROUND_JOB" {
				out = append(out, f.ev("Job-Command")+" "+normUUIDs(f.ev("Job-Command-Arg"))+" -> "+normUUIDs(f.ev("_body")))
			}
		}
		return strings.Join(out, "\n")
	}
	if w, h := jobs(rec.frames), jobs(got); w != h {
		c.diff("background jobs differ:\nrecorded:  %s\nsimulated: %s", w, h)
	}
	// the connect reply of an outbound connection
	for i, f := range rec.frames {
		if frameKey(f) == "connect-reply" && i < len(got) && frameKey(got[i]) == "connect-reply" {
			c.compareConnectReply(f, got[i])
		}
	}
}

func (c *comparison) compareAPIPlacement(want, got []*frame) {
	before := func(fs []*frame) []int {
		var out []int
		n := 0
		for _, f := range fs {
			if f.event != nil && f.contentType() != "command/reply" && significant(f) && f.ev("Unique-ID") != "" {
				n++
			}
			if f.contentType() == "api/response" {
				out = append(out, n)
			}
		}
		return out
	}
	w, g := before(want), before(got)
	for i := range w {
		if i < len(g) && (w[i] == 0) != (g[i] == 0) {
			c.diff("api response #%d: %d channel events before it in the recording, %d in the simulation", i+1, w[i], g[i])
		}
	}
}

// the headers a controller reads
var comparedHeaders = []string{
	"Answer-State", "Call-Direction", "Hangup-Cause", "Channel-State", "Channel-Call-State",
	"Caller-Caller-ID-Number", "Caller-Caller-ID-Name", "Caller-Destination-Number", "Caller-Context", "Caller-Direction",
	"Caller-Callee-ID-Number", "Caller-ANI", "Channel-HIT-Dialplan",
	"Application", "Application-Data", "Application-Response",
}

// variables compared when FreeSWITCH set them
var comparedVariables = []string{
	"variable_hangup_cause_q850", "variable_hangup_cause", "variable_originate_disposition",
	"variable_DIALSTATUS", "variable_last_bridge_hangup_cause", "variable_originate_failed_cause",
	"variable_bridge_hangup_cause", "variable_continue_on_fail",
}

func (c *comparison) sameUUID(recUUID, simUUID string) bool {
	if recUUID == "" || simUUID == "" {
		return recUUID == simUUID
	}
	return c.uuids[recUUID] == simUUID
}

func (c *comparison) compareEvent(r string, i int, w, h *frame) {
	where := fmt.Sprintf("%s event #%d %s", r, i+1, eventLabel(w))
	for _, name := range comparedHeaders {
		wv, hv := w.ev(name), h.ev(name)
		if name == "Application-Data" {
			wv, hv = addrRE.ReplaceAllString(wv, "<addr>"), addrRE.ReplaceAllString(hv, "<addr>")
		}
		if wv != hv {
			c.diff("%s: %s recorded %q, simulated %q", where, name, wv, hv)
		}
	}
	for _, name := range comparedVariables {
		wv, wok := w.event[name]
		hv, hok := h.event[name]
		if wok != hok || wv != hv {
			c.diff("%s: %s recorded %q (set %v), simulated %q (set %v)", where, name, wv, wok, hv, hok)
		}
	}
	for _, name := range []string{"Unique-ID", "Other-Leg-Unique-ID", "Bridge-A-Unique-ID", "Bridge-B-Unique-ID"} {
		if !c.sameUUID(w.ev(name), h.ev(name)) {
			c.diff("%s: %s recorded %q, simulated %q (mapped %q)", where, name, w.ev(name), h.ev(name), c.uuids[w.ev(name)])
		}
	}
	if role(w.ev("Channel-Name")) != role(h.ev("Channel-Name")) {
		c.diff("%s: Channel-Name recorded %q, simulated %q", where, w.ev("Channel-Name"), h.ev("Channel-Name"))
	}
}

func (c *comparison) compareConnectReply(w, h *frame) {
	for _, name := range []string{"Event-Name", "Channel-State", "Channel-Call-State", "Answer-State",
		"Call-Direction", "Caller-Caller-ID-Number", "Caller-Caller-ID-Name", "Caller-Destination-Number",
		"Caller-Context", "Channel-Destination-Number", "Channel-Context", "Socket-Mode", "Control",
		"variable_current_application", "variable_socket_host", "variable_instance_name"} {
		if wv, hv := w.ev(name), h.ev(name); wv != hv && !(name == "variable_instance_name" && hv != "") {
			c.diff("connect reply: %s recorded %q, simulated %q", name, wv, hv)
		}
	}
	if role(w.ev("Channel-Name")) != role(h.ev("Channel-Name")) {
		c.diff("connect reply: Channel-Name recorded %q, simulated %q", w.ev("Channel-Name"), h.ev("Channel-Name"))
	}
	tail := func(f *frame) string {
		n := len(f.headers)
		if n < 4 {
			return ""
		}
		var out []string
		for _, h := range f.headers[n-4:] {
			out = append(out, h.name+": "+h.value)
		}
		return strings.Join(out, "\n")
	}
	if w, h := tail(w), tail(h); w != h {
		c.diff("connect reply ends differently:\nrecorded:\n%s\nsimulated:\n%s", w, h)
	}
}

// scenario runs one recorded scenario.
type scenario struct {
	base     string // inbound or outbound recording
	outbound bool
	// setup prepares the simulation for an outbound scenario (places the
	// call that reaches the controller).
	setup func(t *testing.T, lab *testLab)
}

func runInbound(t *testing.T, base string) {
	rec := loadRecording(t, base)
	lab := newTestLab(t, callmodel.ScaledClock(speed), testServerSpec{name: "fs1", ip: "127.0.0.11"})
	client := dialClient(t, lab.servers["fs1"].Addr())
	uuids := map[string]string{}
	s := newSession(t, rec, client, &sync.Mutex{}, uuids)
	s.replay()
	c := &comparison{t: t, name: base, uuids: uuids}
	c.compareConnection(rec, s.got, false)
	c.report()
}

func runOutbound(t *testing.T, base string, trigger func(t *testing.T, lab *testLab)) {
	rec := loadRecording(t, base)
	ctl := newController(t)
	lab := newTestLab(t, callmodel.ScaledClock(speed),
		testServerSpec{name: "fs1", ip: "127.0.0.11", controllers: []string{ctl.addr()}})
	trigger(t, lab)
	conn := ctl.accept()
	uuids := map[string]string{}
	s := newSession(t, rec, conn, &sync.Mutex{}, uuids)
	s.replay()
	c := &comparison{t: t, name: base, uuids: uuids}
	c.compareConnection(rec, s.got, true)
	c.report()
}

func TestFidelityInbound(t *testing.T) {
	for _, base := range []string{
		"a1_inbound_originate_101_answer_remote_hangup.plain",
		"a2_inbound_bgapi_originate_101_client_uuid_kill.json",
		"b1_inbound_originate_201_busy.plain",
		"b2_inbound_sendmsg_bridge_201_busy.plain",
		"b3_inbound_sendmsg_bridge_201_busy_continue_on_fail.plain",
		"c_inbound_originate_301_timeout5_no_answer.plain",
		"e_inbound_originate_401_failure.plain",
	} {
		t.Run(base[:strings.IndexByte(base, '_')], func(t *testing.T) {
			t.Parallel()
			runInbound(t, base)
		})
	}
}

// loopbackTrigger is how the d2/d3 recordings were triggered: originate
// loopback/1000/default &park() from another event socket client.
func loopbackTrigger(t *testing.T, lab *testLab) {
	c := lab.inbound(t, "fs1")
	c.send("bgapi originate loopback/1000/default &park()")
	if f := c.next(); !strings.HasPrefix(f.get("Reply-Text"), "+OK Job-UUID") {
		t.Fatalf("trigger: %v", f)
	}
}

func TestFidelityOutbound(t *testing.T) {
	t.Run("d1", func(t *testing.T) {
		t.Parallel()
		runOutbound(t, "d1_outbound_socket_sipp_call_answer_hold.plain", func(t *testing.T, lab *testLab) {
			// sipp -sn uac -s 1000 -d 4000: a SIP caller "sipp" that hangs up
			// 4 s after the answer
			_, err := lab.fleet.PlaceCall("fs1", callmodel.InboundCall{
				Origin:      callmodel.OriginPhone,
				Caller:      callmodel.Party{Name: "sipp", Number: "sipp"},
				Destination: "1000",
				Context:     "public",
				NetworkIP:   "127.0.0.1",
				Plan:        callmodel.CallerPlan{HangupAfterAnswer: 4 * time.Second},
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("d2", func(t *testing.T) {
		t.Parallel()
		runOutbound(t, "d2_outbound_socket_loopback_1000_answer_bridge_101.plain", loopbackTrigger)
	})
	t.Run("d3", func(t *testing.T) {
		t.Parallel()
		runOutbound(t, "d3_outbound_socket_loopback_1000_bridge_201_busy.json", loopbackTrigger)
	})
}

// TestFidelityTrunk replays trace f: fs1 originates over its gateway to
// fs2, whose dialplan hands the call to fs2's controller.
func TestFidelityTrunk(t *testing.T) {
	rec1 := loadRecording(t, "f_fs1_inbound_originate_sofia_gateway_fs2_1000.plain")
	rec2 := loadRecording(t, "f_fs2_outbound_socket_call_from_fs1_over_sip.plain")
	ctl := newController(t)
	lab := newTestLab(t, callmodel.ScaledClock(speed),
		testServerSpec{name: "fs1", ip: "127.0.0.11", gateways: map[string]string{"fs2": "fs2"}},
		testServerSpec{name: "fs2", ip: "127.0.0.12", controllers: []string{ctl.addr()}},
	)
	uuids := map[string]string{}
	mu := &sync.Mutex{}
	s1 := newSession(t, rec1, dialClient(t, lab.servers["fs1"].Addr()), mu, uuids)
	done := make(chan *session, 1)
	go func() {
		// fs2's controller side, once fs1's call arrives
		conn := ctl.accept()
		s2 := newSession(t, rec2, conn, mu, uuids)
		s2.replay()
		done <- s2
	}()
	s1.replay()
	var s2 *session
	select {
	case s2 = <-done:
	case <-time.After(2 * waitLong):
		t.Fatal("fs2 side did not finish")
	}
	c := &comparison{t: t, name: "f", uuids: uuids}
	c.compareConnection(rec1, s1.got, false)
	c.compareConnection(rec2, s2.got, true)
	c.report()
}
