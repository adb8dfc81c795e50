package ari

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

type modelLab struct {
	fleet   *callmodel.Fleet
	servers map[string]*Server
	models  map[string]*callmodel.Server
}

func newModelLab(t *testing.T, names ...string) *modelLab {
	t.Helper()
	l := &modelLab{fleet: callmodel.NewFleet(), servers: map[string]*Server{}, models: map[string]*callmodel.Server{}}
	for i, n := range names {
		ms, err := l.fleet.AddServer(callmodel.ServerConfig{Name: n, Kind: callmodel.Asterisk, IP: "127.0.0.2" + string(rune('1'+i))})
		if err != nil {
			t.Fatal(err)
		}
		s, err := Attach(ms, Config{EntityID: "02:00:00:00:a5:0" + string(rune('1'+i))})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		l.servers[n], l.models[n] = s, ms
	}
	t.Cleanup(func() {
		for _, s := range l.servers {
			_ = s.Close()
		}
		l.fleet.Close()
	})
	return l
}

// hangups collects the model's ChannelHangup events of a server.
type hangups struct {
	mu  sync.Mutex
	evs []callmodel.Event
}

func watchHangups(t *testing.T, ms *callmodel.Server) *hangups {
	h := &hangups{}
	stop := ms.Subscribe(func(_ *callmodel.Tx, ev *callmodel.Event) {
		if ev.Kind == callmodel.ChannelHangup {
			h.mu.Lock()
			h.evs = append(h.evs, *ev)
			h.mu.Unlock()
		}
	})
	t.Cleanup(stop)
	return h
}

func (h *hangups) of(uuid string) (callmodel.Event, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.evs {
		if e.Channel.UUID == uuid {
			return e, true
		}
	}
	return callmodel.Event{}, false
}

func originate(t *testing.T, c *client, id, endpoint string, extra ...string) []byte {
	t.Helper()
	q := vals(append([]string{"endpoint", endpoint, "app", "controller", "appArgs", "test", "channelId", id,
		"callerId", "Lab <5550100>"}, extra...)...)
	return c.must(200, "POST", "/channels", q, nil)
}

func TestModelPhoneOutcomes(t *testing.T) {
	checkNoLeak(t)
	lab := newModelLab(t, "ast1")
	f := lab.fleet
	f.SetPhone("ast1", "2001", callmodel.Answer(20*time.Millisecond))
	f.SetPhone("ast1", "2002", callmodel.Busy())
	f.SetPhone("ast1", "2003", callmodel.Reject())
	f.SetPhone("ast1", "2004", callmodel.Unregistered())
	f.SetPhone("ast1", "2005", callmodel.RingForever())
	s := lab.servers["ast1"]
	ev := dialEvents(t, s, "controller", "")
	c := newClient(t, s)

	// Answered: Dial "", RINGING, ANSWER, then Stasis.
	var snap jChannel
	if err := json.Unmarshal(originate(t, c, "p1", "PJSIP/2001"), &snap); err != nil {
		t.Fatal(err)
	}
	if snap.Name != "PJSIP/2001-00000000" || snap.State != "Down" || snap.Dialplan.AppName != "AppDial2" {
		t.Errorf("originate reply: %+v", snap)
	}
	ev.wait("StasisStart p1", isType("StasisStart", "p1"))
	var statuses []string
	for _, e := range ev.snapshot() {
		if e.ev.Type == "Dial" && e.ev.Peer.ID == "p1" {
			statuses = append(statuses, *e.ev.DialStatus)
		}
	}
	if got := statuses; len(got) != 3 || got[0] != "" || got[1] != "RINGING" || got[2] != "ANSWER" {
		t.Errorf("Dial statuses of the answered phone: %q", got)
	}
	c.must(204, "DELETE", "/channels/p1", nil, nil)
	d := ev.wait("p1 destroyed", isType("ChannelDestroyed", "p1"))
	if *d.Cause != 16 {
		t.Errorf("p1 cause %d", *d.Cause)
	}

	// Refused and unanswered calls end with the cause the phone gave.
	for _, tc := range []struct {
		id, ext, status string
		cause           int
		extra           []string
	}{
		{"p2", "2002", "BUSY", 17, nil},
		{"p3", "2003", "NOANSWER", 21, nil},
		{"p5", "2005", "", 19, []string{"timeout", "1"}},
	} {
		originate(t, c, tc.id, "PJSIP/"+tc.ext, tc.extra...)
		d := ev.wait(tc.id+" destroyed", isType("ChannelDestroyed", tc.id))
		if *d.Cause != tc.cause || d.CauseTxt != causeText(tc.cause) {
			t.Errorf("%s: cause %d %q, want %d", tc.ext, *d.Cause, d.CauseTxt, tc.cause)
		}
		if tc.status != "" {
			last := ""
			for _, e := range ev.snapshot() {
				if e.ev.Type == "Dial" && e.ev.Peer.ID == tc.id {
					last = *e.ev.DialStatus
				}
			}
			if last != tc.status {
				t.Errorf("%s: last dialstatus %q, want %q", tc.ext, last, tc.status)
			}
		}
	}
	for _, e := range ev.snapshot() {
		if e.ev.Type == "StasisStart" && e.ev.Channel.ID != "p1" {
			t.Errorf("unexpected StasisStart for %s", e.ev.Channel.ID)
		}
	}

	// Unregistered: the originate itself fails and nothing rings.
	st, body := c.do("POST", "/channels", vals("endpoint", "PJSIP/2004", "app", "controller"), nil)
	if st != 500 || string(body) != `{"message":"Allocation failed"}` {
		t.Errorf("originate to an unregistered phone: %d %s", st, body)
	}
	b := c.must(200, "GET", "/endpoints/PJSIP/2004", nil, nil)
	if string(b) != `{"technology":"PJSIP","resource":"2004","state":"offline","channel_ids":[]}` {
		t.Errorf("endpoint 2004: %s", b)
	}
	b = c.must(200, "GET", "/endpoints/PJSIP/2001", nil, nil)
	if string(b) != `{"technology":"PJSIP","resource":"2001","state":"online","channel_ids":[]}` {
		t.Errorf("endpoint 2001: %s", b)
	}
	c.must(404, "GET", "/endpoints/PJSIP/9999", nil, nil)

	eventually(t, "every ring ended", func() bool {
		for _, r := range f.Rings() {
			if !r.Ended() {
				return false
			}
		}
		return len(f.Rings()) == 4
	})
	want := map[string]callmodel.Outcome{"2001": callmodel.OutcomeAnswered, "2002": callmodel.OutcomeBusy,
		"2003": callmodel.OutcomeRejected, "2005": callmodel.OutcomeCancelled}
	for _, r := range f.Rings() {
		if r.Outcome != want[r.Target] {
			t.Errorf("ring of %s: outcome %s, want %s", r.Target, r.Outcome, want[r.Target])
		}
		if r.Caller.Number != "5550100" || r.Caller.Name != "Lab" {
			t.Errorf("ring of %s presented %+v", r.Target, r.Caller)
		}
	}
	if n := len(f.RingsOf("ast1", "2004")); n != 0 {
		t.Errorf("the unregistered phone rang %d times", n)
	}
}

func TestModelInboundCallBridgedToPhone(t *testing.T) {
	checkNoLeak(t)
	lab := newModelLab(t, "ast1")
	lab.fleet.SetPhone("ast1", "2002", callmodel.Answer(0))
	s, ms := lab.servers["ast1"], lab.models["ast1"]
	ev := dialEvents(t, s, "controller", "")
	c := newClient(t, s)

	uuid, err := lab.fleet.PlaceCall("ast1", callmodel.InboundCall{Origin: callmodel.OriginPhone, FromExt: "2001",
		Caller: callmodel.Party{Name: "Alice", Number: "2001"}, Destination: "2099"})
	if err != nil {
		t.Fatal(err)
	}
	start := ev.wait("StasisStart", isType("StasisStart", ""))
	ch := start.Channel
	if ch.Name != "PJSIP/2001-00000000" || ch.State != "Ring" || ch.Caller.Number != "2001" ||
		ch.Dialplan.Context != "from-sipp" || ch.Dialplan.Exten != "2099" || ch.Dialplan.Priority != 2 ||
		ch.Dialplan.AppData != "controller,from-sipp,2099" {
		t.Errorf("inbound channel: %+v", ch)
	}
	if len(start.Args) != 2 || start.Args[0] != "from-sipp" || start.Args[1] != "2099" {
		t.Errorf("args %q", start.Args)
	}
	c.must(204, "POST", "/channels/"+ch.ID+"/answer", nil, nil)
	eventually(t, "the caller is answered in the model", func() bool {
		snap, ok := ms.Snapshot(uuid)
		return ok && snap.State == callmodel.StateUp
	})
	originate(t, c, "callee", "PJSIP/2002")
	ev.wait("callee in Stasis", isType("StasisStart", "callee"))
	c.must(200, "POST", "/bridges", vals("bridgeId", "b1", "type", "mixing"), nil)
	c.must(204, "POST", "/bridges/b1/addChannel", vals("channel", ch.ID+",callee"), nil)
	eventually(t, "the model sees the bridge", func() bool {
		snap, ok := ms.Snapshot(uuid)
		return ok && snap.BridgedTo == "callee"
	})

	// The caller hangs up: a BYE from a phone carries no cause.
	if err := ms.Do(func(tx *callmodel.Tx) error {
		tx.Hangup(uuid, callmodel.CauseNormalClearing, callmodel.ByRemote)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	hr := ev.wait("caller hangup request", isType("ChannelHangupRequest", ch.ID))
	if hr.Cause != nil || hr.Soft != nil {
		t.Errorf("hangup request of a phone BYE: cause %v soft %v", hr.Cause, hr.Soft)
	}
	ev.wait("caller left the bridge", isType("ChannelLeftBridge", ch.ID))
	ev.wait("caller StasisEnd", isType("StasisEnd", ch.ID))
	// Implicitly subscribed: nothing more about the caller after StasisEnd.
	c.must(204, "DELETE", "/channels/callee", nil, nil)
	ev.wait("callee destroyed", isType("ChannelDestroyed", "callee"))
	for _, e := range ev.snapshot() {
		if e.ev.Type == "ChannelDestroyed" && e.ev.Channel.ID == ch.ID {
			t.Error("ChannelDestroyed delivered for a channel that entered Stasis from the dialplan")
		}
	}
	rings := lab.fleet.RingsOf("ast1", "2002")
	if len(rings) != 1 || rings[0].Caller.Number != "5550100" {
		t.Errorf("rings of 2002: %+v", rings)
	}
}

func TestModelTrunkCarriesHeadersAndCauses(t *testing.T) {
	checkNoLeak(t)
	lab := newModelLab(t, "ast1", "ast2")
	s1, s2 := lab.servers["ast1"], lab.servers["ast2"]
	ev1 := dialEvents(t, s1, "controller", "")
	ev2 := dialEvents(t, s2, "controller", "")
	c1, c2 := newClient(t, s1), newClient(t, s2)

	c1.must(200, "POST", "/channels", vals("endpoint", "PJSIP/2099@ast2", "app", "controller", "appArgs", "lab",
		"channelId", "out1", "callerId", "113999"),
		map[string]any{"variables": map[string]string{"PJSIP_HEADER(add,X-Callctl-Org)": "org-7"}})
	in := ev2.wait("StasisStart on ast2", isType("StasisStart", ""))
	if in.Channel.Name != "PJSIP/ast1-00000000" || in.Channel.Caller.Number != "113999" ||
		len(in.Args) != 2 || in.Args[0] != "from-trunk" || in.Args[1] != "2099" {
		t.Errorf("trunk channel on ast2: %+v args %q", in.Channel, in.Args)
	}
	b := c2.must(200, "GET", "/channels/"+in.Channel.ID+"/variable",
		vals("variable", "PJSIP_HEADER(read,X-Callctl-Org)"), nil)
	if string(b) != `{"value":"org-7"}` {
		t.Errorf("header on ast2: %s", b)
	}
	st, b := c2.do("GET", "/channels/"+in.Channel.ID+"/variable", vals("variable", "PJSIP_HEADER(read,X-Missing)"), nil)
	if st != 500 {
		t.Errorf("missing header: %d %s", st, b)
	}
	c2.must(204, "POST", "/channels/"+in.Channel.ID+"/ring", nil, nil)
	ev1.wait("ringing on ast1", func(e *jEvent) bool {
		return e.Type == "Dial" && e.Peer.ID == "out1" && *e.DialStatus == "RINGING"
	})
	c2.must(204, "POST", "/channels/"+in.Channel.ID+"/answer", nil, nil)
	ev1.wait("StasisStart on ast1", isType("StasisStart", "out1"))
	c1.must(204, "DELETE", "/channels/out1", nil, nil)
	hr := ev2.wait("hangup on ast2", isType("ChannelHangupRequest", in.Channel.ID))
	if hr.Cause == nil || *hr.Cause != 16 || hr.Soft != nil {
		t.Errorf("trunk BYE: cause %v soft %v", hr.Cause, hr.Soft)
	}
	ev2.wait("StasisEnd on ast2", isType("StasisEnd", in.Channel.ID))

	// Busy from the far controller comes back as cause 17.
	c1.must(200, "POST", "/channels", vals("endpoint", "PJSIP/2098@ast2", "app", "controller", "channelId", "out2"), nil)
	in2 := ev2.waitN("second StasisStart on ast2", 2, isType("StasisStart", ""))
	c2.must(204, "DELETE", "/channels/"+in2.Channel.ID, vals("reason", "busy"), nil)
	d := ev1.wait("out2 destroyed", isType("ChannelDestroyed", "out2"))
	if *d.Cause != 17 {
		t.Errorf("busy over the trunk: cause %d", *d.Cause)
	}
}

func TestModelFallbackWithoutController(t *testing.T) {
	checkNoLeak(t)
	lab := newModelLab(t, "ast1")
	ms := lab.models["ast1"]
	h := watchHangups(t, ms)
	call := callmodel.InboundCall{Origin: callmodel.OriginPSTN, Caller: callmodel.Party{Number: "+4930123"}, Destination: "+4940555"}

	// Nobody ever connected.
	uuid, err := lab.fleet.PlaceCall("ast1", call)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the caller gets the fallback", func() bool { _, ok := h.of(uuid); return ok })
	if e, _ := h.of(uuid); e.Channel.Cause != callmodel.CauseNormalCircuitCongestion {
		t.Errorf("fallback cause %s", e.Channel.Cause)
	}

	// A controller that was connected and went away: the app is inactive.
	ev := dialEvents(t, lab.servers["ast1"], "controller", "")
	ev.close()
	eventually(t, "the application is inactive", func() bool {
		e := lab.servers["ast1"].eng
		e.lock()
		defer e.unlock()
		a := e.apps["controller"]
		return a != nil && a.session == nil
	})
	uuid, err = lab.fleet.PlaceCall("ast1", call)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the caller gets the fallback again", func() bool { _, ok := h.of(uuid); return ok })
	if e, _ := h.of(uuid); e.Channel.Cause != callmodel.CauseNormalCircuitCongestion {
		t.Errorf("fallback cause %s", e.Channel.Cause)
	}
}

func TestModelRestartDropsEverything(t *testing.T) {
	checkNoLeak(t)
	lab := newModelLab(t, "ast1")
	lab.fleet.SetPhone("ast1", "2001", callmodel.Answer(0))
	s := lab.servers["ast1"]
	ev := dialEvents(t, s, "controller", "")
	c := newClient(t, s)
	originate(t, c, "p1", "PJSIP/2001")
	ev.wait("in Stasis", isType("StasisStart", "p1"))
	var before struct {
		Status struct {
			Startup string `json:"startup_time"`
		} `json:"status"`
	}
	_ = json.Unmarshal(c.must(200, "GET", "/asterisk/info", nil, nil), &before)

	if err := lab.models["ast1"].Restart(); err != nil {
		t.Fatal(err)
	}
	ev.waitClosed()
	if b := c.must(200, "GET", "/channels", nil, nil); string(b) != "[]" {
		t.Errorf("channels after restart: %s", b)
	}
	eventually(t, "the phone's ring is lost", func() bool {
		r := lab.fleet.RingsOf("ast1", "2001")
		return len(r) == 1 && r[0].Outcome == callmodel.OutcomeLost
	})
	c.must(404, "GET", "/applications/controller", nil, nil)
	ev2 := dialEvents(t, s, "controller", "")
	originate(t, c, "p2", "PJSIP/2001")
	ev2.wait("in Stasis after restart", isType("StasisStart", "p2"))
}

func TestModelPSTN(t *testing.T) {
	checkNoLeak(t)
	lab := newModelLab(t, "ast1")
	lab.fleet.SetPSTN("+4930111222", callmodel.Answer(0))
	s := lab.servers["ast1"]
	ev := dialEvents(t, s, "controller", "")
	c := newClient(t, s)

	originate(t, c, "ext1", "PJSIP/+4930111222@pstn", "callerId", "+4940555")
	start := ev.wait("PSTN leg answered", isType("StasisStart", "ext1"))
	if start.Channel.Name != "PJSIP/pstn-00000000" {
		t.Errorf("PSTN channel name %s", start.Channel.Name)
	}
	rings := lab.fleet.RingsOf("", "+4930111222")
	if len(rings) != 1 || !rings[0].PSTN || rings[0].Caller.Number != "+4940555" {
		t.Errorf("PSTN rings: %+v", rings)
	}
	st, _ := c.do("POST", "/channels", vals("endpoint", "PJSIP/+4930999@pstn", "app", "controller"), nil)
	if st != 500 {
		t.Errorf("unallocated PSTN number: %d", st)
	}

	// A call from the PSTN to a DID.
	if _, err := lab.fleet.PlaceCall("ast1", callmodel.InboundCall{Origin: callmodel.OriginPSTN,
		Caller: callmodel.Party{Number: "+4930777"}, Destination: "+4940100"}); err != nil {
		t.Fatal(err)
	}
	in := ev.wait("PSTN call in Stasis", func(e *jEvent) bool { return e.Type == "StasisStart" && e.Channel.ID != "ext1" })
	if !strings.HasPrefix(in.Channel.Name, "PJSIP/pstn-") || len(in.Args) != 2 || in.Args[0] != "from-pstn" || in.Args[1] != "+4940100" ||
		in.Channel.Caller.Number != "+4930777" {
		t.Errorf("PSTN call: %s args %q", eventLine(in), in.Args)
	}
	b := c.must(200, "GET", "/endpoints/PJSIP/pstn", nil, nil)
	var ep struct {
		State      string   `json:"state"`
		ChannelIDs []string `json:"channel_ids"`
	}
	_ = json.Unmarshal(b, &ep)
	if ep.State != "online" || len(ep.ChannelIDs) != 2 {
		t.Errorf("pstn endpoint: %s", b)
	}
}

func TestTargetAnswerHangsUpByItself(t *testing.T) {
	checkNoLeak(t)
	s := startServer(t, Config{SystemName: "ast1", Network: newTestNet("ast1"), TargetHangupAfter: 200 * time.Millisecond})
	ev := dialEvents(t, s, "controller", "")
	c := newClient(t, s)
	originate(t, c, "t1", "Local/101@targets")
	ev.wait("in Stasis", isType("StasisStart", "t1"))
	hr := ev.wait("hangup request from ;2", isType("ChannelHangupRequest", "t1"))
	if hr.Cause == nil || *hr.Cause != 16 || hr.Soft != nil {
		t.Errorf("hangup request: %s", eventLine(hr))
	}
	ev.wait("StasisEnd", isType("StasisEnd", "t1"))
	for _, id := range []string{"t1", "t1;2"} {
		if d := ev.wait(id+" destroyed", isType("ChannelDestroyed", id)); *d.Cause != 16 {
			t.Errorf("%s cause %d", id, *d.Cause)
		}
	}
}

// TestCancelRingingMember is a hunt whose caller hung up: the controller
// deletes the member that is still ringing.
func TestCancelRingingMember(t *testing.T) {
	checkNoLeak(t)
	lab := newModelLab(t, "ast1")
	lab.fleet.SetPhone("ast1", "2005", callmodel.RingForever())
	s := lab.servers["ast1"]
	ev := dialEvents(t, s, "controller", "")
	c := newClient(t, s)
	originate(t, c, "m1", "PJSIP/2005", "timeout", "20")
	ev.wait("ringing", func(e *jEvent) bool { return e.Type == "Dial" && e.Peer.ID == "m1" && *e.DialStatus == "RINGING" })
	c.must(204, "DELETE", "/channels/m1", nil, nil)
	d := ev.wait("destroyed", isType("ChannelDestroyed", "m1"))
	var seq []string
	for _, e := range ev.snapshot() {
		if e.ev.Channel != nil && e.ev.Channel.ID == "m1" || e.ev.Peer != nil && e.ev.Peer.ID == "m1" {
			seq = append(seq, eventLine(&e.ev))
		}
	}
	want := []string{"Dial peer=m1 dialstatus=", "ChannelStateChange m1(Ringing)", "Dial peer=m1 dialstatus=RINGING",
		"ChannelHangupRequest m1(Ringing) cause=32", "Dial peer=m1 dialstatus=NOANSWER", "ChannelDestroyed m1(Ringing) cause=16"}
	if strings.Join(seq, "\n") != strings.Join(want, "\n") {
		t.Errorf("events of the cancelled member:\n%s\nwant\n%s", strings.Join(seq, "\n"), strings.Join(want, "\n"))
	}
	if *d.Cause != 16 {
		t.Errorf("cause %d", *d.Cause)
	}
	eventually(t, "the ring is cancelled", func() bool {
		r := lab.fleet.RingsOf("ast1", "2005")
		return len(r) == 1 && r[0].Outcome == callmodel.OutcomeCancelled
	})
}
