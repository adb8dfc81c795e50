// Package ari simulates the Asterisk REST Interface of Asterisk 22.10.1 so
// that callctl's Asterisk adapter can be tested without an Asterisk. It is
// an independent reading of the protocol from the recorded transcripts in
// ../shared/traces/asterisk and ../shared/traces/transfers: it
// imports nothing of callctl and no ARI client library.
//
// # Starting one
//
// Inside the simulator's Lab, a simulated Asterisk is a callmodel server
// with this front attached:
//
//	ms, _ := fleet.AddServer(callmodel.ServerConfig{Name: "ast1", Kind: callmodel.Asterisk, IP: "127.0.0.21"})
//	srv, _ := ari.Attach(ms, ari.Config{EntityID: "02:00:00:00:a5:01"})
//	_ = srv.Start()       // listens on 127.0.0.1:0 unless Config.Addr says otherwise
//	srv.URL()             // http://127.0.0.1:<port>/ari  (user ari, password ari)
//	srv.WebSocketURL(app) // ws://127.0.0.1:<port>/ari/events?app=<app>&api_key=ari:ari
//	defer srv.Close()     // before fleet.Close
//
// New(Config{Network: n}) builds one without the call model: n (a Network)
// then provides the SIP side. The package's tests use that.
//
// # What it speaks
//
// REST under /ari, with basic auth or ?api_key=user:pass; parameters in the
// query string or as a JSON body ({"variables": {...}} included):
//
//	GET/POST /channels, POST /channels/create, GET/POST/DELETE /channels/{id}
//	  (DELETE ?reason= or ?reason_code=), POST /channels/{id}/answer, /ring,
//	  /continue, /dial, /transfer_progress, /hold (ChannelHold/Unhold),
//	  /moh, /silence, /mute (accepted, no effect);
//	  GET/POST /channels/{id}/variable
//	GET/POST /bridges, GET/POST/DELETE /bridges/{id},
//	  POST /bridges/{id}/addChannel, /removeChannel
//	GET /endpoints, /endpoints/PJSIP, /endpoints/PJSIP/{resource}
//	GET /applications, /applications/{app},
//	  POST/DELETE /applications/{app}/subscription (channel:, bridge:, endpoint:)
//	GET /asterisk/info, /asterisk/ping
//	GET /events (WebSocket)
//
// Errors are Asterisk's: {"message": "..."} with its status codes and
// texts (404 Channel not found, 409 Channel not in Stasis application, 412
// Channel in invalid state for answer/ring/continue on an outgoing channel
// not answered yet, 422 on bridge operations, 500 Allocation failed for an
// originate to an unregistered phone or unknown technology, ...).
// /redirect and bridge media answer 501: they are not simulated.
//
// Events are byte-for-byte in the format of the recordings (key order
// included), each with asterisk_id and application: StasisStart, StasisEnd,
// ChannelCreated (subscribeAll or every channel: only), ChannelStateChange, ChannelDialplan,
// ChannelCallerId, ChannelConnectedLine, ChannelVarset, ChannelHangupRequest
// (cause 32 soft after DELETE; no cause for a phone's BYE; the Q.850 cause
// for a trunk's), ChannelDestroyed (cause, cause_txt), Dial (""/RINGING/
// ANSWER/BUSY/CONGESTION/CHANUNAVAIL/NOANSWER), ChannelEnteredBridge,
// ChannelLeftBridge, BridgeCreated (subscribeAll or every bridge: only), BridgeDestroyed,
// ChannelUnhold, BridgeBlindTransfer, BridgeAttendedTransfer,
// ChannelTransfer and ApplicationReplaced. RTPAUDIOQOS* variables are set on answered SIP
// channels when they hang up if Config.RTPStats is set.
//
// Subscriptions follow Asterisk with subscribeAll=false: an originated or
// created channel (and the ;2 half of an originated Local channel) is
// subscribed explicitly and reported until ChannelDestroyed; a channel that
// entered Stasis from the dialplan is reported only until its StasisEnd.
// An application watches a bridge once one of its channels entered it.
// subscribeAll=true receives everything. The subscription model is fixed
// when the application is first created, as in Asterisk. A second
// WebSocket for an application replaces the first (which gets
// ApplicationReplaced and stays open); a closed socket deactivates its
// applications but their channels stay in Stasis, and events meanwhile
// are lost.
//
// # The simulated dialplan and endpoints
//
//   - Local/<NXX>@targets: the lab convention. 1XX answers (Answer, then
//     Wait(30) 500 ms later) and hangs up after Config.TargetHangupAfter;
//     2XX Busy: Dial BUSY, ;1 destroyed with cause 0, ;2 with 17; 3XX
//     Ringing, Wait(60): Dial RINGING, both destroyed with 19 when the
//     originate times out; 4XX Congestion: Dial CONGESTION, ;1 cause 0, ;2
//     34; 5XX answers and stays up. Names Local/<NXX>@targets-%08x;1/;2,
//     ids <channelId> and <channelId>;2 (or otherChannelId).
//   - Local/<exten>@<inbound context> runs that context on ;2 (NoOp,
//     Stasis(<app>,<context>,<exten>)).
//   - Inbound contexts (Config.StasisContexts: from-sipp, from-trunk,
//     from-pstn): priority 1 NoOp, priority 2 Stasis(<app>,<ctx>,<exten>),
//     StasisStart args [<ctx>, <exten>]; when no socket serves the app,
//     STASISSTATUS=FAILED and Config.Fallback (Congestion, cause 34).
//   - PJSIP/<ext>: a phone of the fleet (Fleet.SetPhone). Unregistered: the
//     originate fails with 500 and nothing rings; busy: cause 17; reject:
//     21; no answer: 19 at the originate timeout. The caller id, channel
//     variables and PJSIP_HEADER(add,...) headers reach the ring record.
//   - PJSIP/<dest>@<server>: a trunk to another simulated server (any
//     kind), arriving there in from-trunk with the caller id and the X-
//     headers, readable with GET /channels/{id}/variable?variable=
//     PJSIP_HEADER(read,X-...). Config.TrunkServers maps endpoint names to
//     servers when they differ.
//   - PJSIP/<number>@pstn: the fleet's PSTN. Calls from the PSTN arrive on
//     endpoint pstn in from-pstn; from phones on endpoint <ext> in
//     from-sipp.
//   - Channel functions: PJSIP_HEADER(add|update|remove|read,...),
//     CALLERID(num|name|all), CONNECTEDLINE(...), CHANNEL(...),
//     PJSIP_TRANSFER_HANDLING() (ari-only|core).
//
// # Lab actions and fault injection
//
//   - BlindTransfer(channelID, exten): a REFER from the SIP channel. Core
//     handling: a Local pair replaces the transferer in its bridge, its ;2
//     half re-enters Stasis with args [<ctx>, <exten>], BridgeBlindTransfer.
//     With PJSIP_TRANSFER_HANDLING()=ari-only: only ChannelTransfer, then
//     POST transfer_progress re-publishes it with its state.
//   - AttendedTransfer(a, b): a REFER with Replaces sent on a for the
//     dialog of b (traces/transfers/asterisk case 4). Core handling:
//     Local/_attended@transfer ;2 takes b's place in its bridge and ;1 a's
//     (both enter Stasis with no args and replace_channel), ;1's dial is
//     answered, b is hung up, BridgeAttendedTransfer (destination_type
//     link), NOTIFY 100 and 200; a stays until its phone hangs up.
//     ari-only: ChannelTransfer naming b's dialog.
//   - The [features] context: *98 (a park) answers and waits; a channel the
//     application subscribed to before /continue there keeps reporting to
//     it until it ends (p-hand-off-park).
//   - DropWebSockets: every socket closes without a close frame.
//   - Restart(ctx, down, entityID): sockets and listener close, every
//     channel and bridge vanishes without events (the model's far ends see
//     their calls end), applications are forgotten, the server listens
//     again on the same address after down, with a new startup_time (and
//     asterisk_id if given). A callmodel Server.Restart has the same effect
//     without the listener going down.
//   - FailREST(status, d) / FailNextREST(status, n): REST and WebSocket
//     upgrades answer status for a while.
//   - SendRaw(app, frame): any bytes as a WebSocket frame (unknown event
//     types, malformed JSON, missing fields).
//
// # Concurrency
//
// Each server has one engine lock; events are encoded and queued to the
// sockets under it, so every application sees a server's events in the
// order they happened. Calls into the Network (the model) run on one
// dispatcher goroutine per server, never under the engine lock; what the
// Network reports (and calls the model offers) is queued on one inbox
// goroutine per server that applies it in order under the engine lock. So
// a model transaction never waits for the engine, and two servers trunked
// together cannot deadlock. Timers are time.AfterFunc callbacks, never
// sleeping goroutines; Close stops them and waits for every goroutine it
// started.
package ari
