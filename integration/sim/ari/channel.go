package ari

import (
	"strings"
	"time"
)

type techKind uint8

const (
	techLocal techKind = iota + 1
	techPJSIP
)

// Channel states as ARI spells them.
const (
	stateDown    = "Down"
	stateRing    = "Ring"
	stateRinging = "Ringing"
	stateUp      = "Up"
	stateBusy    = "Busy"
)

// outgoingLine is the dialplan location Asterisk reports for a channel it
// dials (ast_dial / Dial()) until it runs an application.
var outgoingLine = cep{AppName: "AppDial2", AppData: "(Outgoing Line)"}

type channel struct {
	e    *engine
	snap chanSnap

	tech  techKind
	half  int      // Local: 1 or 2
	other *channel // Local: the other half
	// resource is the PJSIP endpoint ("2001", "ast2") or, for Local, "exten@context".
	resource string
	inbound  bool
	trunk    bool // the SIP peer is another server (a hangup carries a cause)
	// remoteAddr is the SIP host:port of the far end of an inbound call.
	remoteAddr string
	// outgoing: created by originate/create/Dial; its dialplan reverts to
	// AppDial2 when it is destroyed, as the recorded ChannelDestroyed show.
	outgoing bool

	vars   map[string]string
	hdrIn  map[string]string // SIP headers received (PJSIP_HEADER(read,...))
	hdrOut []header          // SIP headers to send (PJSIP_HEADER(add,...))

	subs   []string // applications subscribed explicitly
	stasis string   // application the channel is in, "" outside Stasis

	bridge *bridge
	dial   *dialing
	leg    Leg // the SIP dialog of a PJSIP channel

	// createdDial is the dial string of a channel made by POST
	// /channels/create, dialed later by POST /channels/{id}/dial.
	createdDial string
	// afterAnswer: an originate with extension instead of app runs the
	// dialplan there once answered.
	afterAnswer *dialTarget
	// onAnswer runs (engine locked) when the channel's dial is answered.
	onAnswer func()

	timers []*time.Timer
	gone   bool
	// hangupPending: a hangup request was accepted, the channel goes after
	// Config.HangupDelay.
	hangupPending bool
	rtpStatsSet   bool // the RTPAUDIOQOS* variables were set
	// cause is the hangup cause set before the channel goes away (Busy()
	// sets 17, Congestion() 34, DELETE the requested reason).
	cause int
	// teardownState, if set, is the state the channel reports when it is
	// torn down (Congestion() leaves it Busy only then).
	teardownState string

	wasUp           bool // answered at some point
	ariOnlyTransfer bool
	transfer        *transferState
}

type header struct{ name, value string }

// dialing is an outgoing dial in progress (originate or /dial) until the
// callee answers or the dial fails.
type dialing struct {
	dialstring string
	app        string   // originate: application to enter on answer
	args       []string // its arguments
	caller     *channel // /dial?caller=
	timer      *time.Timer
}

func (e *engine) newChannel(id, name string, tech techKind, state string, dp cep) *channel {
	c := &channel{
		e:    e,
		tech: tech,
		snap: chanSnap{
			ID:       id,
			Name:     name,
			State:    state,
			Dialplan: dp,
			Created:  e.now(),
			Language: "en",
		},
	}
	e.addChannel(c)
	// ChannelCreated is emitted before anyone could subscribe to the
	// channel: only applications subscribed to everything or to every
	// channel see it.
	e.emit(encChannelEvent(nil, "ChannelCreated", c.snap.Created, &c.snap), nil, c)
	return c
}

func (c *channel) subscribed(app string) bool {
	for _, s := range c.subs {
		if s == app {
			return true
		}
	}
	return false
}

func (c *channel) subscribe(app string) {
	if app != "" && !c.subscribed(app) {
		c.subs = append(c.subs, app)
	}
}

func (c *channel) unsubscribe(app string) {
	for i, s := range c.subs {
		if s == app {
			c.subs = append(c.subs[:i], c.subs[i+1:]...)
			return
		}
	}
}

func (c *channel) dropTimer(t *time.Timer) {
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return
		}
	}
}

func (c *channel) stopTimers() {
	for _, t := range c.timers {
		t.Stop()
	}
	c.timers = nil
}

func (c *channel) setVar(name, value string) {
	if c.vars == nil {
		c.vars = make(map[string]string)
	}
	c.vars[name] = value
}

// --- state changes with their events -------------------------------------

func (e *engine) setState(c *channel, state string) {
	if c.snap.State == state {
		return
	}
	c.snap.State = state
	if state == stateUp {
		c.wasUp = true
	}
	e.emit(encChannelEvent(nil, "ChannelStateChange", e.now(), &c.snap), nil, c)
}

// runApp moves the channel to a dialplan application (ChannelDialplan).
func (e *engine) runApp(c *channel, prio int, app, data string) {
	c.snap.Dialplan.Priority = prio
	c.snap.Dialplan.AppName = app
	c.snap.Dialplan.AppData = data
	e.emit(encDialplan(nil, e.now(), app, data, &c.snap), nil, c)
}

// varset sets a channel variable and reports it (ChannelVarset).
func (e *engine) varset(c *channel, name, value string) {
	c.setVar(name, value)
	e.emit(encVarset(nil, e.now(), name, value, &c.snap), nil, c)
}

func (e *engine) setCaller(c *channel, p party, connected bool) {
	c.snap.Caller = p
	if connected {
		c.snap.Connected = p
	}
	ts := e.now()
	e.emit(encCallerID(nil, ts, 0, &c.snap), nil, c)
	if connected {
		e.emit(encChannelEvent(nil, "ChannelConnectedLine", ts, &c.snap), nil, c)
	}
}

func (e *engine) hangupRequest(c *channel, hr hangupRequest) {
	e.emit(encHangupRequest(nil, e.now(), hr, &c.snap), nil, c)
}

// --- Stasis --------------------------------------------------------------

// enterStasis runs Stasis(app,args...) on c. It fails, as app_stasis does
// (STASISSTATUS=FAILED), when no WebSocket serves the application.
func (e *engine) enterStasis(c *channel, app string, args []string, replace *channel) bool {
	data := app
	if len(args) > 0 {
		data += "," + strings.Join(args, ",")
	}
	c.snap.Dialplan.AppName = "Stasis"
	c.snap.Dialplan.AppData = data
	if e.activeApp(app) == nil {
		e.varset(c, "STASISSTATUS", "FAILED")
		e.log.Debug("stasis application not active, dialplan continues", "app", app, "call", c.snap.ID)
		return false
	}
	e.varset(c, "STASISSTATUS", "")
	c.stasis = app
	if args == nil {
		args = []string{}
	}
	var rep *chanSnap
	if replace != nil {
		rep = &replace.snap
	}
	e.emitToApp(encStasisStart(nil, e.now(), args, &c.snap, rep), app)
	return true
}

// leaveStasis takes c out of its bridge and out of Stasis (StasisEnd). The
// implicit subscription ends with it: a channel that entered Stasis from the
// dialplan is not reported any more unless explicitly subscribed.
func (e *engine) leaveStasis(c *channel) {
	if c.stasis == "" {
		return
	}
	if c.bridge != nil {
		e.bridgeLeave(c)
	}
	e.emitToApp(encChannelEvent(nil, "StasisEnd", e.now(), &c.snap), c.stasis)
	c.stasis = ""
	e.varset(c, "STASISSTATUS", "SUCCESS")
}

// --- dialing ---------------------------------------------------------------

func (e *engine) startDial(c *channel, d *dialing, timeout time.Duration) {
	c.dial = d
	e.dialEvent(c, "")
	if timeout > 0 {
		d.timer = e.afterFunc(c, timeout, func() { e.dialTimeout(c) })
	}
}

func (e *engine) dialEvent(c *channel, status string) {
	if c.dial == nil {
		return
	}
	var caller *chanSnap
	if c.dial.caller != nil {
		caller = &c.dial.caller.snap
	}
	e.emit(encDial(nil, e.now(), caller, status, "", c.dial.dialstring, &c.snap), nil, c, c.dial.caller)
}

func (e *engine) endDial(c *channel) *dialing {
	d := c.dial
	if d != nil && d.timer != nil {
		d.timer.Stop()
		c.dropTimer(d.timer)
	}
	c.dial = nil
	return d
}

// dialRinging reports that the callee is alerting.
func (e *engine) dialRinging(c *channel) {
	e.setState(c, stateRinging)
	e.dialEvent(c, "RINGING")
}

// dialAnswered completes the dial of c: Up, Dial ANSWER, and for an
// originate with an application, Stasis.
func (e *engine) dialAnswered(c *channel) {
	if c.dial == nil {
		e.setState(c, stateUp)
		return
	}
	e.setState(c, stateUp)
	e.dialEvent(c, "ANSWER")
	d := e.endDial(c)
	if f := c.onAnswer; f != nil {
		c.onAnswer = nil
		f()
	}
	switch {
	case d.app != "" && c.stasis == "":
		if !e.enterStasis(c, d.app, d.args, nil) {
			e.hangup(c, causeNormalClearing, nil)
		}
	case c.afterAnswer != nil:
		t := c.afterAnswer
		c.afterAnswer = nil
		e.continueDialplan(c, t.context, t.exten, t.prio)
	}
}

// dialFailed ends the dial of c with a final status: the dial code hangs
// the channel up with cause (0 for Local channels, whose real cause is on
// the ;2 half).
func (e *engine) dialFailed(c *channel, status string, cause int) {
	if c.dial == nil {
		return
	}
	e.dialEvent(c, status)
	e.endDial(c)
	e.leaveStasis(c)
	e.destroy(c, cause)
}

// dialTimeout: no answer within the originate timeout. Asterisk sends no
// final Dial event and destroys the channel with cause 19.
func (e *engine) dialTimeout(c *channel) {
	if c.dial == nil {
		return
	}
	e.endDial(c)
	e.leaveStasis(c)
	e.destroy(c, causeNoAnswer)
}

// --- hangup ----------------------------------------------------------------

// hangup tears c down: the hangup request (if any), out of Stasis and its
// bridge, then destroyed with cause.
func (e *engine) hangup(c *channel, cause int, hr *hangupRequest) {
	if c.gone {
		return
	}
	e.rtpStats(c)
	if hr != nil {
		e.hangupRequest(c, *hr)
	}
	if c.dial != nil {
		// A dialed channel hung up before answering: the dial reads the
		// hangup and publishes a status for its cause (main/dial.c).
		e.dialEvent(c, dialStatusForCause(cause))
		e.endDial(c)
	}
	e.leaveStasis(c)
	if c.bridge != nil {
		e.bridgeLeave(c)
	}
	e.destroy(c, cause)
}

// destroy ends c with cause (ChannelDestroyed). For a Local half, the other
// half is told first (ChannelHangupRequest with the same cause) and torn
// down after, in the order the recorded traces show.
func (e *engine) destroy(c *channel, cause int) {
	if c.gone {
		return
	}
	c.gone = true
	c.stopTimers()
	if c.stasis != "" {
		// A channel destroyed while still in Stasis (restart paths) leaves
		// without its bridge events.
		c.stasis = ""
	}
	if c.bridge != nil {
		e.bridgeLeave(c)
	}
	other := c.other
	if other != nil && !other.gone {
		e.hangupRequest(other, hangupRequest{HasCause: true, Cause: cause})
	}
	if c.leg != nil {
		leg := c.leg
		c.leg = nil
		e.later(func() { leg.Hangup(cause) })
	}
	e.finishChannel(c, cause)
	if other != nil && !other.gone {
		e.teardownOther(other, cause)
	}
}

// teardownOther ends the surviving half of a Local pair whose peer went.
func (e *engine) teardownOther(o *channel, cause int) {
	if o.teardownState != "" {
		e.setState(o, o.teardownState)
	}
	if o.half == 2 && o.stasis == "" {
		// The ;2 half runs dialplan: its PBX thread notices the hangup.
		e.hangupRequest(o, hangupRequest{HasCause: true, Cause: causeNormalClearing, Soft: true})
	}
	e.leaveStasis(o)
	if o.bridge != nil {
		e.bridgeLeave(o)
	}
	if o.dial != nil {
		e.dialEvent(o, dialStatusForCause(cause))
		e.endDial(o)
	}
	own := o.cause
	if own == 0 {
		own = cause
	}
	o.gone = true
	o.stopTimers()
	e.finishChannel(o, own)
}

// finishChannel emits ChannelDestroyed and forgets the channel.
func (e *engine) finishChannel(c *channel, cause int) {
	c.gone = true
	switch {
	case c.tech == techLocal && c.half == 2:
		c.snap.Dialplan.AppName, c.snap.Dialplan.AppData = "", ""
	case c.outgoing:
		c.snap.Dialplan.AppName, c.snap.Dialplan.AppData = outgoingLine.AppName, outgoingLine.AppData
	}
	e.emit(encDestroyed(nil, e.now(), cause, &c.snap), nil, c)
	e.removeChannel(c)
}
