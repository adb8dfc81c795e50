package esl

import (
	"fmt"
	"strings"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// attXferRun is mod_dptools' att_xfer running on a channel (the phone's
// leg of a bridge): it originates a consultation from that channel while
// its partner (held) stays in its own bridge application (traces
// freeswitch/o-att-xfer-*.events).
type attXferRun struct {
	run  *appRun
	o    *originate
	held string // the channel's bridge partner
	peer string // the consultation's channel once it answered
	// joining: the phone hung up with the consultation up, so held and
	// peer are being joined (uuid_bridge).
	joining bool
}

// attXfer starts att_xfer <dial string> on uuid (uuid_broadcast <uuid>
// att_xfer::<dial string>). Without a bridge partner it ends at once.
func (s *Server) attXfer(tx *callmodel.Tx, uuid, data string) {
	fc := fsOf(tx, uuid)
	snap, ok := tx.Snapshot(uuid)
	if fc == nil || !ok || fc.attXfer != nil {
		return
	}
	run := &appRun{app: "att_xfer", data: data, id: tx.NewUUID()}
	fc.stack = append(fc.stack, run)
	s.emit(tx, uuid, "CHANNEL_EXECUTE", nil, appHeaders(run.app, run.data, run.id, nil))
	ds, err := parseDialString(data)
	if err != nil || snap.BridgedTo == "" {
		s.done(tx, uuid, run, "")
		return
	}
	x := &attXferRun{run: run, held: snap.BridgedTo}
	fc.attXfer = x
	x.o = &originate{aleg: uuid, ds: ds, defaultCaller: callerForLegs(tx, uuid)}
	x.o.onDone = func(tx *callmodel.Tx, winner string, _ callmodel.Cause) {
		if winner == "" {
			// refused: the phone is back with its partner, still in the
			// partner's bridge
			fc.attXfer = nil
			s.done(tx, uuid, run, "")
			return
		}
		x.peer = winner
		if ws, ok := tx.Snapshot(winner); ok {
			if fw := fsOf(tx, winner); fw != nil {
				ws.Vars = callmodel.Vars{}
				fc.v.other = &otherProfile{typ: "originatee", snap: ws, view: fw.v}
			}
		}
		s.emit(tx, uuid, "CHANNEL_BRIDGE", []header{{"Bridge-A-Unique-ID", uuid}, {"Bridge-B-Unique-ID", winner}}, nil)
	}
	run.abort = func(tx *callmodel.Tx) {
		if !x.o.done {
			x.o.cancel(tx, callmodel.CauseOriginatorCancel)
		}
		if x.peer != "" && !x.joining && tx.Exists(x.peer) {
			tx.Hangup(x.peer, callmodel.CauseNormalClearing, callmodel.ByRequest)
		}
		if fc.attXfer == x {
			fc.attXfer = nil
		}
	}
	s.startOriginate(tx, x.o)
}

// attXferHangup: the phone running att_xfer hangs up with the consultation
// up (the transfer completes). Its partner's bridge ends without it
// (bridgeEnded leaves the partner alone), then the partner leaves its
// applications and is joined with the consultation (uuid_bridge).
func (s *Server) attXferHangup(tx *callmodel.Tx, uuid string) {
	fc := fsOf(tx, uuid)
	if fc == nil || fc.attXfer == nil || fc.attXfer.peer == "" {
		return
	}
	x := fc.attXfer
	fh := fsOf(tx, x.held)
	if fh == nil || !tx.Exists(x.held) || !tx.Exists(x.peer) {
		return
	}
	x.joining = true
	fh.keepOnUnbridge = true
	held, peer := x.held, x.peer
	_ = tx.Post(s.model.Name(), func(tx *callmodel.Tx) {
		switch {
		case !tx.Exists(held) && tx.Exists(peer):
			tx.Hangup(peer, callmodel.CauseNormalClearing, callmodel.ByRequest)
			return
		case !tx.Exists(peer) && tx.Exists(held):
			tx.Hangup(held, callmodel.CauseNormalClearing, callmodel.ByRequest)
			return
		case !tx.Exists(held):
			return
		}
		// the bridge application ends first, with no transfer yet (fs1:
		// either order happens), then the socket application with it
		s.endTop(tx, held, false)
		s.setUUIDBr(tx, held, peer)
		s.setUUIDBr(tx, peer, held)
		_ = tx.SetVar(peer, "att_xfer_result", "success")
		s.endApps(tx, held, false)
		fh.dp, fh.queue = nil, nil
		s.joinBridge(tx, peer, held)
	})
}

// attXferDTMF: digits the phone running att_xfer pressed. # cancels the
// consultation: it hangs up, and the phone is bridged back with its
// partner outside the partner's bridge application (uuid_bridge).
func (s *Server) attXferDTMF(tx *callmodel.Tx, uuid, digits string) {
	for _, d := range digits {
		s.emit(tx, uuid, "DTMF", nil, []header{{"DTMF-Digit", string(d)}, {"DTMF-Duration", "2000"}, {"DTMF-Source", "APP"}})
	}
	fc := fsOf(tx, uuid)
	if fc == nil || fc.attXfer == nil || !strings.Contains(digits, "#") {
		return
	}
	x := fc.attXfer
	if !x.o.done {
		x.o.cancel(tx, callmodel.CauseOriginatorCancel)
	}
	if x.peer != "" && tx.Exists(x.peer) {
		tx.Hangup(x.peer, callmodel.CauseNormalClearing, callmodel.ByRequest)
	}
	x.peer = ""
	fh := fsOf(tx, x.held)
	if fh == nil || !tx.Exists(x.held) {
		return
	}
	s.setUUIDBr(tx, x.held, uuid)
	s.setUUIDBr(tx, uuid, x.held)
	_ = tx.SetVar(uuid, "att_xfer_result", "success")
	// The bridge application ends without hanging up its other side (the
	// phone): the bridge's end is seen later (bridgeEnded), not before the
	// applications end here.
	fh.keepOnUnbridge = true
	if fh.bridge != nil {
		fh.bridge.bridged = false
		fh.bridge = nil
	}
	tx.Unbridge(x.held)
	s.endApps(tx, x.held, false)
	fh.dp, fh.queue = nil, nil
	fc.attXfer = nil
	s.done(tx, uuid, x.run, "")
	s.joinBridge(tx, uuid, x.held)
}

// setUUIDBr records that uuid is being joined with other by uuid_bridge.
func (s *Server) setUUIDBr(tx *callmodel.Tx, uuid, other string) {
	_ = tx.SetVar(uuid, "transfer_source", fmt.Sprintf("%d:%s:uuid_br:%s", tx.Now().Unix(), tx.NewUUID(), other))
}

// joinBridge is uuid_bridge of two channels outside any bridge
// application: both execute uuid_bridge, a names b as its other leg (and
// b a), and a raises the CHANNEL_BRIDGE. When one of them hangs up, the
// other follows (bridgeEnded).
func (s *Server) joinBridge(tx *callmodel.Tx, a, b string) {
	fa, fb := fsOf(tx, a), fsOf(tx, b)
	if fa == nil || fb == nil {
		return
	}
	if bs, ok := tx.Snapshot(b); ok {
		bs.Vars = callmodel.Vars{}
		fa.v.other = &otherProfile{typ: "originatee", snap: bs, view: fb.v}
	}
	if as, ok := tx.Snapshot(a); ok {
		as.Vars = callmodel.Vars{}
		fb.v.other = &otherProfile{typ: "originator", snap: as, view: fa.v}
	}
	s.emit(tx, a, "CHANNEL_EXECUTE", nil, appHeaders("uuid_bridge", b, "", nil))
	s.emit(tx, b, "CHANNEL_EXECUTE", nil, appHeaders("uuid_bridge", a, "", nil))
	if err := tx.Bridge(a, b); err != nil {
		s.log.Warn("uuid_bridge failed", "call", a, "other", b, "err", err)
	}
}

// AttXfer runs att_xfer <dial string> on channel uuid, as uuid_broadcast
// <uuid> att_xfer::<dial string> aleg does.
func (s *Server) AttXfer(uuid, dialString string) error {
	return s.model.Do(func(tx *callmodel.Tx) error {
		if !tx.Exists(uuid) {
			return callmodel.ErrNoChannel
		}
		s.attXfer(tx, uuid, dialString)
		return nil
	})
}

// RecvDTMF makes channel uuid receive digits from its far end, as
// uuid_recv_dtmf does (# cancels an att_xfer consultation).
func (s *Server) RecvDTMF(uuid, digits string) error {
	return s.model.Do(func(tx *callmodel.Tx) error {
		if !tx.Exists(uuid) {
			return callmodel.ErrNoChannel
		}
		s.attXferDTMF(tx, uuid, digits)
		return nil
	})
}
