package ari

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func plainServer(t *testing.T) (*Server, *testNet) {
	t.Helper()
	n := newTestNet("ast1")
	n.setPhone("2001", phone{mode: phoneAnswer})
	n.setPhone("2002", phone{mode: phoneBusy})
	s := startServer(t, Config{SystemName: "ast1", Network: n})
	return s, n
}

func TestAuthentication(t *testing.T) {
	checkNoLeak(t)
	s, _ := plainServer(t)
	get := func(u string, user, pass string) (int, string) {
		req, _ := http.NewRequest("GET", u, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
	}
	if st, hdr := get(s.URL()+"/channels", "", ""); st != 401 || !strings.Contains(hdr, "Asterisk REST Interface") {
		t.Errorf("no credentials: %d %q", st, hdr)
	}
	if st, _ := get(s.URL()+"/channels", "ari", "wrong"); st != 401 {
		t.Errorf("wrong password: %d", st)
	}
	if st, _ := get(s.URL()+"/channels", "ari", "ari"); st != 200 {
		t.Errorf("basic auth: %d", st)
	}
	if st, _ := get(s.URL()+"/channels?api_key=ari:ari", "", ""); st != 200 {
		t.Errorf("api_key: %d", st)
	}
	if st, _ := get(s.URL()+"/channels?api_key=ari:nope", "", ""); st != 401 {
		t.Errorf("bad api_key: %d", st)
	}
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+s.Addr()+"/ari/events?app=controller", nil)
	if err == nil || resp == nil || resp.StatusCode != 401 {
		t.Errorf("websocket without credentials: err %v resp %v", err, resp)
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	_, resp, err = websocket.DefaultDialer.Dial("ws://"+s.Addr()+"/ari/events?api_key=ari:ari", nil)
	if err == nil || resp == nil || resp.StatusCode != 400 {
		t.Errorf("websocket without app: err %v resp %v", err, resp)
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
}

func TestListenOnlyOnLoopback(t *testing.T) {
	if _, err := New(Config{Addr: "0.0.0.0:0"}); err == nil {
		t.Error("a non-loopback listen address was accepted")
	}
	if _, err := New(Config{Addr: "10.1.2.3:8088"}); err == nil {
		t.Error("a non-loopback listen address was accepted")
	}
}

func TestRESTErrors(t *testing.T) {
	checkNoLeak(t)
	s, _ := plainServer(t)
	ev := dialEvents(t, s, "controller", "")
	c := newClient(t, s)

	// A created channel is in Stasis and Down; a ringing ;1 is not in Stasis.
	c.must(200, "POST", "/channels/create", vals("endpoint", "Local/101@targets", "app", "controller", "channelId", "made"), nil)
	ev.wait("created channel in Stasis", isType("StasisStart", "made"))
	originate(t, c, "ringer", "Local/301@targets")
	ev.wait("ringing", func(e *jEvent) bool { return e.Type == "Dial" && *e.DialStatus == "RINGING" })

	for _, tc := range []struct {
		method, path string
		q            []string
		body         any
		status       int
		msg          string
	}{
		{"GET", "/channels/nope", nil, nil, 404, "Channel not found"},
		{"DELETE", "/channels/nope", nil, nil, 404, "Channel not found"},
		{"POST", "/channels/nope/answer", nil, nil, 404, "Channel not found"},
		{"POST", "/channels/ringer;2/answer", nil, nil, 409, "Channel not in Stasis application"},
		{"POST", "/channels/ringer/answer", nil, nil, 409, "Channel not in Stasis application"},
		{"POST", "/channels/made/answer", nil, nil, 412, "Channel in invalid state"},
		{"POST", "/channels/made/continue", nil, nil, 412, "Channel in invalid state"},
		{"DELETE", "/channels/made", []string{"reason", "busy", "reason_code", "17"}, nil, 400, "The reason and reason_code can't both be specified"},
		{"DELETE", "/channels/made", []string{"reason", "bogus"}, nil, 400, "Invalid reason for hangup reason provided"},
		{"DELETE", "/channels/made", []string{"reason_code", "x"}, nil, 400, "Invalid reason for hangup reason code provided"},
		{"POST", "/channels", []string{"app", "controller"}, nil, 400, "Endpoint must be specified"},
		{"POST", "/channels", []string{"endpoint", "Local/101@targets"}, nil, 400, "Application or extension must be specified"},
		{"POST", "/channels", []string{"endpoint", "nonsense", "app", "controller"}, nil, 400, "Invalid endpoint specified"},
		{"POST", "/channels", []string{"endpoint", "Local/101@targets", "app", "controller", "channelId", "made"}, nil, 409, "Channel with given unique ID already exists"},
		{"POST", "/channels", []string{"endpoint", "DAHDI/g1/123", "app", "controller"}, nil, 500, "Allocation failed"},
		{"POST", "/channels", []string{"endpoint", "Local/101@targets", "app", "controller"},
			map[string]any{"variables": map[string]any{"X": 1}}, 400, "Only string values in the 'variables' object allowed"},
		{"POST", "/channels", []string{"endpoint", "Local/101@targets", "app", "controller", "channelId", strings.Repeat("x", 150)}, nil, 400, "Uniqueid length exceeds maximum of 149"},
		{"GET", "/channels/made/variable", nil, nil, 400, "Variable name is required"},
		{"GET", "/channels/made/variable", []string{"variable", "NOPE"}, nil, 404, "Provided variable was not found"},
		{"GET", "/channels/nope/variable", []string{"variable", "X"}, nil, 404, "Provided channel was not found"},
		{"POST", "/channels/made/variable", []string{"variable", "BOGUS_FUNC(x)", "value", "1"}, nil, 400, "Failed to execute function"},
		{"POST", "/channels/ringer/dial", nil, nil, 409, "Channel not in Stasis application"},
		{"POST", "/bridges/nope/addChannel", []string{"channel", "made"}, nil, 404, "Bridge not found"},
		{"DELETE", "/bridges/nope", nil, nil, 404, "Bridge not found"},
		{"GET", "/applications/nope", nil, nil, 404, "Application not found"},
		{"GET", "/endpoints/IAX2", nil, nil, 404, "No Endpoints found - invalid tech IAX2"},
		{"GET", "/nothing/here", nil, nil, 404, "Resource not found"},
	} {
		st, b := c.do(tc.method, tc.path, vals(tc.q...), tc.body)
		var m struct{ Message string }
		_ = json.Unmarshal(b, &m)
		if st != tc.status || m.Message != tc.msg {
			t.Errorf("%s %s %v: %d %s, want %d %q", tc.method, tc.path, tc.q, st, b, tc.status, tc.msg)
		}
	}

	// The bridge errors of resource_bridges.c.
	c.must(200, "POST", "/bridges", vals("bridgeId", "b1"), nil)
	c.must(409, "POST", "/bridges", vals("bridgeId", "b1"), nil)
	for _, tc := range []struct {
		path    string
		channel string
		status  int
		msg     string
	}{
		{"/bridges/b1/addChannel", "", 400, "Missing parameter channel"},
		{"/bridges/b1/addChannel", "ghost", 400, "Channel not found"},
		{"/bridges/b1/addChannel", "ringer", 422, "Channel not in Stasis application"},
		{"/bridges/b1/removeChannel", "made", 422, "Channel not in this bridge"},
	} {
		st, b := c.do("POST", tc.path, vals("channel", tc.channel), nil)
		if st != tc.status || !strings.Contains(string(b), tc.msg) {
			t.Errorf("POST %s channel=%q: %d %s, want %d %q", tc.path, tc.channel, st, b, tc.status, tc.msg)
		}
	}
	c.must(204, "POST", "/bridges/b1/addChannel", vals("channel", "made"), nil)
	c.must(204, "DELETE", "/bridges/b1", nil, nil)
	ev.wait("left on bridge deletion", isType("ChannelLeftBridge", "made"))
	ev.wait("bridge destroyed", isType("BridgeDestroyed", "b1"))
	if b := c.must(200, "GET", "/bridges", nil, nil); string(b) != "[]" {
		t.Errorf("bridges left: %s", b)
	}
}

func TestHangupCauses(t *testing.T) {
	checkNoLeak(t)
	s, _ := plainServer(t)
	ev := dialEvents(t, s, "controller", "")
	c := newClient(t, s)
	for _, tc := range []struct {
		id    string
		q     []string
		cause int
	}{
		{"h1", nil, 16},
		{"h2", []string{"reason", "busy"}, 17},
		{"h3", []string{"reason", "congestion"}, 34},
		{"h4", []string{"reason", "no_answer"}, 19},
		{"h5", []string{"reason_code", "21"}, 21},
		{"h6", []string{"reason", "answered_elsewhere"}, 26},
	} {
		originate(t, c, tc.id, "Local/501@targets")
		ev.wait(tc.id+" in Stasis", isType("StasisStart", tc.id))
		c.must(204, "DELETE", "/channels/"+tc.id, vals(tc.q...), nil)
		hr := ev.wait(tc.id+" hangup request", isType("ChannelHangupRequest", tc.id))
		if hr.Cause == nil || *hr.Cause != 32 || hr.Soft == nil || !*hr.Soft {
			t.Errorf("%s: hangup request %s", tc.id, eventLine(hr))
		}
		for _, id := range []string{tc.id, tc.id + ";2"} {
			d := ev.wait(id+" destroyed", isType("ChannelDestroyed", id))
			if *d.Cause != tc.cause {
				t.Errorf("%s: cause %d, want %d", id, *d.Cause, tc.cause)
			}
		}
	}
}

// TestStageExec is the create, subscribe, dial pattern: the channel is in
// Stasis before it is dialed, so no event of the dial is missed.
func TestStageExec(t *testing.T) {
	checkNoLeak(t)
	s, n := plainServer(t)
	ev := dialEvents(t, s, "controller", "")
	c := newClient(t, s)

	b := c.must(200, "POST", "/channels/create", vals("endpoint", "PJSIP/2001", "app", "controller", "appArgs", "leg,1",
		"channelId", "leg1", "callerId", "\"Org A\" <113999>"),
		map[string]any{"variables": map[string]string{"PJSIP_HEADER(add,X-Callctl-Org)": "a"}})
	var snap jChannel
	_ = json.Unmarshal(b, &snap)
	if snap.State != "Down" || snap.Name != "PJSIP/2001-00000000" || snap.Caller.Number != "113999" || snap.Caller.Name != "Org A" {
		t.Errorf("created channel: %s", b)
	}
	start := ev.wait("StasisStart before dial", isType("StasisStart", "leg1"))
	if start.Channel.State != "Down" || len(start.Args) != 2 || start.Args[1] != "1" {
		t.Errorf("StasisStart of a created channel: %s", eventLine(start))
	}
	if len(n.records()) != 0 {
		t.Fatal("the phone rang before /dial")
	}
	c.must(204, "POST", "/channels/leg1/dial", vals("timeout", "10"), nil)
	ev.wait("answered", func(e *jEvent) bool { return e.Type == "Dial" && e.Peer.ID == "leg1" && *e.DialStatus == "ANSWER" })
	c.must(409, "POST", "/channels/leg1/dial", nil, nil)
	recs := n.records()
	if len(recs) != 1 || recs[0].caller.Number != "113999" || recs[0].headers["X-Callctl-Org"] != "a" {
		t.Errorf("ring records: %+v", recs)
	}
	starts := 0
	for _, e := range ev.snapshot() {
		if e.ev.Type == "StasisStart" {
			starts++
		}
	}
	if starts != 1 {
		t.Errorf("%d StasisStart for one created channel", starts)
	}
	// A Local channel created then dialed.
	c.must(200, "POST", "/channels/create", vals("endpoint", "Local/201@targets", "app", "controller", "channelId", "leg2"), nil)
	ev.wait("leg2 in Stasis", isType("StasisStart", "leg2"))
	c.must(204, "POST", "/channels/leg2/dial", nil, nil)
	ev.wait("busy", func(e *jEvent) bool { return e.Type == "Dial" && e.Peer.ID == "leg2" && *e.DialStatus == "BUSY" })
	ev.wait("leg2 left Stasis", isType("StasisEnd", "leg2"))
	d := ev.wait("leg2 destroyed", isType("ChannelDestroyed", "leg2"))
	if *d.Cause != 0 {
		t.Errorf("busy Local ;1 cause %d, want 0", *d.Cause)
	}
	// An originated channel cannot be dialed again.
	originate(t, c, "orig", "Local/501@targets")
	ev.wait("orig in Stasis", isType("StasisStart", "orig"))
	st, body := c.do("POST", "/channels/orig/dial", nil, nil)
	if st != 409 {
		t.Errorf("dial of an originated channel: %d %s", st, body)
	}
}

func TestContinueAndVariables(t *testing.T) {
	checkNoLeak(t)
	s, _ := plainServer(t)
	ev := dialEvents(t, s, "controller", "")
	c := newClient(t, s)

	sc := callIn(t, s, InboundCall{Endpoint: "2001", Context: "from-sipp", Exten: "600", Caller: Party{Name: "A", Number: "2001"},
		Headers: map[string]string{"X-Callctl-Org": "org-1"}})
	start := ev.wait("StasisStart", isType("StasisStart", ""))
	id := start.Channel.ID
	c.must(204, "POST", "/channels/"+id+"/ring", nil, nil)
	eventually(t, "the caller hears ringing", func() bool { r, _ := sc.state(); return r })
	if b := c.must(200, "GET", "/channels/"+id, nil, nil); !strings.Contains(string(b), `"state":"Ring"`) {
		t.Errorf("an inbound channel stays Ring after /ring: %s", b)
	}
	c.must(204, "POST", "/channels/"+id+"/answer", nil, nil)
	eventually(t, "the caller is answered", func() bool { _, a := sc.state(); return a })

	// Variables: plain ones are reported, functions are not.
	c.must(204, "POST", "/channels/"+id+"/variable", vals("variable", "ROUTE", "value", "hunt-1"), nil)
	vs := ev.wait("varset", func(e *jEvent) bool { return e.Type == "ChannelVarset" && e.Variable == "ROUTE" })
	if vs.Value != "hunt-1" {
		t.Errorf("varset %s", eventLine(vs))
	}
	for q, want := range map[string]string{
		"ROUTE":                            "hunt-1",
		"PJSIP_HEADER(read,X-Callctl-Org)": "org-1",
		"CALLERID(num)":                    "2001",
		"CHANNEL(name)":                    start.Channel.Name,
		"UNIQUEID":                         id,
	} {
		b := c.must(200, "GET", "/channels/"+id+"/variable", vals("variable", q), nil)
		var v struct{ Value string }
		_ = json.Unmarshal(b, &v)
		if v.Value != want {
			t.Errorf("%s = %q, want %q", q, v.Value, want)
		}
	}
	c.must(204, "POST", "/channels/"+id+"/variable", vals("variable", "CALLERID(num)", "value", "113999"), nil)
	cid := ev.wait("caller id change", isType("ChannelCallerId", id))
	if cid.Channel.Caller.Number != "113999" {
		t.Errorf("ChannelCallerId %+v", cid.Channel.Caller)
	}

	// Back to the dialplan: the same context re-enters Stasis with the new
	// extension.
	c.must(204, "POST", "/channels/"+id+"/continue", vals("context", "from-sipp", "extension", "2099", "priority", "1"), nil)
	ev.wait("StasisEnd", isType("StasisEnd", id))
	again := ev.waitN("second StasisStart", 2, isType("StasisStart", id))
	if len(again.Args) != 2 || again.Args[1] != "2099" || again.Channel.Dialplan.Exten != "2099" {
		t.Errorf("after continue: %s args %q", eventLine(again), again.Args)
	}
	// Into the lab's targets: 201 is Busy(), the caller gets 17.
	c.must(204, "POST", "/channels/"+id+"/continue", vals("context", "targets", "extension", "201"), nil)
	if cause := sc.waitEnded(t); cause != 17 {
		t.Errorf("caller sent to 201 got cause %d", cause)
	}
}

func TestApplicationsAndSubscriptions(t *testing.T) {
	checkNoLeak(t)
	s, _ := plainServer(t)
	ev := dialEvents(t, s, "controller", "")
	c := newClient(t, s)
	callIn(t, s, InboundCall{Endpoint: "2001", Context: "from-sipp", Exten: "600", Caller: Party{Number: "2001"}})
	start := ev.wait("StasisStart", isType("StasisStart", ""))
	id := start.Channel.ID

	b := c.must(200, "GET", "/applications/controller", nil, nil)
	want := `{"name":"controller","channel_ids":["` + id + `"],"bridge_ids":[],"endpoint_ids":[],"device_names":[],"events_allowed":[],"events_disallowed":[]}`
	if string(b) != want {
		t.Errorf("application: %s\nwant %s", b, want)
	}
	for _, tc := range []struct {
		src    string
		status int
	}{
		{"", 400},
		{"channel:ghost", 422},
		{"bridge:ghost", 422},
		{"carrier:pigeon", 400},
	} {
		if st, b := c.do("POST", "/applications/controller/subscription", vals("eventSource", tc.src), nil); st != tc.status {
			t.Errorf("subscribe %q: %d %s, want %d", tc.src, st, b, tc.status)
		}
	}
	c.must(404, "POST", "/applications/nope/subscription", vals("eventSource", "channel:"+id), nil)
	// Explicitly subscribed, the application keeps hearing about the
	// channel after StasisEnd.
	c.must(200, "POST", "/applications/controller/subscription", vals("eventSource", "channel:"+id), nil)
	c.must(204, "DELETE", "/channels/"+id, nil, nil)
	ev.wait("StasisEnd", isType("StasisEnd", id))
	ev.wait("ChannelDestroyed after StasisEnd", isType("ChannelDestroyed", id))
	if b := c.must(200, "GET", "/applications", nil, nil); !strings.HasPrefix(string(b), `[{"name":"controller"`) {
		t.Errorf("applications: %s", b)
	}
}

func TestSecondSocketReplacesTheFirst(t *testing.T) {
	checkNoLeak(t)
	s, _ := plainServer(t)
	c := newClient(t, s)
	first := dialEvents(t, s, "controller", "")
	second := dialEvents(t, s, "controller", "")
	rep := first.wait("ApplicationReplaced", isType("ApplicationReplaced", ""))
	if rep.Application != "controller" {
		t.Errorf("ApplicationReplaced: %+v", rep)
	}
	originate(t, c, "x", "Local/501@targets")
	second.wait("StasisStart on the new socket", isType("StasisStart", "x"))
	for _, e := range first.snapshot() {
		if e.ev.Type != "ApplicationReplaced" {
			t.Errorf("replaced socket still got %s", eventLine(&e.ev))
		}
	}
	// The old socket stays open, as in Asterisk.
	first.mu.Lock()
	closed := first.closed
	first.mu.Unlock()
	if closed {
		t.Error("the replaced socket was closed")
	}
}

func TestSubscribeAllSeesCreations(t *testing.T) {
	checkNoLeak(t)
	s, _ := plainServer(t)
	c := newClient(t, s)
	all := dialEvents(t, s, "watcher", "&subscribeAll=true")
	ctl := dialEvents(t, s, "controller", "&subscribeAll=false")
	originate(t, c, "x", "Local/501@targets")
	ctl.wait("StasisStart", isType("StasisStart", "x"))
	c.must(200, "POST", "/bridges", vals("bridgeId", "b"), nil)
	all.wait("ChannelCreated", isType("ChannelCreated", "x"))
	all.wait("ChannelCreated ;2", isType("ChannelCreated", "x;2"))
	all.wait("BridgeCreated", isType("BridgeCreated", "b"))
	all.wait("ChannelDialplan of ;2", isType("ChannelDialplan", "x;2"))
	for _, e := range ctl.snapshot() {
		if e.ev.Type == "ChannelCreated" || e.ev.Type == "BridgeCreated" {
			t.Errorf("explicit subscriber got %s", eventLine(&e.ev))
		}
	}
}

// --- fault injection --------------------------------------------------------------

func TestDropWebSocketsKeepsChannelsInStasis(t *testing.T) {
	checkNoLeak(t)
	s, _ := plainServer(t)
	c := newClient(t, s)
	ev := dialEvents(t, s, "controller", "")
	originate(t, c, "keep", "Local/501@targets")
	ev.wait("StasisStart", isType("StasisStart", "keep"))

	s.DropWebSockets()
	ev.waitClosed()
	b := c.must(200, "GET", "/channels/keep", nil, nil)
	if !strings.Contains(string(b), `"app_name":"Stasis"`) {
		t.Errorf("channel after the socket dropped: %s", b)
	}
	// Events while nobody listens are lost, as in Asterisk.
	c.must(204, "POST", "/channels/keep/variable", vals("variable", "LOST", "value", "1"), nil)
	again := dialEvents(t, s, "controller", "")
	c.must(204, "DELETE", "/channels/keep", nil, nil)
	again.wait("StasisEnd after reconnect", isType("StasisEnd", "keep"))
	for _, e := range again.snapshot() {
		if e.ev.Variable == "LOST" {
			t.Error("an event sent while disconnected was replayed")
		}
	}
}

func TestFailREST(t *testing.T) {
	checkNoLeak(t)
	s, _ := plainServer(t)
	c := newClient(t, s)
	s.FailNextREST(503, 2)
	for i := 0; i < 2; i++ {
		if st, _ := c.do("GET", "/channels", nil, nil); st != 503 {
			t.Errorf("request %d during the fault: %d", i, st)
		}
	}
	c.must(200, "GET", "/channels", nil, nil)

	s.FailREST(500, time.Hour)
	if st, _ := c.do("GET", "/asterisk/info", nil, nil); st != 500 {
		t.Errorf("during a timed fault: %d", st)
	}
	_, resp, err := websocket.DefaultDialer.Dial(s.WebSocketURL("controller"), nil)
	if err == nil || resp == nil || resp.StatusCode != 500 {
		t.Errorf("websocket during a fault: %v %v", err, resp)
	}
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	s.FailREST(0, 0)
	c.must(200, "GET", "/asterisk/info", nil, nil)
}

func TestSendRawOddFrames(t *testing.T) {
	checkNoLeak(t)
	s, _ := plainServer(t)
	ev := dialEvents(t, s, "controller", "")
	frames := []string{
		`{"type":"ChannelTransfer","application":"controller"}`,
		`{"type":"NoSuchEvent","foo":[1,2,3]}`,
		`{"type":"StasisStart","channel":null}`,
		`{"type":"ChannelDestroyed","cause":"sixteen","channel":{"id":42}}`,
		`not json at all`,
		`{"type":`,
	}
	for _, f := range frames {
		if !s.SendRaw("controller", []byte(f)) {
			t.Fatal("no socket to send to")
		}
	}
	if s.SendRaw("nobody", []byte("{}")) {
		t.Error("SendRaw to an unregistered application reported success")
	}
	eventually(t, "every odd frame arrived", func() bool { return len(ev.snapshot()) == len(frames) })
	for i, e := range ev.snapshot() {
		if string(e.raw) != frames[i] {
			t.Errorf("frame %d: %q, want %q", i, e.raw, frames[i])
		}
	}
}

func TestRestartWithoutModel(t *testing.T) {
	checkNoLeak(t)
	s, _ := plainServer(t)
	c := newClient(t, s)
	ev := dialEvents(t, s, "controller", "")
	sc := callIn(t, s, InboundCall{Endpoint: "2001", Context: "from-sipp", Exten: "600", Caller: Party{Number: "2001"}})
	ev.wait("StasisStart", isType("StasisStart", ""))
	addr := s.Addr()
	var before struct {
		System struct {
			EntityID string `json:"entity_id"`
		} `json:"system"`
		Status struct {
			Startup string `json:"startup_time"`
		} `json:"status"`
	}
	_ = json.Unmarshal(c.must(200, "GET", "/asterisk/info", nil, nil), &before)

	done := make(chan error, 1)
	go func() { done <- s.Restart(t.Context(), 2*time.Second, "02:00:00:00:ff:01") }()
	ev.waitClosed()
	if cause := sc.waitEnded(t); cause == 0 {
		t.Error("the caller's call ended without a cause")
	}
	// While it is down, nothing listens.
	var restartErr error
	restarted := false
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		select {
		case restartErr = <-done:
			restarted = true // too slow a machine to tell
		default:
			t.Error("the restarting server accepted a connection")
		}
	}
	if !restarted {
		restartErr = <-done
	}
	if restartErr != nil {
		t.Fatal(restartErr)
	}
	if s.Addr() != addr {
		t.Errorf("restarted on %s, was %s", s.Addr(), addr)
	}
	var after = before
	_ = json.Unmarshal(c.must(200, "GET", "/asterisk/info", nil, nil), &after)
	if after.System.EntityID != "02:00:00:00:ff:01" || after.Status.Startup == "" {
		t.Errorf("info after restart: %+v", after)
	}
	if b := c.must(200, "GET", "/channels", nil, nil); string(b) != "[]" {
		t.Errorf("channels survived the restart: %s", b)
	}
	ev2 := dialEvents(t, s, "controller", "")
	originate(t, c, "new", "Local/501@targets")
	got := ev2.wait("StasisStart after restart", isType("StasisStart", "new"))
	if !strings.HasPrefix(got.Channel.Name, "Local/501@targets-00000000") {
		t.Errorf("Local counter not reset: %s", got.Channel.Name)
	}
	if got.AsteriskID != "02:00:00:00:ff:01" {
		t.Errorf("asterisk_id after restart: %s", got.AsteriskID)
	}
}

// TestWebSocketControlFrames: pings are answered with pongs and a close
// frame with a close frame, through the same writer as the events.
func TestWebSocketControlFrames(t *testing.T) {
	checkNoLeak(t)
	s, _ := plainServer(t)
	conn, resp, err := websocket.DefaultDialer.Dial(s.WebSocketURL("controller"), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	defer conn.Close()
	pong := make(chan string, 1)
	conn.SetPongHandler(func(d string) error { pong <- d; return nil })
	closed := make(chan int, 1)
	conn.SetCloseHandler(func(code int, _ string) error { closed <- code; return nil })
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				readErr <- err
				return
			}
		}
	}()
	if err := conn.WriteControl(websocket.PingMessage, []byte("hello"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-pong:
		if d != "hello" {
			t.Errorf("pong %q", d)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no pong")
	}
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
	if err := conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-closed:
		if code != websocket.CloseNormalClosure {
			t.Errorf("close code %d", code)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no close frame back")
	}
	select {
	case <-readErr:
	case <-time.After(waitTimeout):
		t.Fatal("the server did not close the connection")
	}
}
