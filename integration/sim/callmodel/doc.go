// Package callmodel is the protocol-neutral model of a fleet of simulated
// media servers. The simulator's fronts (FreeSWITCH ESL in ../esl, Asterisk
// ARI in ../ari) speak their protocol over it; the model knows channels and
// calls, not protocols. It imports nothing of callctl.
//
// # Objects
//
//   - Fleet: the servers, the phones registered on each server
//     (SetPhone), the simulated PSTN (SetPSTN, SetPSTNDefault) and the record
//     of every ring (Rings, RingsOf). NewFleet(WithClock, WithSeed, WithLogger).
//   - Server: one media server (name, Kind freeswitch|asterisk, fake SIP IP).
//     A front installs its Hooks (SetHooks) and observes events (Subscribe).
//   - Channel: uuid, name, Direction, State (down, ringing, early, up,
//     hangup), caller/callee Party, destination, context, variables (an
//     ordered, immutable Vars view), SIP headers, timestamps, hangup Cause
//     (Q.850 name and code), the other half of a local pair (Partner, Leg),
//     the bridge (BridgedTo) and the far end of a trunk call (PeerServer,
//     PeerUUID). Read it as a Snapshot.
//
// # Transactions
//
// All changes happen in Server.Do(func(tx *Tx) error), under the server's
// single lock. Events produced in a transaction are numbered with the
// server's sequence (Event.Seq) and delivered, in that order, after fn
// returns and before Do returns: first to the channel's watchers
// (Tx.Watch), then to the observers (Server.Subscribe). Watchers and
// observers receive the same *Tx and may act through it; what they do is
// queued behind the current event. They must never block nor call Do.
// Observers typically copy the event into a connection's queue.
//
// Events: ChannelCreated, ChannelRinging, ChannelEarlyMedia,
// ChannelAnswered, ChannelBridged / ChannelUnbridged (Channel is the side
// that asked for the bridge, Other the other side), ChannelHangup (with a
// HangupReason), ChannelUpdated (SetRoute), ChannelDestroyed (always last,
// after everything the hangup caused in the same transaction), Note (a
// front's own fact, see Tx.Emit: the ESL front notes dialplan applications
// with it so they take their place in the sequence), ServerRestarted and
// ServerStopped.
//
// Other transactions: timers (Tx.AfterFunc, bound to a channel and
// cancelled when it hangs up, or to the server with uuid ""), posts to a
// server (Tx.Post, FIFO per server: trunk signalling uses it so that no
// transaction holds two servers' locks), and Fleet.PlaceCall.
//
// # What a front does
//
// A front attaches to its server:
//
//	srv, _ := fleet.AddServer(callmodel.ServerConfig{Name: "ast1", Kind: callmodel.Asterisk, IP: "127.0.0.21"})
//	srv.SetHooks(myHooks) // PrepareInbound, Route, BeforeHangup
//	stop := srv.Subscribe(func(tx *callmodel.Tx, ev *callmodel.Event) { ... })
//
// and then, inside transactions:
//
//   - Originate to a local channel (Local/101@targets, loopback/101/targets):
//     tx.NewLocalPair(specA, specB) creates both halves; the front runs its
//     dialplan on B (for the targets context: TargetBehaviour(ext) says what
//     1XX..5XX do) with tx.Ring / tx.EarlyMedia / tx.Answer / tx.Hangup and
//     timers. B's ringing/answer reach A; a hangup of either reaches the
//     other with the same cause (Reason ByPartner).
//   - Originate or dial a phone, a PSTN number or another server:
//     tx.Dial(spec, PhoneEndpoint(ext) | PSTNEndpoint(num) |
//     TrunkEndpoint(server, dest)). An unreachable target fails at once with
//     a *CauseError (USER_NOT_REGISTERED, SUBSCRIBER_ABSENT,
//     UNALLOCATED_NUMBER, NO_ROUTE_DESTINATION) and creates nothing.
//     Otherwise the returned channel rings/answers/refuses later as the
//     phone's Behaviour says; watch it with tx.Watch. A trunk call creates
//     the receiving channel on the other server through its front's
//     PrepareInbound and Route (Origin OriginTrunk, Headers and NetworkIP of
//     the sender), and answer/hangup travel back with their causes (a caller
//     that gives up makes ORIGINATOR_CANCEL on the receiving side).
//   - Calls offered to the server (a phone or the PSTN calling in,
//     Fleet.PlaceCall or tx.Inbound) come through PrepareInbound (name the
//     channel, set its context and variables) and Route (hand it to the
//     controller: Stasis, outbound socket).
//   - tx.Bridge(a, b) / tx.Unbridge(uuid); a hangup ends the bridge but does
//     not hang up the other side: that is product behaviour, the front's
//     call.
//   - tx.SetExt / tx.Ext keep a front's private per-channel state; it dies
//     with the channel.
//   - BeforeHangup lets a front emit what its product emits just before a
//     hangup event.
//
// Server.Restart drops every channel without hangup events (ServerRestarted:
// fronts drop their connections); far ends of its trunk calls hang up on
// the other servers. Server.Stop and Fleet.Close shut everything down and
// wait for the model's goroutines; nothing keeps running.
//
// # Phones and rings
//
// Behaviour is what a phone or PSTN number does when called: ModeAnswer
// after RingFor (and HangupAfter), ModeRing, ModeBusy (USER_BUSY),
// ModeReject (CALL_REJECTED), ModeUnregistered, ModeFail (Cause). Every call
// that reaches a phone or number is recorded as a Ring: start, answer, end,
// Outcome, the caller id presented, the variables and SIP headers received.
// A CallerPlan scripts a simulated caller (hang up after answer, give up).
//
// The model never sleeps: timers are Clock callbacks (RealClock in tests,
// ManualClock for deterministic unit tests), and a ringing channel costs no
// goroutine.
package callmodel
