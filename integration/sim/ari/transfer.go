package ari

import (
	"errors"
	"fmt"
)

// transferState is a REFER reported to the controller (ari-only handling)
// and not yet concluded with transfer_progress.
type transferState struct {
	destination string
	// replaces is the channel of the dialog an attended REFER replaces.
	replaces *channel
}

// TransferNotifier is implemented by legs that want the result of a REFER
// they sent (the NOTIFY sipfrag: 100, 200, 503, 603).
type TransferNotifier interface {
	TransferProgress(sipfrag int)
}

// BlindTransfer simulates a blind REFER (Refer-To: exten in the channel's
// own context) received on the SIP channel id, as a phone sends it. With
// the default (core) handling Asterisk moves the call itself: a Local
// channel replaces the transferer in its bridge and its ;2 half re-enters
// Stasis through the dialplan (BridgeBlindTransfer). With
// PJSIP_TRANSFER_HANDLING()=ari-only on the channel, Asterisk only reports
// ChannelTransfer and waits for transfer_progress.
func (s *Server) BlindTransfer(id, exten string) error {
	e := s.eng
	e.lock()
	defer e.unlock()
	c := e.channelOf(id)
	if c == nil {
		return fmt.Errorf("blind transfer: channel %s not found", id)
	}
	if c.tech != techPJSIP {
		return fmt.Errorf("blind transfer: %s is not a SIP channel", c.snap.Name)
	}
	if !c.wasUp {
		return errors.New("blind transfer: the channel is not answered")
	}
	var peer *channel
	if c.bridge != nil {
		for _, m := range c.bridge.members {
			if m != c {
				peer = m
				break
			}
		}
	}
	if c.ariOnlyTransfer {
		c.transfer = &transferState{destination: exten}
		e.emitTransfer(c, "")
		return nil
	}
	if peer == nil {
		return errors.New("blind transfer: the channel is not bridged with anyone")
	}
	ctx := c.snap.Dialplan.Context
	if !e.localExists(exten, ctx) {
		return fmt.Errorf("blind transfer: no extension %s in %s", exten, ctx)
	}
	br := c.bridge
	before := br.snap
	before.Channels = append([]string(nil), br.snap.Channels...)

	e.emit(encChannelEvent(nil, "ChannelUnhold", e.now(), &c.snap), nil, c)
	e.varset(peer, "BLINDTRANSFER", c.snap.Name)
	e.varset(c, "BLINDTRANSFER", peer.snap.Name)

	l1, l2 := e.newLocalPair(exten, ctx, "", "", false)
	referTo := fmt.Sprintf("sip:%s@%s", exten, s.cfg.SIPAddr)
	referredBy := fmt.Sprintf("<sip:%s@%s>", c.snap.Caller.Number, c.transfererAddr())
	for _, l := range []*channel{l1, l2} {
		l.setVar("SIPTRANSFER", "yes")
		l.setVar("SIPREFERTOHDR", referTo)
		l.setVar("SIPREFERRINGCONTEXT", ctx)
		l.setVar("SIPREFERREDBYHDR", referredBy)
	}
	l2.setVar("BLINDTRANSFER", c.snap.Name)
	// ;1 is dialing ;2 (the Dial started before anyone watched ;1).
	l1.dial = &dialing{} // the recorded Dial ANSWER has an empty dialstring
	l1.snap.Dialplan.AppName, l1.snap.Dialplan.AppData = "", ""

	// ;2 runs the dialplan: NoOp, Stasis(app,ctx,exten).
	e.runStasisContext(l2, ctx, exten, 1)
	if l2.gone {
		return nil
	}
	// ;1 enters the transferer's application in its place.
	replaceSnap := l1.snap
	l1.snap.Dialplan.AppName, l1.snap.Dialplan.AppData = "Stasis", c.stasis
	app := c.stasis
	if app == "" {
		app = e.cfg.App
	}
	l1.stasis = app
	e.emitToApp(encStasisStart(nil, e.now(), []string{}, &l1.snap, &c.snap), app)
	e.bridgeReplace(c, l1)
	e.emit(encBlindTransfer(nil, e.now(), &blindTransfer{
		Transferer: &c.snap, Exten: exten, Context: ctx, Result: "Success", External: true,
		Transferee: &peer.snap, Replace: &replaceSnap, Bridge: &before,
	}), br, c, peer)
	if n, ok := c.leg.(TransferNotifier); ok {
		e.later(func() { n.TransferProgress(100) })
		l1.onAnswer = func() { e.later(func() { n.TransferProgress(200) }) }
	}
	return nil
}

// SetEndpointVar is pjsip.conf's set_var = name=value on a PJSIP endpoint:
// every channel of the endpoint created from now on gets it, dialplan
// functions included (set_var = PJSIP_TRANSFER_HANDLING()=ari-only makes
// the endpoint's REFERs ChannelTransfer events).
func (s *Server) SetEndpointVar(endpoint, name, value string) {
	e := s.eng
	e.lock()
	defer e.unlock()
	if e.epVars == nil {
		e.epVars = map[string][][2]string{}
	}
	e.epVars[endpoint] = append(e.epVars[endpoint], [2]string{name, value})
}

// AttendedTransfer simulates a REFER with Replaces sent on channel a by a
// phone that has a second call on channel b (Refer-To: b's extension,
// Replaces: b's dialog), both bridged with a party each. With core
// handling Asterisk links the two bridges with a Local pair
// (Local/_attended@transfer): ;2 replaces b in b's bridge, ;1 replaces a in
// a's, both entering Stasis with no arguments and replace_channel; b is
// hung up (Asterisk BYEs the second dialog) and BridgeAttendedTransfer
// reports it; a stays until the phone hangs up. With ari-only handling on
// a, only ChannelTransfer (with protocol_id and b's side) is reported.
func (s *Server) AttendedTransfer(a, b string) error {
	e := s.eng
	e.lock()
	defer e.unlock()
	ca, cb := e.channelOf(a), e.channelOf(b)
	if ca == nil || cb == nil {
		return fmt.Errorf("attended transfer: channel %s or %s not found", a, b)
	}
	if ca.tech != techPJSIP || cb.tech != techPJSIP || !ca.wasUp || !cb.wasUp {
		return errors.New("attended transfer: both legs must be answered SIP channels")
	}
	peer := func(c *channel) *channel {
		if c.bridge == nil {
			return nil
		}
		for _, m := range c.bridge.members {
			if m != c {
				return m
			}
		}
		return nil
	}
	pa, pb := peer(ca), peer(cb)
	exten := cb.snap.Dialplan.Exten
	if cb.outgoing {
		exten = cb.resource
	}
	if ca.ariOnlyTransfer {
		ca.transfer = &transferState{destination: exten, replaces: cb}
		e.emitTransfer(ca, "")
		return nil
	}
	if pa == nil || pb == nil {
		return errors.New("attended transfer: a leg is not bridged with anyone")
	}
	ba, bb := ca.bridge, cb.bridge
	beforeA, beforeB := ba.snap, bb.snap
	beforeA.Channels = append([]string(nil), ba.snap.Channels...)
	beforeB.Channels = append([]string(nil), bb.snap.Channels...)
	e.emit(encChannelEvent(nil, "ChannelUnhold", e.now(), &ca.snap), nil, ca)
	e.emit(encChannelEvent(nil, "ChannelUnhold", e.now(), &cb.snap), nil, cb)
	e.varset(pa, "ATTENDEDTRANSFER", ca.snap.Name)
	e.varset(ca, "ATTENDEDTRANSFER", pa.snap.Name)

	l1, l2 := e.newLocalPair("_attended", "transfer", "", "", false)
	l1.dial = &dialing{}
	l1.snap.Dialplan.AppName, l1.snap.Dialplan.AppData = "", ""
	l2.snap.State = stateUp
	l2.wasUp = true
	enter := func(l, replaced *channel) {
		app := replaced.stasis
		if app == "" {
			app = e.cfg.App
		}
		replaceSnap := replaced.snap
		l.snap.Dialplan.AppName, l.snap.Dialplan.AppData = "Stasis", app
		l.stasis = app
		e.emitToApp(encStasisStart(nil, e.now(), []string{}, &l.snap, &replaceSnap), app)
		e.bridgeReplace(replaced, l)
	}
	enter(l2, cb)
	enter(l1, ca)
	// ;2 is Up: the dial of ;1 is answered (Dial ANSWER, peer ;1).
	e.dialAnswered(l1)
	// Asterisk ends the second dialog (BYE): the phone's channel b goes.
	e.hangup(cb, causeNormalClearing, nil)
	e.emit(encAttendedTransfer(nil, e.now(), &attendedTransfer{
		First: &ca.snap, Second: &cb.snap, Transferee: &pa.snap, Target: &pb.snap,
		FirstBridge: &beforeA, SecondBridge: &beforeB, Link1: &l1.snap, Link2: &l2.snap,
	}), ba, ca, pa)
	// Then the target's connected line names who it talks to through the
	// link: ;2's caller, the transferee's side.
	if !pb.gone && pb.snap.Connected != l2.snap.Caller {
		pb.snap.Connected = l2.snap.Caller
		e.emit(encChannelEvent(nil, "ChannelConnectedLine", e.now(), &pb.snap), nil, pb)
	}
	if n, ok := ca.leg.(TransferNotifier); ok {
		e.later(func() { n.TransferProgress(100) })
		e.later(func() { n.TransferProgress(200) })
	}
	return nil
}

// transfererAddr is the address a REFER from c would carry in Referred-By.
func (c *channel) transfererAddr() string {
	if c.remoteAddr != "" {
		return c.remoteAddr
	}
	return "127.0.0.1"
}

// emitTransfer reports the pending REFER of c (ChannelTransfer).
func (e *engine) emitTransfer(c *channel, state string) {
	t := &channelTransfer{Destination: c.transfer.destination, Source: &c.snap, State: state}
	if c.bridge != nil {
		snap := c.bridge.snap
		snap.Channels = append([]string(nil), c.bridge.snap.Channels...)
		t.Bridge = &snap
		for _, m := range c.bridge.members {
			if m != c {
				t.Connected = &m.snap
				break
			}
		}
	}
	var br *bridge
	if c.bridge != nil {
		br = c.bridge
	}
	if r := c.transfer.replaces; r != nil {
		t.ProtocolID, t.FromTag, t.ToTag = r.snap.ProtocolID, "from-"+r.snap.ID, "to-"+r.snap.ID
		if e.channels[r.snap.ID] == r {
			t.Replaced = &r.snap
			if r.bridge != nil {
				snap := r.bridge.snap
				snap.Channels = append([]string(nil), r.bridge.snap.Channels...)
				t.TargetBridge = &snap
				for _, m := range r.bridge.members {
					if m != r {
						t.Target = &m.snap
						break
					}
				}
			}
		}
	}
	e.emit(encChannelTransfer(nil, e.now(), t), br, c)
}

// transferProgress is POST /channels/{id}/transfer_progress: Asterisk
// re-publishes ChannelTransfer with the state and NOTIFYs the transferer.
func (e *engine) transferProgress(c *channel, state string) *apiError {
	frag := 0
	switch state {
	case "channel_progress":
		frag = 100
	case "channel_answered":
		frag = 200
	case "channel_unavailable":
		frag = 503
	case "channel_declined":
		frag = 603
	default:
		return errf(400, "Invalid states value")
	}
	if c.transfer == nil {
		return errf(400, "Channel has no transfer in progress")
	}
	e.emitTransfer(c, state)
	if frag >= 200 {
		c.transfer = nil
	}
	if n, ok := c.leg.(TransferNotifier); ok {
		e.later(func() { n.TransferProgress(frag) })
	}
	return nil
}

// Redirect sends channel id (an ARI id, or the call model's uuid of an
// inbound call) on to exten in context, as an AMI Redirect or another
// application's /continue does: the channel leaves its bridge and its
// application and runs the dialplan there, which hands it to the
// application again in a Stasis context (n-continue-out-of-bridge).
func (s *Server) Redirect(id, context, exten string) error {
	e := s.eng
	e.lock()
	defer e.unlockSync()
	c := e.channelOf(id)
	if c == nil {
		return fmt.Errorf("redirect: channel %s not found", id)
	}
	if c.stasis == "" {
		return fmt.Errorf("redirect: channel %s is not in an application", id)
	}
	e.continueDialplan(c, context, exten, 1)
	return nil
}

// channelOf finds a channel by its ARI id or, for a call the call model
// placed into the server (whose ARI id Asterisk chose), by the model's uuid.
func (e *engine) channelOf(id string) *channel {
	if c := e.channels[id]; c != nil {
		return c
	}
	for _, o := range e.channels {
		if l, ok := o.leg.(*modelLeg); ok && l.uuid == id && !o.gone {
			return o
		}
	}
	return nil
}
