// Package asterisk is callctl's Stasis application on Asterisk servers: the
// controller's MediaServer and Call over ARI.
//
// # Hand-over
//
// The dialplan runs Stasis(<app>,<context>,<dialed>) (dialplans/asterisk).
// A Client (one per server of the plan, New or FromServer) keeps the event
// WebSocket of its application open and hands every StasisStart of a
// channel it did not originate to the Handler (the controller's Engine) in
// a goroutine of its own; the events of a call are handled in the order
// Asterisk sent them, on the one reader goroutine, which never blocks on
// the network. When Run's context ends the client refuses new calls
// (cause 27) and returns once the calls it handed over have ended.
//
// CallInfo: Server is the plan name; Source the PJSIP endpoint the call
// came in on (PJSIP/<endpoint>-xxxxxxxx); Caller and CallerName the
// channel's caller ID; Domain and Dialed the Stasis arguments [context,
// exten] (else the channel's dialplan location); MarkOrg the X-Callctl-Org
// header (PJSIP_HEADER(read,...)) of calls from endpoints Config.MarkFrom
// accepts (trunks of the plan); Start the channel's creation time. A Local
// channel that re-enters Stasis after a blind transfer carries Transfer and
// OriginalCaller (see readTransfer). Under PJSIP_TRANSFER_HANDLING(ari-only)
// callctl carries a blind REFER (ChannelTransfer) out itself the same way
// and reports it with transfer_progress (transfer.go). A caller's channel
// that something else sent on in the dialplan (AMI Redirect, another
// application's /continue, an IVR) and that comes back into the
// application is the server's own transfer of the call: a new call with
// Transfer ivr, handed over once the call before let go of the channel
// (reenter.go).
//
// # Dialing
//
// Call.Dial registers the leg's channel id before POST /channels leaves
// (callctl chooses the id, so no early event is missed: the Stage/Exec
// idea without a second request), originates into the same application
// with the caller ID, ring timeout and, on trunks, the org mark header, and
// waits. The leg's StasisStart means answered: the caller is answered and
// both join a mixing bridge. Otherwise Dial returns once the channel is
// destroyed (and, for Local channels, its ;2 half), with the outcome from
// ChannelDestroyed.cause, or Dial.dialstatus when a Local ;1 half dies with
// cause 0 (causes.go). Cancelling Dial's context hangs the leg up at once.
// Leg.Ended closes on the leg's ChannelDestroyed. Targets, caller IDs,
// marks and hand-off extensions are checked first (sanitize.go): only
// 0-9 * # + (and T) ever reach a dial string.
//
// When the handler returns, whatever of the call is still up (caller unless
// handed off, legs, bridge) is hung up, retrying while ARI answers errors.
//
// # Faults
//
// callctl reads the WebSocket itself (gorilla/websocket): unknown event
// types and malformed frames are counted and skipped. A dropped socket is
// logged and re-dialled with backoff; once back, the client reconciles: it
// compares its calls with GET /channels (ending callers and legs that are
// gone, connecting legs that answered meanwhile) and hangs up channels and
// bridges of its application that no call owns any more. A server
// unreachable for Config.LostAfter is lost for good: its calls end for
// callctl (contexts cancelled, cause ARI_SERVER_LOST).
//
// Stats reports the client's counters. Dial results carry when the
// originate left and when the event that decided the attempt was read; the
// engine times its dial steps from them (callctl_dial_step_seconds), and
// EventQueue tells how many bytes of events wait unread on the WebSocket.
package asterisk
