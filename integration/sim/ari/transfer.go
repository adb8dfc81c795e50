package ari

import (
	"errors"
	"fmt"
)

// transferState is a REFER reported to the controller (ari-only handling)
// and not yet concluded with transfer_progress.
type transferState struct {
	destination string
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
	c := e.channels[id]
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
