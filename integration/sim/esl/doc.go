// Package esl is the FreeSWITCH front of the simulator: a simulated
// FreeSWITCH 1.10 that speaks the event socket over TCP on loopback, over
// the protocol-neutral call model of package callmodel. It is written from
// the transcripts recorded from real FreeSWITCH servers
// (../shared/traces/freeswitch and transfers/freeswitch) and from
// mod_event_socket's behaviour; it imports nothing of callctl.
//
//	srv, _ := esl.New(modelServer, esl.Config{Controllers: []string{"127.0.0.1:8084"}})
//	_ = srv.Start()  // inbound event socket on 127.0.0.1:0, password ClueCon
//	srv.Addr()
//	defer srv.Close()
//
// # Inbound event socket
//
// auth/request greeting, auth (a wrong password gets -ERR invalid and the
// goodbye notice), api (synchronous: events raised meanwhile follow the
// api/response), bgapi (Job-UUID header honoured; BACKGROUND_JOB event
// with the output as body), event plain|json <names|ALL> (xml is refused),
// nixevent, noevents, filter / filter delete (FreeSWITCH's +/-/regex
// semantics), myevents <uuid> [format], sendmsg <uuid>, linger/nolinger
// (outbound only), log/nolog (no log lines are sent), exit. Replies and
// errors are mod_event_socket's strings.
//
// api commands: originate (dial strings with {global} and [per leg]
// variables, | failover and , simultaneous legs, origination_uuid,
// originate_timeout, origination_caller_id_*, &app(args) or an extension,
// the caller id flip of an answered originate), uuid_kill [cause],
// uuid_bridge, uuid_setvar, uuid_setvar_multi, uuid_getvar, uuid_exists,
// uuid_answer, uuid_transfer [-bleg|-both], uuid_broadcast (att_xfer::<dial
// string> runs mod_dptools' att_xfer; other applications are accepted and do
// nothing), uuid_recv_dtmf (# cancels an att_xfer consultation),
// sofia_contact, show channels [as json], status, hupall, version,
// reloadxml. Others answer "-ERR <cmd> Command not found!".
//
// att_xfer (AttXfer, uuid_broadcast) runs on a channel bridged with
// another: it originates its dial string from that channel (a loopback -b
// leg names it in other_loopback_from_uuid) while the partner stays in its
// bridge application; the channel hanging up with the consultation up ends
// the partner's bridge and then its socket application (transfer source
// uuid_br:<consultation>) and joins the two (uuid_bridge); # hangs the
// consultation up and bridges the channel back with its partner the same
// way; a consultation that fails leaves them as they were
// (traces freeswitch/o-att-xfer-*.events).
//
// Endpoints: loopback/<ext>[/<context>] (two channels, -a returned, -b
// running the dialplan), user/<ext> (a phone of the fleet),
// sofia/gateway/<gw>/<dest> (Config.Gateways maps gw to another server;
// "pstn" is the simulated PSTN), sofia/<profile>/<user>@<host> (a server
// by its IP, else a phone), error/<CAUSE>.
//
// # Dialplan and outbound socket
//
// The targets context plays the lab convention (1XX answer,
// sched_hangup +30, endless tone; 2XX hangup USER_BUSY; 3XX ring_ready,
// sleep 60000; 4XX hangup NORMAL_TEMPORARY_FAILURE; 5XX answer, park).
// Every other context sets instance_name, runs "socket <addr> async full"
// for each controller in turn, then logs and hangs up
// DESTINATION_OUT_OF_ORDER. The socket application connects, waits for
// "connect" (channel data reply with Content-Type/Reply-Text/Socket-Mode/
// Control last), parks the call and runs the controller's sendmsg
// executions (answer, pre_answer, ring_ready, set, export, unset, bridge,
// hangup, respond, playback, park, sleep, transfer, socket,
// sched_hangup, log, ...). A controller that leaves without hanging up ends
// the park: the dialplan goes on (next controller, or
// DESTINATION_OUT_OF_ORDER). After the hangup the connection gets
// text/disconnect-notice (linger, then disconnect) and is closed. A
// transfer runs the dialplan again: a second outbound connection arrives
// for the same uuid while the first keeps the channel's events, and
// closing the first ends the call.
//
// bridge follows switch_ivr_originate: failover groups, first answer
// wins (LOSE_RACE for the others), call_timeout/originate_timeout per
// group, leg_timeout, continue_on_fail (true or a cause list),
// hangup_after_bridge, and sets originate_disposition, DIALSTATUS,
// originate_causes, originate_failed_cause, last_bridge_hangup_cause,
// bridge_hangup_cause as the recordings show; without continue_on_fail a
// failed bridge hangs the A leg up with the bridge's cause.
//
// # Events
//
// Header for header as FreeSWITCH 1.10.12 writes them: channel state and
// call state events, CREATE/OUTGOING/ORIGINATE/UUID, PROGRESS(_MEDIA),
// ANSWER, EXECUTE/EXECUTE_COMPLETE (Application, Application-Data,
// Application-Response, Application-UUID, the sendmsg Event-UUID when
// given), BRIDGE/UNBRIDGE, PARK/UNPARK, HANGUP, HANGUP_COMPLETE (with the
// variables computed at reporting), DESTROY, HEARTBEAT, BACKGROUND_JOB;
// Event-Sequence per server, Core-UUID (new after a restart). Plain values
// are url-encoded like switch_url_encode; JSON like cJSON (multi-valued
// variables as arrays). The fidelity tests replay the recorded scenarios
// and compare; the encoder re-encodes every recorded event byte for byte.
// Not simulated: CODEC, API, CALL_UPDATE, PLAYBACK_*, scheduler events,
// CUSTOM events, the xml format, log lines, media.
//
// # Faults
//
// DropConnections, SetRefusing, SendMalformed, and, through the model,
// restarts (callmodel.Server.Restart). BlindTransfer and Transfer act as a
// REFER or uuid_transfer would; AttXfer and RecvDTMF as att_xfer and a
// phone's DTMF.
package esl
