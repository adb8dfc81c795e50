package ari

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The recordings callctl's repository keeps (integration/traces/asterisk,
// made on the lab with integration/lab/arirecord), replayed like the shared
// ones: what the simulator sends must be what Asterisk sent.

var repoTracesDir = filepath.Join("..", "..", "traces", "asterisk")

func repoRestLog(t *testing.T, name string) []restCall {
	t.Helper()
	return readRestLogFile(t, filepath.Join(repoTracesDir, name), name)
}

func repoTrace(t *testing.T, name string) []recEvent {
	t.Helper()
	if _, err := os.Stat(filepath.Join(repoTracesDir, name)); err != nil {
		t.Fatal(err)
	}
	return readTraceFile(t, filepath.Join(repoTracesDir, name))
}

// TestFidelitySubscribeEveryChannel: an application subscribed to
// channel: and bridge: sees every channel and bridge of the server
// (k-subscribe-every-channel).
func TestFidelitySubscribeEveryChannel(t *testing.T) {
	srv := fidelityServer(t, "ast1", "02:00:00:00:a5:01", newTestNet("ast1"))
	watcher := dialEvents(t, srv, "watcher", "&subscribeAll=false")
	ctl := dialEvents(t, srv, "controller", "&subscribeAll=false")
	c := newClient(t, srv)
	calls := repoRestLog(t, "k-subscribe-every-channel.rest.log")
	replay(t, c, calls[0], nil) // the subscription
	replay(t, c, calls[1], nil) // originate into controller
	ctl.wait("StasisStart", isType("StasisStart", "trace-k-101"))
	replay(t, c, calls[2], nil) // a bridge, created
	replay(t, c, calls[3], nil) // and destroyed
	watcher.wait("BridgeDestroyed", isType("BridgeDestroyed", "trace-k-sync"))
	replay(t, c, calls[4], nil) // the channel hung up
	watcher.waitN("both destroyed", 2, destroyedBoth("trace-k-101"))
	compareStreams(t, "watcher", repoTrace(t, "k-subscribe-every-channel.watcher.jsonl"), watcher.snapshot())
	compareStreams(t, "controller", repoTrace(t, "k-subscribe-every-channel.controller.jsonl"), ctl.snapshot())
}

// TestFidelityHangupTwice: two hangup requests for a channel in Stasis are
// both accepted and the channel ends with the cause of the later one
// (l-hangup-twice). The requests are replayed in the order their replies
// were recorded.
func TestFidelityHangupTwice(t *testing.T) {
	// A wide window, so that the second request of the replay surely
	// lands in it (Asterisk's is a moment; the default is 2 ms).
	srv := startServer(t, Config{SystemName: "ast1", EntityID: "02:00:00:00:a5:01", RTPStats: true,
		Network: newTestNet("ast1"), HangupDelay: 300 * time.Millisecond})
	ctl := dialEvents(t, srv, "controller", "&subscribeAll=false")
	caller := dialEvents(t, srv, "caller", "&subscribeAll=false")
	watcher := dialEvents(t, srv, "watcher", "&subscribeAll=false")
	c := newClient(t, srv)
	calls := repoRestLog(t, "l-hangup-twice.rest.log")
	replay(t, c, calls[0], nil) // the watcher's subscription
	replay(t, c, calls[1], nil) // originate Local/555@from-sipp into caller
	ctl.wait("StasisStart", isType("StasisStart", "trace-l-555;2"))
	replay(t, c, calls[2], nil) // DELETE, both answered 204
	replay(t, c, calls[3], nil)
	watcher.waitN("both destroyed", 2, destroyedBoth("trace-l-555"))
	compareStreams(t, "watcher", repoTrace(t, "l-hangup-twice.watcher.jsonl"), watcher.snapshot())
	compareStreams(t, "controller", repoTrace(t, "l-hangup-twice.controller.jsonl"), ctl.snapshot())
	compareStreams(t, "caller", repoTrace(t, "l-hangup-twice.caller.jsonl"), caller.snapshot())
}

// TestFidelityCommaInDialed: Stasis(app,context,${EXTEN}) with commas in the
// exten gives the application one argument per comma-separated part
// (m-comma-in-dialed).
func TestFidelityCommaInDialed(t *testing.T) {
	srv := fidelityServer(t, "ast1", "02:00:00:00:a5:01", newTestNet("ast1"))
	ev := dialEvents(t, srv, "controller", "&subscribeAll=false")
	c := newClient(t, srv)
	recorded := repoTrace(t, "m-comma-in-dialed.controller.jsonl")
	callIn(t, srv, InboundCall{Endpoint: "sipp", Context: "from-sipp", Exten: "1000,user/3998",
		Caller: Party{Number: "1400"}, CallID: "1-13147@127.0.0.1"})
	start := ev.wait("StasisStart", isType("StasisStart", ""))
	del := repoRestLog(t, "m-comma-in-dialed.rest.log")[0]
	replay(t, c, del, map[string]string{recorded[0].ev.Channel.ID: start.Channel.ID})
	ev.wait("StasisEnd", isType("StasisEnd", start.Channel.ID))
	compareStreams(t, "controller", recorded, ev.snapshot())
}

// TestFidelityContinueOutOfBridge: a caller talking in a bridge, sent on by
// /continue to an extension whose dialplan runs Stasis again, leaves the
// bridge and the application (StasisEnd, no ChannelDestroyed) and starts
// in it anew as the same channel with the new extension's arguments
// (n-continue-out-of-bridge).
func TestFidelityContinueOutOfBridge(t *testing.T) {
	srv := fidelityServer(t, "ast1", "02:00:00:00:a5:01", newTestNet("ast1"))
	ctl := dialEvents(t, srv, "controller", "&subscribeAll=false")
	caller := dialEvents(t, srv, "caller", "&subscribeAll=false")
	c := newClient(t, srv)
	calls := repoRestLog(t, "n-continue-out-of-bridge.rest.log")
	replay(t, c, calls[0], nil) // originate Local/4930100100@from-pstn into caller
	ctl.wait("StasisStart", isType("StasisStart", "trace-n-in;2"))
	replay(t, c, calls[1], nil) // answered
	replay(t, c, calls[2], nil) // a bridge
	replay(t, c, calls[3], nil) // the party it talks to
	ctl.wait("StasisStart", isType("StasisStart", "trace-n-leg"))
	replay(t, c, calls[4], nil) // both in the bridge
	replay(t, c, calls[5], nil)
	ctl.wait("ChannelEnteredBridge", isType("ChannelEnteredBridge", "trace-n-leg"))
	replay(t, c, calls[6], nil) // sent on to 122099 in from-pstn
	ctl.waitN("back in Stasis", 2, isType("StasisStart", "trace-n-in;2"))
	ctl.wait("the party's Wait", dialplanApp("trace-n-leg;2", "Wait"))
	replay(t, c, calls[7], nil) // the party hung up
	replay(t, c, calls[8], nil) // the bridge destroyed
	replay(t, c, calls[9], nil) // the caller hung up
	caller.wait("ChannelDestroyed", isType("ChannelDestroyed", "trace-n-in"))
	ctl.waitN("the caller's second StasisEnd", 2, isType("StasisEnd", "trace-n-in;2"))
	compareStreams(t, "controller", repoTrace(t, "n-continue-out-of-bridge.controller.jsonl"), ctl.snapshot())
	compareStreams(t, "caller", repoTrace(t, "n-continue-out-of-bridge.caller.jsonl"), caller.snapshot())
}

// TestFidelityHandOffPark: a call handed to the dialplan as callctl hands a
// feature code (the park *98 of [features]) — the application subscribes
// to the channel, then /continue — leaves Stasis and, subscribed, still
// sees the dialplan run (NoOp, Answer, Wait) and the channel's end once
// its caller hangs up (p-hand-off-park).
func TestFidelityHandOffPark(t *testing.T) {
	srv := fidelityServer(t, "ast1", "02:00:00:00:a5:01", newTestNet("ast1"))
	ctl := dialEvents(t, srv, "controller", "&subscribeAll=false")
	caller := dialEvents(t, srv, "caller", "&subscribeAll=false")
	c := newClient(t, srv)
	calls := repoRestLog(t, "p-hand-off-park.rest.log")
	replay(t, c, calls[0], nil) // originate Local/4930100100@from-pstn into caller
	ctl.wait("StasisStart", isType("StasisStart", "trace-p-in;2"))
	replay(t, c, calls[1], nil) // the application subscribes to the channel
	replay(t, c, calls[2], nil) // and sends it on to *98 in features
	ctl.wait("StasisEnd", isType("StasisEnd", "trace-p-in;2"))
	ctl.wait("the park's Wait", dialplanApp("trace-p-in;2", "Wait"))
	caller.wait("the caller in Stasis", isType("StasisStart", "trace-p-in"))
	replay(t, c, calls[3], nil) // the caller hangs up
	ctl.wait("the parked channel's end", isType("ChannelDestroyed", "trace-p-in;2"))
	caller.waitN("both destroyed", 2, destroyedBoth("trace-p-in"))
	compareStreams(t, "controller", repoTrace(t, "p-hand-off-park.controller.jsonl"), ctl.snapshot())
	compareStreams(t, "caller", repoTrace(t, "p-hand-off-park.caller.jsonl"), caller.snapshot())
}
