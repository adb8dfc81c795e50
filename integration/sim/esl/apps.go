package esl

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// appRun is one application running on a channel.
type appRun struct {
	app, data, id string
	// parked: the application is in switch_ivr_park (park, or socket once
	// the controller sent connect); queued sendmsg executions run inside.
	parked bool
	socket *socketRun
	// stop cancels the application's timers.
	stop []func()
	// abort cleans up when a hangup or transfer interrupts it.
	abort func(tx *callmodel.Tx)
	// hangupResponse is its Application-Response when a hangup ends it.
	hangupResponse string
}

type appFunc func(s *Server, tx *callmodel.Tx, uuid string, run *appRun)

var apps map[string]appFunc

func init() {
	apps = map[string]appFunc{
		"answer":         appAnswer,
		"pre_answer":     appPreAnswer,
		"ring_ready":     appRingReady,
		"set":            appSet,
		"export":         appExport,
		"unset":          appUnset,
		"hangup":         appHangup,
		"respond":        appRespond,
		"playback":       appPlayback,
		"park":           appPark,
		"sleep":          appSleep,
		"transfer":       appTransfer,
		"socket":         appSocket,
		"bridge":         appBridge,
		"sched_hangup":   appSchedHangup,
		"log":            appInstant,
		"info":           appInstant,
		"event":          appInstant,
		"hold":           appInstant,
		"unhold":         appInstant,
		"echo":           appEcho,
		"record_session": appInstant,
	}
}

func appHeaders(app, data, id string, response *string) []header {
	h := []header{{"Application", app}}
	if data != "" {
		h = append(h, header{"Application-Data", data})
	}
	if response != nil {
		h = append(h, header{"Application-Response", *response})
	}
	return append(h, header{"Application-UUID", id})
}

// execute starts an application on a channel (switch_core_session_execute_application).
func (s *Server) execute(tx *callmodel.Tx, uuid, app, data, id string) {
	fc := fsOf(tx, uuid)
	if fc == nil || !tx.Exists(uuid) {
		return
	}
	impl, ok := apps[app]
	if !ok {
		s.log.Warn("invalid application", "call", uuid, "app", app)
		s.kick(tx, uuid)
		return
	}
	if id == "" {
		id = tx.NewUUID()
	}
	run := &appRun{app: app, data: data, id: id}
	fc.stack = append(fc.stack, run)
	if data != "" {
		_ = tx.SetVar(uuid, "current_application_data", data)
	}
	_ = tx.SetVar(uuid, "current_application", app)
	s.emit(tx, uuid, "CHANNEL_EXECUTE", nil, appHeaders(app, data, id, nil))
	impl(s, tx, uuid, run)
}

// done ends an application with its response and lets the channel go on.
func (s *Server) done(tx *callmodel.Tx, uuid string, run *appRun, response string) {
	fc := fsOf(tx, uuid)
	if fc == nil {
		return
	}
	idx := -1
	for i, r := range fc.stack {
		if r == run {
			idx = i
			break
		}
	}
	if idx < 0 {
		return
	}
	fc.stack = fc.stack[:idx]
	for _, f := range run.stop {
		f()
	}
	if response == "" {
		response = "_none_"
	}
	s.emit(tx, uuid, "CHANNEL_EXECUTE_COMPLETE", nil, appHeaders(run.app, run.data, run.id, &response))
	s.kick(tx, uuid)
}

// kick makes a channel that is idle run its next application: a queued
// execution inside a park, or the next queued/dialplan application.
func (s *Server) kick(tx *callmodel.Tx, uuid string) {
	fc := fsOf(tx, uuid)
	if fc == nil || !tx.Exists(uuid) {
		return
	}
	if n := len(fc.stack); n > 0 {
		top := fc.stack[n-1]
		if top.parked && len(fc.queue) > 0 {
			req := fc.queue[0]
			fc.queue = fc.queue[1:]
			s.execute(tx, uuid, req.app, req.data, req.id)
		}
		return
	}
	if !fc.started {
		return
	}
	if len(fc.queue) > 0 {
		req := fc.queue[0]
		fc.queue = fc.queue[1:]
		s.execute(tx, uuid, req.app, req.data, req.id)
		return
	}
	if len(fc.dp) > 0 {
		a := fc.dp[0]
		fc.dp = fc.dp[1:]
		s.execute(tx, uuid, a.app, a.data, "")
		return
	}
	// nothing left to run: FreeSWITCH hangs the channel up
	tx.Hangup(uuid, callmodel.CauseNormalClearing, callmodel.ByRequest)
}

// unwind ends every running application of a channel that hung up: the
// innermost first, each with its EXECUTE_COMPLETE (and UNPARK for a park).
func (s *Server) unwind(tx *callmodel.Tx, uuid string) {
	fc := fsOf(tx, uuid)
	if fc == nil || fc.unwound {
		return
	}
	fc.unwound = true
	s.endApps(tx, uuid, true)
	fc.queue = nil
	fc.dp = nil
}

// endApps ends the running applications (hangup or transfer).
func (s *Server) endApps(tx *callmodel.Tx, uuid string, hangup bool) {
	for s.endTop(tx, uuid, hangup) {
	}
}

// endTop ends the innermost running application; false when none runs.
func (s *Server) endTop(tx *callmodel.Tx, uuid string, hangup bool) bool {
	fc := fsOf(tx, uuid)
	if fc == nil || len(fc.stack) == 0 {
		return false
	}
	run := fc.stack[len(fc.stack)-1]
	fc.stack = fc.stack[:len(fc.stack)-1]
	for _, f := range run.stop {
		f()
	}
	if run.abort != nil {
		run.abort(tx)
	}
	if run.parked {
		run.parked = false
		s.emit(tx, uuid, "CHANNEL_UNPARK", nil, nil)
	}
	resp := "_none_"
	if hangup && run.hangupResponse != "" {
		resp = run.hangupResponse
	}
	s.emit(tx, uuid, "CHANNEL_EXECUTE_COMPLETE", nil, appHeaders(run.app, run.data, run.id, &resp))
	return true
}

// startDialplan routes a channel through the dialplan of its context and
// starts executing (CS_EXECUTE).
func (s *Server) startDialplan(tx *callmodel.Tx, uuid string) {
	fc := fsOf(tx, uuid)
	snap, ok := tx.Snapshot(uuid)
	if fc == nil || !ok || snap.State == callmodel.StateHangup {
		return
	}
	fc.dp = s.dialplan(snap.Context, snap.Destination)
	_ = tx.SetVar(uuid, "DP_MATCH", "ARRAY::"+snap.Destination+"|:"+snap.Destination)
	fc.v.hit = true
	fc.started = true
	s.setState(tx, uuid, csExecute)
	s.kick(tx, uuid)
}

// dialplan is the lab's dialplan: the targets context plays the lab
// convention, the features context parks *98, every other context hands
// the call to the controller.
func (s *Server) dialplan(context, dest string) []action {
	if context == "targets" {
		b, ok := callmodel.TargetBehaviour(dest)
		if !ok {
			return []action{{"hangup", "NO_ROUTE_DESTINATION"}}
		}
		switch b.Mode {
		case callmodel.ModeAnswer:
			if b.HangupAfter > 0 {
				return []action{
					{"answer", ""},
					{"sched_hangup", fmt.Sprintf("+%d NORMAL_CLEARING", int(b.HangupAfter/time.Second))},
					{"playback", "tone_stream://%(500,500,440);loops=-1"},
				}
			}
			return []action{{"answer", ""}, {"park", ""}}
		case callmodel.ModeBusy:
			return []action{{"hangup", "USER_BUSY"}}
		case callmodel.ModeRing:
			return []action{{"ring_ready", ""}, {"sleep", "60000"}, {"hangup", "NO_ANSWER"}}
		default:
			return []action{{"hangup", b.Cause.Name}}
		}
	}
	if context == "features" {
		// Where callctl hands feature codes back (the lab's features.xml):
		// *98 parks, nothing runs socket.
		if dest == "*98" {
			return []action{{"answer", ""}, {"park", ""}}
		}
		return []action{{"hangup", "UNALLOCATED_NUMBER"}}
	}
	acts := []action{{"set", "instance_name=" + s.cfg.Switchname}}
	last := ""
	for _, c := range s.cfg.Controllers {
		acts = append(acts, action{"socket", c + " async full"})
		last = c
	}
	if last == "" {
		last = "(none)"
	}
	return append(acts,
		action{"log", fmt.Sprintf("WARNING [%s] outbound socket %s unavailable or released the call", s.cfg.Switchname, last)},
		action{"hangup", "DESTINATION_OUT_OF_ORDER"},
	)
}

func appInstant(s *Server, tx *callmodel.Tx, uuid string, run *appRun) {
	s.done(tx, uuid, run, "")
}

func appAnswer(s *Server, tx *callmodel.Tx, uuid string, run *appRun) {
	if snap, _ := tx.Snapshot(uuid); snap.State != callmodel.StateUp {
		_ = tx.SetVar(uuid, "endpoint_disposition", "ANSWER")
	}
	_ = tx.Answer(uuid)
	s.done(tx, uuid, run, "")
}

func appPreAnswer(s *Server, tx *callmodel.Tx, uuid string, run *appRun) {
	_ = tx.EarlyMedia(uuid)
	s.done(tx, uuid, run, "")
}

func appRingReady(s *Server, tx *callmodel.Tx, uuid string, run *appRun) {
	_ = tx.Ring(uuid)
	s.done(tx, uuid, run, "")
}

func splitVar(data string) (string, string) {
	name, value, _ := strings.Cut(data, "=")
	return strings.TrimSpace(name), value
}

func appSet(s *Server, tx *callmodel.Tx, uuid string, run *appRun) {
	name, value := splitVar(run.data)
	if name != "" {
		if value == "" {
			_ = tx.UnsetVar(uuid, name)
		} else {
			_ = tx.SetVar(uuid, name, value)
		}
	}
	s.done(tx, uuid, run, "")
}

func appExport(s *Server, tx *callmodel.Tx, uuid string, run *appRun) {
	name, value := splitVar(run.data)
	name = strings.TrimPrefix(name, "nolocal:")
	if name != "" {
		_ = tx.SetVar(uuid, name, value)
		list, _ := tx.Var(uuid, "export_vars")
		found := false
		for _, n := range strings.Split(list, ",") {
			if n == name {
				found = true
			}
		}
		if !found {
			if list != "" {
				list += ","
			}
			_ = tx.SetVar(uuid, "export_vars", list+name)
		}
	}
	s.done(tx, uuid, run, "")
}

func appUnset(s *Server, tx *callmodel.Tx, uuid string, run *appRun) {
	if n := strings.TrimSpace(run.data); n != "" {
		_ = tx.UnsetVar(uuid, n)
	}
	s.done(tx, uuid, run, "")
}

// causeOf reads a cause given by name or Q.850 number; unknown names are
// NORMAL_CLEARING, as switch_channel_str2cause falls back.
func causeOf(s string) callmodel.Cause {
	s = strings.TrimSpace(s)
	if s == "" {
		return callmodel.CauseNormalClearing
	}
	if n, err := strconv.Atoi(s); err == nil {
		if c, ok := callmodel.CauseByCode(n); ok {
			return c
		}
		return callmodel.CauseNormalClearing
	}
	if c, ok := callmodel.CauseByName(s); ok {
		return c
	}
	return callmodel.CauseNormalClearing
}

func appHangup(s *Server, tx *callmodel.Tx, uuid string, run *appRun) {
	tx.Hangup(uuid, causeOf(run.data), callmodel.ByRequest)
}

// sipCause maps a SIP final response to a hangup cause
// (sofia_glue_sip_cause_to_freeswitch).
func sipCause(code int) callmodel.Cause {
	switch code {
	case 200:
		return callmodel.CauseNormalClearing
	case 401, 402, 403, 407, 603, 608:
		return callmodel.CauseCallRejected
	case 404:
		return callmodel.CauseUnallocatedNumber
	case 485, 604:
		return callmodel.CauseNoRouteDestination
	case 408, 504:
		return callmodel.CauseRecoveryOnTimerExpire
	case 410:
		return callmodel.CauseNumberChanged
	case 413, 414, 416, 420, 421, 423, 505, 513:
		return callmodel.CauseInterworking
	case 480:
		return callmodel.CauseNoUserResponse
	case 400, 481, 500, 503:
		return callmodel.CauseNormalTemporaryFailure
	case 486, 600:
		return callmodel.CauseUserBusy
	case 484:
		return callmodel.CauseInvalidNumberFormat
	case 488, 606:
		return callmodel.CauseIncompatibleDestination
	case 502:
		return callmodel.CauseNetworkOutOfOrder
	case 405:
		return callmodel.CauseServiceUnavailable
	case 482, 483:
		return callmodel.CauseExchangeRoutingError
	case 487:
		return callmodel.CauseOriginatorCancel
	}
	return callmodel.CauseNormalUnspecified
}

func appRespond(s *Server, tx *callmodel.Tx, uuid string, run *appRun) {
	f := strings.Fields(run.data)
	code := 0
	if len(f) > 0 {
		code, _ = strconv.Atoi(f[0])
	}
	switch {
	case code == 180:
		_ = tx.Ring(uuid)
	case code == 183:
		_ = tx.EarlyMedia(uuid)
	case code == 200:
		_ = tx.Answer(uuid)
	case code >= 300:
		if snap, _ := tx.Snapshot(uuid); snap.State != callmodel.StateUp {
			_ = tx.SetVar(uuid, "sip_term_status", strconv.Itoa(code))
			tx.Hangup(uuid, sipCause(code), callmodel.ByRequest)
			return
		}
	}
	s.done(tx, uuid, run, "")
}

func appPlayback(s *Server, tx *callmodel.Tx, uuid string, run *appRun) {
	data := run.data
	switch {
	case strings.HasPrefix(data, "tone_stream://") && strings.Contains(data, "loops=-1"):
		// an endless tone: it plays until the hangup
		run.hangupResponse = "PLAYBACK ERROR"
	case strings.HasPrefix(data, "silence_stream://"):
		ms, _ := strconv.Atoi(strings.TrimPrefix(strings.Split(data, ",")[0], "silence_stream://"))
		if ms < 0 {
			run.hangupResponse = "PLAYBACK ERROR"
			return
		}
		run.stop = append(run.stop, tx.AfterFunc(uuid, time.Duration(ms)*time.Millisecond, func(tx *callmodel.Tx) {
			s.done(tx, uuid, run, "FILE PLAYED")
		}))
	default:
		s.done(tx, uuid, run, "FILE PLAYED")
	}
}

func appEcho(s *Server, tx *callmodel.Tx, uuid string, run *appRun) {}

func appPark(s *Server, tx *callmodel.Tx, uuid string, run *appRun) {
	run.parked = true
	s.emit(tx, uuid, "CHANNEL_PARK", nil, nil)
	s.kick(tx, uuid)
}

func appSleep(s *Server, tx *callmodel.Tx, uuid string, run *appRun) {
	ms, err := strconv.Atoi(strings.TrimSpace(run.data))
	if err != nil || ms <= 0 {
		s.done(tx, uuid, run, "")
		return
	}
	run.stop = append(run.stop, tx.AfterFunc(uuid, time.Duration(ms)*time.Millisecond, func(tx *callmodel.Tx) {
		s.done(tx, uuid, run, "")
	}))
}

func appSchedHangup(s *Server, tx *callmodel.Tx, uuid string, run *appRun) {
	f := strings.Fields(run.data)
	if len(f) > 0 {
		secs, err := strconv.Atoi(strings.TrimPrefix(f[0], "+"))
		if err == nil && secs >= 0 {
			cause := callmodel.CauseAllottedTimeout
			if len(f) > 1 {
				cause = causeOf(f[1])
			}
			tx.AfterFunc(uuid, time.Duration(secs)*time.Second, func(tx *callmodel.Tx) {
				tx.Hangup(uuid, cause, callmodel.ByRequest)
			})
		}
	}
	s.done(tx, uuid, run, "")
}

func appTransfer(s *Server, tx *callmodel.Tx, uuid string, run *appRun) {
	f := strings.Fields(run.data)
	if len(f) == 0 {
		s.done(tx, uuid, run, "")
		return
	}
	dest, dp, ctx := f[0], "", ""
	if len(f) > 1 {
		dp = f[1]
	}
	if len(f) > 2 {
		ctx = f[2]
	}
	s.transfer(tx, uuid, dest, dp, ctx, nil)
}

// referInfo makes a transfer look like the one a SIP REFER causes.
type referInfo struct {
	referTo    string
	referredBy string
}

// transfer is switch_ivr_session_transfer: a new caller profile, the
// running applications end without a hangup, and the dialplan of the new
// destination runs (for the public and default contexts: the socket
// application again, which brings a second outbound connection for the
// same uuid).
func (s *Server) transfer(tx *callmodel.Tx, uuid, dest, dialplan, context string, refer *referInfo) error {
	fc := fsOf(tx, uuid)
	snap, ok := tx.Snapshot(uuid)
	if fc == nil || !ok || snap.State == callmodel.StateHangup {
		return callmodel.ErrNoChannel
	}
	if dialplan == "" {
		dialplan = "XML"
	}
	if context == "" {
		context = snap.Context
	}
	now := tx.Now()
	src := fmt.Sprintf("%d:%s:bl_xfer:%s/%s/%s", now.Unix(), tx.NewUUID(), dest, context, dialplan)
	if old, ok := tx.Var(uuid, "transfer_history"); ok {
		if strings.HasPrefix(old, "ARRAY::") {
			_ = tx.SetVar(uuid, "transfer_history", old+"|:"+src)
		} else {
			_ = tx.SetVar(uuid, "transfer_history", "ARRAY::"+old+"|:"+src)
		}
	} else {
		_ = tx.SetVar(uuid, "transfer_history", src)
	}
	_ = tx.SetVar(uuid, "transfer_source", src)
	if mf, ok := tx.Var(uuid, "max_forwards"); ok {
		if n, err := strconv.Atoi(mf); err == nil && n > 0 {
			_ = tx.SetVar(uuid, "max_forwards", strconv.Itoa(n-1))
		}
	}
	if refer != nil {
		_ = tx.SetVar(uuid, "sip_refer_to", refer.referTo)
		_ = tx.SetVar(uuid, "sip_h_Referred-By", refer.referredBy)
	}
	fc.v.rdnis = snap.Destination
	fc.v.xferSource = src
	fc.v.xferAt = now
	fc.v.profileAt = now
	fc.v.profileIdx = max(fc.v.profileIdx, 1) + 1
	// the new caller profile is in place before the running applications
	// end: their last events already show the new destination
	_ = tx.SetRoute(uuid, dest, context)
	s.endApps(tx, uuid, false)
	fc.dp = nil
	if snap.BridgedTo != "" {
		fc.transferring = true
		tx.Unbridge(uuid)
	}
	fc.v.cs, fc.v.csNumber = csRouting, csRouting
	// FreeSWITCH reports RINGING on this state change of an answered channel
	tx.Emit(uuid, noteFS, &noteData{name: "CHANNEL_STATE", callState: callRinging})
	s.startDialplan(tx, uuid)
	return nil
}
