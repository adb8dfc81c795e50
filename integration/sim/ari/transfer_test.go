package ari

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// transferCaller is a SIP caller that records the NOTIFYs of its REFER.
type transferCaller struct {
	*sipCaller
	mu    sync.Mutex
	frags []int
}

func (c *transferCaller) TransferProgress(frag int) {
	c.mu.Lock()
	c.frags = append(c.frags, frag)
	c.mu.Unlock()
}

func (c *transferCaller) notifies() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.frags...)
}

// transferSetup is the recorded flow of traces/transfers/asterisk case 3:
// sipp calls 1000, the controller answers it, bridges it with a phone it
// originates, and the caller then REFERs to 2099.
func transferSetup(t *testing.T, ariOnly bool) (*Server, *client, *stream, *transferCaller, string) {
	t.Helper()
	n := newTestNet("ast1")
	n.setPhone("sipp", phone{mode: phoneAnswer})
	s := startServer(t, Config{SystemName: "ast1", EntityID: "02:00:00:00:a5:01", Network: n})
	ev := dialEvents(t, s, "controller", "&subscribeAll=false")
	c := newClient(t, s)
	tc, caller := recordedCall(t, s, c, ev, "1000", "", "phone", ariOnly)
	return s, c, ev, tc, caller
}

// recordedCall is one call of the recorded controller: the sipp caller
// dials exten, the controller answers it, puts it into bridge
// xfer-bridge<suffix> and bridges it with the phone it originates
// (xfer-phone<suffix>, sip:<user>@127.0.0.1:5091).
func recordedCall(t *testing.T, s *Server, c *client, ev *stream, exten, suffix, user string, ariOnly bool) (*transferCaller, string) {
	t.Helper()
	tc := &transferCaller{sipCaller: newSIPCaller()}
	in, err := s.Inbound(InboundCall{Endpoint: "sipp", Context: "from-sipp", Exten: exten,
		Caller: Party{Name: "sipp", Number: "sipp"}, RemoteAddr: "127.0.0.1:5070", Leg: tc})
	if err != nil {
		t.Fatal(err)
	}
	tc.in = in
	caller := ev.wait("StasisStart", func(e *jEvent) bool {
		return e.Type == "StasisStart" && len(e.Args) == 2 && e.Args[1] == exten
	}).Channel.ID
	if ariOnly {
		c.must(204, "POST", "/channels/"+caller+"/variable", vals("variable", "PJSIP_TRANSFER_HANDLING()", "value", "ari-only"), nil)
	}
	br, ph, args := "xfer-bridge"+suffix, "xfer-phone"+suffix, "phone"+suffix
	c.must(204, "POST", "/channels/"+caller+"/answer", nil, nil)
	c.must(200, "POST", "/bridges", vals("bridgeId", br, "name", br, "type", "mixing"), nil)
	c.must(204, "POST", "/bridges/"+br+"/addChannel", vals("channel", caller), nil)
	c.must(200, "POST", "/channels", vals("app", "controller", "appArgs", args, "callerId", "Controller <7000>",
		"channelId", ph, "endpoint", "PJSIP/sipp/sip:"+user+"@127.0.0.1:5091", "timeout", "15"), nil)
	ev.wait("phone in Stasis", isType("StasisStart", ph))
	c.must(204, "POST", "/bridges/"+br+"/addChannel", vals("channel", ph), nil)
	ev.wait("phone in the bridge", isType("ChannelEnteredBridge", ph))
	return tc, caller
}

// transferView keeps the events whose order the transfer recordings fix
// (Asterisk races on ringing order and on when a bridge turns native_rtp;
// the simulator does not send the BRIDGEPEER, ConnectedLine and Unhold
// noise of those recordings except where a controller relies on it).
func transferView(evs []recEvent) []recEvent {
	keep := map[string]bool{"StasisStart": true, "StasisEnd": true, "ChannelEnteredBridge": true,
		"ChannelLeftBridge": true, "BridgeBlindTransfer": true, "BridgeAttendedTransfer": true, "ChannelTransfer": true,
		"ChannelDestroyed": true, "BridgeDestroyed": true, "ChannelStateChange": true, "Dial": true}
	var out []recEvent
	for _, e := range evs {
		ev := e.ev
		if !keep[ev.Type] {
			continue
		}
		if ev.Type == "Dial" && *ev.DialStatus == "RINGING" || ev.Type == "ChannelStateChange" && ev.Channel.State == "Ringing" {
			continue
		}
		if ev.Bridge != nil {
			b := *ev.Bridge
			b.Technology = ""
			ev.Bridge = &b
		}
		if ev.Peer != nil {
			p := *ev.Peer
			p.State = "" // the recorded RINGING/"" order races with the state
			ev.Peer = &p
		}
		out = append(out, recEvent{raw: e.raw, ev: ev})
	}
	return out
}

func readTransferTrace(t *testing.T, name string) []recEvent {
	t.Helper()
	traceFile(t, "transfers", "asterisk", name)
	return readTrace(t, "../transfers/asterisk/"+name)
}

func TestBlindTransferCore(t *testing.T) {
	checkNoLeak(t)
	s, c, ev, tc, caller := transferSetup(t, false)

	if err := s.BlindTransfer(caller, "2099"); err != nil {
		t.Fatal(err)
	}
	bt := ev.wait("BridgeBlindTransfer", isType("BridgeBlindTransfer", ""))
	if bt.Channel.ID != caller || bt.Transferee.ID != "xfer-phone" || bt.Exten != "2099" || bt.Context != "from-sipp" ||
		bt.Result != "Success" || !bt.IsExternal || bt.Bridge.ID != "xfer-bridge" {
		t.Errorf("BridgeBlindTransfer: %+v", bt)
	}
	half1, half2 := bt.ReplaceChannel.ID, ""
	for _, e := range ev.snapshot() {
		if e.ev.Type == "StasisStart" && len(e.ev.Args) == 2 && e.ev.Args[1] == "2099" {
			half2 = e.ev.Channel.ID
		}
	}
	if half2 == "" || !strings.HasSuffix(bt.ReplaceChannel.Name, ";1") {
		t.Fatalf("Local halves: ;1 %s, ;2 %q", bt.ReplaceChannel.Name, half2)
	}
	// ;1 is Down until ;2 answers: it cannot be answered itself.
	c.must(412, "POST", "/channels/"+half1+"/answer", nil, nil)
	c.must(204, "POST", "/channels/"+half2+"/answer", nil, nil)
	for _, v := range []struct{ ch, name, want string }{
		{half2, "SIPTRANSFER", "yes"},
		{half1, "SIPTRANSFER", "yes"},
		{half2, "SIPREFERTOHDR", "sip:2099@127.0.0.1:5080"},
		{half2, "SIPREFERRINGCONTEXT", "from-sipp"},
		{half1, "SIPREFERREDBYHDR", "<sip:sipp@127.0.0.1:5070>"},
		{half2, "BLINDTRANSFER", "PJSIP/sipp-00000000"},
	} {
		var got struct{ Value string }
		_ = json.Unmarshal(c.must(200, "GET", "/channels/"+v.ch+"/variable", vals("variable", v.name), nil), &got)
		if got.Value != v.want {
			t.Errorf("%s on %s: %q, want %q", v.name, v.ch, got.Value, v.want)
		}
	}
	c.must(404, "GET", "/channels/"+half1+"/variable", vals("variable", "BLINDTRANSFER"), nil)
	eventually(t, "the transferer got NOTIFY 100 and 200", func() bool {
		n := tc.notifies()
		return len(n) == 2 && n[0] == 100 && n[1] == 200
	})

	// The recorded ending: the transferer BYEs, the controller hangs up the
	// Local pair, then the phone, then deletes the bridge.
	tc.in.Hangup(causeNormalClearing)
	ev.wait("transferer StasisEnd", isType("StasisEnd", caller))
	c.must(204, "DELETE", "/channels/"+half2, nil, nil)
	ev.wait(";1 StasisEnd", isType("StasisEnd", half1))
	c.must(204, "DELETE", "/channels/xfer-phone", nil, nil)
	ev.wait("phone destroyed", isType("ChannelDestroyed", "xfer-phone"))
	c.must(204, "DELETE", "/bridges/xfer-bridge", nil, nil)
	ev.wait("bridge destroyed", isType("BridgeDestroyed", "xfer-bridge"))

	compareStreams(t, "blind transfer (core)",
		transferView(readTransferTrace(t, "ast1_case3_blind_refer_core_subscribeAll_false.jsonl")),
		transferView(ev.snapshot()))
}

func TestBlindTransferARIOnly(t *testing.T) {
	checkNoLeak(t)
	s, c, ev, tc, caller := transferSetup(t, true)

	if err := s.BlindTransfer(caller, "2099"); err != nil {
		t.Fatal(err)
	}
	first := ev.wait("ChannelTransfer", isType("ChannelTransfer", ""))
	if first.State != "" || first.ReferTo.RequestedDestination.Destination != "2099" ||
		first.ReferredBy.SourceChannel.ID != caller || first.ReferredBy.ConnectedChannel.ID != "xfer-phone" ||
		first.ReferredBy.Bridge.ID != "xfer-bridge" {
		t.Errorf("ChannelTransfer: %+v", first)
	}
	for _, e := range ev.snapshot() {
		if e.ev.Type == "BridgeBlindTransfer" || strings.HasPrefix(eventLine(&e.ev), "StasisStart Local") {
			t.Errorf("ari-only transfer made Asterisk act: %s", eventLine(&e.ev))
		}
	}
	// What the recorded controller did.
	c.must(204, "POST", "/channels/"+caller+"/transfer_progress", vals("states", "channel_progress"), nil)
	c.must(204, "POST", "/bridges/xfer-bridge/removeChannel", vals("channel", "xfer-phone"), nil)
	c.must(204, "POST", "/channels/xfer-phone/continue", vals("context", "from-sipp", "extension", "2099", "priority", "1"), nil)
	c.must(204, "POST", "/channels/"+caller+"/transfer_progress", vals("states", "channel_answered"), nil)
	again := ev.waitN("phone back in Stasis", 2, isType("StasisStart", "xfer-phone"))
	if len(again.Args) != 2 || again.Args[0] != "from-sipp" || again.Args[1] != "2099" {
		t.Errorf("phone re-entered with %q", again.Args)
	}
	last := ev.waitN("three ChannelTransfer", 3, isType("ChannelTransfer", ""))
	if last.State != "channel_answered" || last.ReferredBy.ConnectedChannel != nil {
		t.Errorf("last ChannelTransfer: state %q connected %v", last.State, last.ReferredBy.ConnectedChannel)
	}
	if st, _ := c.do("POST", "/channels/"+caller+"/transfer_progress", vals("states", "channel_answered"), nil); st != 400 {
		t.Errorf("progress after the end of the transfer: %d", st)
	}
	if got := tc.notifies(); len(got) != 2 || got[0] != 100 || got[1] != 200 {
		eventually(t, "NOTIFY 100 and 200", func() bool {
			n := tc.notifies()
			return len(n) == 2 && n[0] == 100 && n[1] == 200
		})
	}

	tc.in.Hangup(causeNormalClearing)
	ev.wait("transferer StasisEnd", isType("StasisEnd", caller))
	c.must(204, "DELETE", "/channels/xfer-phone", nil, nil)
	ev.wait("phone destroyed", isType("ChannelDestroyed", "xfer-phone"))
	c.must(204, "DELETE", "/bridges/xfer-bridge", nil, nil)
	ev.wait("bridge destroyed", isType("BridgeDestroyed", "xfer-bridge"))

	compareStreams(t, "blind transfer (ari-only)",
		transferView(readTransferTrace(t, "ast1_case3_blind_refer_ari-only_subscribeAll_false.jsonl")),
		transferView(ev.snapshot()))
}

// TestAttendedTransferCore replays traces/transfers/asterisk case 4 (core
// handling, subscribeAll=false): the sipp UA's call A (1000) talks to
// xfer-phone, its call B (1001) to xfer-phone-1001, and it REFERs A with
// Replaces of B. Asterisk links the two bridges with
// Local/_attended@transfer ;2 (Up, in B's place) and ;1 (in A's place),
// ends B (StasisEnd, no hangup events: it entered from the dialplan),
// reports BridgeAttendedTransfer, NOTIFYs 100 and 200, and leaves A to the
// UA's BYE. The controller then hangs up the Local pair, the phones and
// the bridges, as the recorded one did.
func TestAttendedTransferCore(t *testing.T) {
	checkNoLeak(t)
	recorded := readTransferTrace(t, "ast1_case4_attended_refer_core_subscribeAll_false.jsonl")
	n := newTestNet("ast1")
	n.setPhone("sipp", phone{mode: phoneAnswer})
	s := startServer(t, Config{SystemName: "ast1", EntityID: "02:00:00:00:a5:01", Network: n})
	ev := dialEvents(t, s, "controller", "&subscribeAll=false")
	c := newClient(t, s)
	ta, a := recordedCall(t, s, c, ev, "1000", "", "phone", false)
	_, b := recordedCall(t, s, c, ev, "1001", "-1001", "phone2", false)

	if err := s.AttendedTransfer(a, b); err != nil {
		t.Fatal(err)
	}
	ev.wait("BridgeAttendedTransfer", isType("BridgeAttendedTransfer", ""))
	if got, rec := attendedSig(t, ev.snapshot(), a, b), attendedSig(t, recorded, "", ""); got != rec {
		t.Errorf("BridgeAttendedTransfer:\n simulated %s\n recorded  %s", got, rec)
	}
	var half1, half2 string
	for _, e := range ev.snapshot() {
		if e.ev.Type == "StasisStart" && e.ev.ReplaceChannel != nil {
			switch e.ev.ReplaceChannel.ID {
			case a:
				half1 = e.ev.Channel.ID
			case b:
				half2 = e.ev.Channel.ID
			}
		}
	}
	if half1 == "" || half2 == "" {
		t.Fatalf("the Local link's halves in Stasis: ;1 %q, ;2 %q", half1, half2)
	}
	// None of a blind transfer's variables on the link (the recorded reads).
	for _, ch := range []string{half1, half2} {
		for _, v := range []string{"SIPTRANSFER", "SIPREFERTOHDR", "SIPREFERRINGCONTEXT", "SIPREFERREDBYHDR", "BLINDTRANSFER", "TRANSFERERNAME"} {
			c.must(404, "GET", "/channels/"+ch+"/variable", vals("variable", v), nil)
		}
	}
	eventually(t, "the transferer got NOTIFY 100 and 200", func() bool {
		n := ta.notifies()
		return len(n) == 2 && n[0] == 100 && n[1] == 200
	})

	// The UA BYEs A; the controller hangs up the link, then the phones,
	// then deletes the bridges.
	ta.in.Hangup(causeNormalClearing)
	ev.wait("A's StasisEnd", isType("StasisEnd", a))
	c.must(204, "DELETE", "/channels/"+half2, nil, nil)
	c.must(204, "DELETE", "/channels/"+half1, nil, nil)
	ev.wait(";1 StasisEnd", isType("StasisEnd", half1))
	ev.wait(";2 StasisEnd", isType("StasisEnd", half2))
	c.must(204, "DELETE", "/channels/xfer-phone", nil, nil)
	c.must(204, "DELETE", "/channels/xfer-phone-1001", nil, nil)
	ev.wait("phone destroyed", isType("ChannelDestroyed", "xfer-phone"))
	ev.wait("phone destroyed", isType("ChannelDestroyed", "xfer-phone-1001"))
	c.must(204, "DELETE", "/bridges/xfer-bridge", nil, nil)
	c.must(204, "DELETE", "/bridges/xfer-bridge-1001", nil, nil)
	ev.wait("bridge destroyed", isType("BridgeDestroyed", "xfer-bridge"))
	ev.wait("bridge destroyed", isType("BridgeDestroyed", "xfer-bridge-1001"))

	compareStreams(t, "attended transfer (core)", transferView(recorded), transferView(ev.snapshot()))
}

// attendedSig is what a controller reads of the BridgeAttendedTransfer in
// evs, with the transferer's legs named A and B (a, b: their ids; ""
// takes the event's own) and generated names normalised.
func attendedSig(t *testing.T, evs []recEvent, a, b string) string {
	t.Helper()
	var raw []byte
	for _, e := range evs {
		if e.ev.Type == "BridgeAttendedTransfer" {
			raw = e.raw
		}
	}
	if raw == nil {
		t.Fatal("no BridgeAttendedTransfer")
	}
	var f struct {
		First, Second, Transferee, Target, Link1, Link2 *jChannel
		FirstBridge, SecondBridge                       *jBridge
		DestinationType                                 string `json:"destination_type"`
		Result                                          string `json:"result"`
		IsExternal                                      bool   `json:"is_external"`
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for key, dst := range map[string]any{"transferer_first_leg": &f.First, "transferer_second_leg": &f.Second,
		"transferee": &f.Transferee, "transfer_target": &f.Target, "destination_link_first_leg": &f.Link1,
		"destination_link_second_leg": &f.Link2, "transferer_first_leg_bridge": &f.FirstBridge,
		"transferer_second_leg_bridge": &f.SecondBridge, "destination_type": &f.DestinationType,
		"result": &f.Result, "is_external": &f.IsExternal} {
		if raw, ok := m[key]; ok {
			if err := json.Unmarshal(raw, dst); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
		}
	}
	if a == "" && f.First != nil && f.Second != nil {
		a, b = f.First.ID, f.Second.ID
	}
	ch := func(c *jChannel) string {
		switch {
		case c == nil:
			return "-"
		case c.ID == a:
			return "A(" + c.State + ")"
		case c.ID == b:
			return "B(" + c.State + ")"
		case strings.HasPrefix(c.Name, "Local/"):
			return normName(c.Name) + "(" + c.State + ")"
		}
		return c.ID + "(" + c.State + ")"
	}
	br := func(x *jBridge) string {
		if x == nil {
			return "-"
		}
		var ids []string
		for _, id := range x.Channels {
			switch id {
			case a:
				id = "A"
			case b:
				id = "B"
			}
			ids = append(ids, id)
		}
		return x.ID + fmt.Sprint(ids)
	}
	return fmt.Sprintf("first=%s second=%s transferee=%s target=%s bridges=%s,%s link=%s,%s type=%s result=%s external=%v",
		ch(f.First), ch(f.Second), ch(f.Transferee), ch(f.Target), br(f.FirstBridge), br(f.SecondBridge),
		ch(f.Link1), ch(f.Link2), f.DestinationType, f.Result, f.IsExternal)
}
