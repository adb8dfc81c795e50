package esl

import (
	"strconv"
	"strings"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// bridgeRun is a bridge application in progress on its A leg.
type bridgeRun struct {
	run     *appRun
	o       *originate
	b       string // the B leg once bridged
	bridged bool
}

// dialStatus is the DIALSTATUS FreeSWITCH sets for an originate result.
func dialStatus(c callmodel.Cause) string {
	switch c {
	case causeSuccess:
		return "SUCCESS"
	case callmodel.CauseOriginatorCancel:
		return "CANCEL"
	case callmodel.CauseUserBusy:
		return "BUSY"
	case callmodel.CauseNoAnswer:
		return "NOANSWER"
	case callmodel.CauseDestinationOutOfOrder:
		return "INVALIDARGS"
	case callmodel.CauseCallRejected:
		return "DONTCALL"
	}
	return c.Name
}

// continueOnFail reads continue_on_fail: true, or a list of cause names or
// Q.850 codes that let the dialplan go on.
func continueOnFail(v string, c callmodel.Cause) bool {
	v = strings.TrimSpace(v)
	switch strings.ToLower(v) {
	case "", "false", "no", "off", "0":
		return false
	case "true", "yes", "on":
		return true
	}
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if strings.EqualFold(item, c.Name) || item == strconv.Itoa(c.Q850()) {
			return true
		}
	}
	return false
}

// exportedVars are the A leg's variables its legs inherit: the names in
// export_vars, and the sip_h_ headers to send.
func exportedVars(tx *callmodel.Tx, a string) []header {
	snap, ok := tx.Snapshot(a)
	if !ok {
		return nil
	}
	var out []header
	exports := map[string]bool{}
	if list, ok := snap.Vars.Get("export_vars"); ok {
		for _, n := range strings.Split(list, ",") {
			exports[strings.TrimSpace(n)] = true
		}
	}
	snap.Vars.Each(func(name, value string) {
		if exports[name] || strings.HasPrefix(name, "sip_h_") {
			out = append(out, header{name, value})
		}
	})
	return out
}

// callerForLegs is the caller id the A leg presents to its legs:
// effective_caller_id_* if set, else its caller id (for an originated A
// leg, the flipped one: what it reached).
func callerForLegs(tx *callmodel.Tx, a string) callmodel.Party {
	snap, _ := tx.Snapshot(a)
	p := snap.Caller
	if v, ok := snap.Vars.Get("effective_caller_id_number"); ok {
		p.Number = v
	}
	if v, ok := snap.Vars.Get("effective_caller_id_name"); ok {
		p.Name = v
	}
	return p
}

func appBridge(s *Server, tx *callmodel.Tx, uuid string, run *appRun) {
	fc := fsOf(tx, uuid)
	ds, err := parseDialString(run.data)
	if err != nil {
		_ = tx.SetVar(uuid, "originate_disposition", "failure")
		_ = tx.SetVar(uuid, "DIALSTATUS", "INVALIDARGS")
		s.done(tx, uuid, run, "")
		return
	}
	prev := fc.v.callState
	s.setCallState(tx, uuid, callRingWait)
	br := &bridgeRun{run: run}
	fc.bridge = br
	o := &originate{
		aleg:          uuid,
		ds:            ds,
		defaultCaller: callerForLegs(tx, uuid),
		inherited:     exportedVars(tx, uuid),
	}
	br.o = o
	o.onDone = func(tx *callmodel.Tx, winner string, cause callmodel.Cause) {
		s.bridgeResult(tx, uuid, br, prev, winner, cause)
	}
	run.abort = func(tx *callmodel.Tx) {
		// the A leg hung up or was transferred: cancel or release the B leg
		if !o.done {
			o.cancel(tx, callmodel.CauseOriginatorCancel)
		}
		if br.bridged && tx.Exists(br.b) {
			tx.Hangup(br.b, callmodel.CauseNormalClearing, callmodel.ByRequest)
		}
		if fc.bridge == br {
			fc.bridge = nil
		}
	}
	s.startOriginate(tx, o)
}

func (s *Server) bridgeResult(tx *callmodel.Tx, a string, br *bridgeRun, prev, winner string, cause callmodel.Cause) {
	fc := fsOf(tx, a)
	o := br.o
	if fc == nil || !tx.Exists(a) {
		if winner != "" {
			tx.Hangup(winner, callmodel.CauseOriginatorCancel, callmodel.ByRequest)
			return
		}
		// The caller hung up: its bridge still ends with the legs it rang
		// (FreeSWITCH 1.10.12: originate_causes ARRAY::b1;USER_BUSY|:b2;ORIGINATOR_CANCEL,
		// originate_disposition ORIGINATOR_CANCEL on the bridge's
		// CHANNEL_EXECUTE_COMPLETE, before b2's CHANNEL_HANGUP_COMPLETE).
		if fc != nil && len(o.causes) > 0 {
			_ = tx.SetVar(a, "originate_causes", joinArray(o.causes))
			_ = tx.SetVar(a, "originate_disposition", cause.Name)
		}
		return
	}
	if len(o.originated) > 0 {
		_ = tx.SetVar(a, "originated_legs", joinArray(o.originated))
	}
	if winner == "" {
		_ = tx.SetVar(a, "last_bridge_hangup_cause", cause.Name)
		_ = tx.SetVar(a, "originate_disposition", cause.Name)
		_ = tx.SetVar(a, "DIALSTATUS", dialStatus(cause))
		if len(o.causes) > 0 {
			_ = tx.SetVar(a, "originate_causes", joinArray(o.causes))
		}
		_ = tx.SetVar(a, "originate_failed_cause", cause.Name)
		if prev == callRingWait {
			prev = callActive
		}
		if snap, _ := tx.Snapshot(a); snap.State == callmodel.StateUp {
			s.setCallState(tx, a, callActive)
		} else {
			s.setCallState(tx, a, prev)
		}
		fc.bridge = nil
		cof, _ := tx.Var(a, "continue_on_fail")
		if cause == callmodel.CauseOriginatorCancel || continueOnFail(cof, cause) {
			s.done(tx, a, br.run, "")
			return
		}
		tx.Hangup(a, cause, callmodel.ByRequest)
		return
	}
	bsnap, _ := tx.Snapshot(winner)
	_ = tx.SetVar(a, "originate_disposition", "SUCCESS")
	_ = tx.SetVar(a, "DIALSTATUS", "SUCCESS")
	_ = tx.SetVar(a, "originate_causes", joinArray(o.causes))
	_ = tx.SetVar(a, "signal_bond", winner)
	if fb := fsOf(tx, winner); fb != nil {
		fc.v.other = &otherProfile{typ: "originatee", snap: bsnap, view: fb.v}
		fc.v.other.snap.Vars = callmodel.Vars{}
	}
	if bsnap.Callee.Number != "" {
		// switch_channel_pass_callee_id: A now shows whom it reached
		_ = tx.SetCallee(a, bsnap.Callee)
	}
	if snap, _ := tx.Snapshot(a); snap.State != callmodel.StateUp {
		_ = tx.Answer(a)
	}
	s.setCallState(tx, a, callActive)
	br.b = winner
	br.bridged = true
	_ = tx.SetVar(a, "last_bridge_to", winner)
	_ = tx.SetVar(a, "bridge_channel", bsnap.Name)
	_ = tx.SetVar(a, "bridge_uuid", winner)
	_ = tx.SetVar(a, "last_sent_callee_id_name", bsnap.Callee.Name)
	_ = tx.SetVar(a, "last_sent_callee_id_number", bsnap.Callee.Number)
	_ = tx.SetVar(a, "last_bridge_role", "originator")
	_ = tx.SetVar(winner, "bridge_uuid", a)
	_ = tx.SetVar(winner, "last_bridge_role", "originatee")
	if err := tx.Bridge(a, winner); err != nil {
		s.log.Warn("bridge failed", "call", a, "other", winner, "err", err)
		br.bridged = false
		fc.bridge = nil
		s.done(tx, a, br.run, "")
	}
}

func joinArray(items []string) string {
	if len(items) == 1 {
		return items[0]
	}
	return "ARRAY::" + strings.Join(items, "|:")
}

// bridgeEnded handles the end of a bridge: the bridge application of the A
// leg completes (or, with hangup_after_bridge, the A leg hangs up); a B
// leg left alone by its A leg is hung up.
func (s *Server) bridgeEnded(tx *callmodel.Tx, ev *callmodel.Event) {
	a, b := ev.Channel.UUID, ev.Other.UUID
	fa := fsOf(tx, a)
	if fa == nil {
		return
	}
	br := fa.bridge
	if fa.keepOnUnbridge {
		// att_xfer joins it elsewhere (see attXferHangup, attXferDTMF).
		fa.keepOnUnbridge = false
		fa.bridge = nil
		if br != nil {
			br.bridged = false
		}
		return
	}
	if fa.replaced {
		// An attended transfer took the other side away: it is bridged
		// with the transferred party now (see AttendedTransfer).
		fa.bridge = nil
		if br != nil {
			br.bridged = false
		}
		return
	}
	if fa.transferring {
		// The channel left the bridge for the dialplan (a REFER, a
		// uuid_transfer): it lives on; the other side, whose bridge ended,
		// is hung up as FreeSWITCH does with the originated leg.
		fa.transferring = false
		fa.bridge = nil
		if br != nil {
			br.bridged = false
		}
		if tx.Exists(b) {
			tx.Hangup(b, callmodel.CauseNormalClearing, callmodel.ByRequest)
		}
		return
	}
	bCause := ev.Other.Cause
	if ev.Other.State != callmodel.StateHangup {
		bCause = ev.Channel.Cause
	}
	if tx.Exists(a) && !bCause.IsZero() {
		_ = tx.SetVar(a, "bridge_hangup_cause", bCause.Name)
		_ = tx.SetVar(a, "last_bridge_hangup_cause", bCause.Name)
	}
	if br == nil || br.b != b {
		// uuid_bridge: the survivor follows
		switch {
		case !tx.Exists(a) && tx.Exists(b):
			tx.Hangup(b, callmodel.CauseNormalClearing, callmodel.ByRequest)
		case tx.Exists(a) && !tx.Exists(b):
			tx.Hangup(a, callmodel.CauseNormalClearing, callmodel.ByRequest)
		}
		return
	}
	fa.bridge = nil
	br.bridged = false
	if !tx.Exists(a) {
		if tx.Exists(b) {
			tx.Hangup(b, callmodel.CauseNormalClearing, callmodel.ByRequest)
		}
		return
	}
	if hab, _ := tx.Var(a, "hangup_after_bridge"); hab == "true" {
		tx.Hangup(a, callmodel.CauseNormalClearing, callmodel.ByRequest)
		return
	}
	s.done(tx, a, br.run, "")
}
