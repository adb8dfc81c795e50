package ari

import (
	"encoding/json"
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
	tc := &transferCaller{sipCaller: newSIPCaller()}
	in, err := s.Inbound(InboundCall{Endpoint: "sipp", Context: "from-sipp", Exten: "1000",
		Caller: Party{Name: "sipp", Number: "sipp"}, RemoteAddr: "127.0.0.1:5070", Leg: tc})
	if err != nil {
		t.Fatal(err)
	}
	tc.in = in
	caller := ev.wait("StasisStart", isType("StasisStart", "")).Channel.ID
	if ariOnly {
		c.must(204, "POST", "/channels/"+caller+"/variable", vals("variable", "PJSIP_TRANSFER_HANDLING()", "value", "ari-only"), nil)
	}
	c.must(204, "POST", "/channels/"+caller+"/answer", nil, nil)
	c.must(200, "POST", "/bridges", vals("bridgeId", "xfer-bridge", "name", "xfer-bridge", "type", "mixing"), nil)
	c.must(204, "POST", "/bridges/xfer-bridge/addChannel", vals("channel", caller), nil)
	c.must(200, "POST", "/channels", vals("app", "controller", "appArgs", "phone", "callerId", "Controller <7000>",
		"channelId", "xfer-phone", "endpoint", "PJSIP/sipp/sip:phone@127.0.0.1:5091", "timeout", "15"), nil)
	ev.wait("phone in Stasis", isType("StasisStart", "xfer-phone"))
	c.must(204, "POST", "/bridges/xfer-bridge/addChannel", vals("channel", "xfer-phone"), nil)
	ev.wait("phone in the bridge", isType("ChannelEnteredBridge", "xfer-phone"))
	return s, c, ev, tc, caller
}

// transferView keeps the events whose order the transfer recordings fix
// (Asterisk races on ringing order and on when a bridge turns native_rtp;
// the simulator does not send the BRIDGEPEER, ConnectedLine and Unhold
// noise of those recordings except where a controller relies on it).
func transferView(evs []recEvent) []recEvent {
	keep := map[string]bool{"StasisStart": true, "StasisEnd": true, "ChannelEnteredBridge": true,
		"ChannelLeftBridge": true, "BridgeBlindTransfer": true, "ChannelTransfer": true,
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
