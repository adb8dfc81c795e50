package ari

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The simulated dialplan is the lab's (see traces/README.md):
//
//	[targets]   1XX answer, hang up after 30 s; 2XX Busy(5); 3XX Ringing,
//	            Wait(60); 4XX Congestion(5); 5XX answer and stay up.
//	[from-sipp], [from-trunk] and the other inbound contexts:
//	            exten => _X.,1,NoOp(<ctx>: "<name>" <<num>> -> ${EXTEN})
//	             same => n,Stasis(<app>,<ctx>,${EXTEN})
//	             same => n,<fallback>   ; only reached when the app is not served

const targetsContext = "targets"

// featuresContext is where the lab hands feature codes back (extensions.conf
// [features]): *98 answers and holds the caller (a park), nothing runs
// Stasis.
const featuresContext = "features"

// answerSettle is how long Answer() waits for media before the next
// priority runs: the recorded 1XX calls show Wait(30) 500 ms after Answer.
const answerSettle = 500 * time.Millisecond

type targetKind byte

func targetOf(exten string) (targetKind, bool) {
	if len(exten) == 0 {
		return 0, false
	}
	switch exten[0] {
	case '1', '2', '3', '4', '5':
		for i := 1; i < len(exten); i++ {
			if exten[i] < '0' || exten[i] > '9' {
				return 0, false
			}
		}
		return targetKind(exten[0]), true
	}
	return 0, false
}

func (k targetKind) label() string {
	switch k {
	case '1':
		return "answer"
	case '2':
		return "busy"
	case '3':
		return "ringing, no answer"
	case '4':
		return "congestion"
	case '5':
		return "answer, stay up"
	}
	return ""
}

// newLocalPair creates Local/<exten>@<context>-N;1 and ;2. The ;2 half is
// the one that runs the dialplan; ;1 is the one that is dialed.
// newLocalPair makes the two halves of a Local channel. An originated ;1
// is created outside any application and becomes the dial's outgoing line
// after (originated), as k-subscribe-every-channel records; one Asterisk
// creates itself (a transfer) is the outgoing line from the start.
func (e *engine) newLocalPair(exten, context, id1, id2 string, originated bool) (*channel, *channel) {
	if id1 == "" {
		id1 = e.newID()
		if id2 == "" {
			id2 = e.newID()
		}
	} else if id2 == "" {
		id2 = id1 + ";2"
	}
	base := fmt.Sprintf("Local/%s@%s-%08x", exten, context, e.localSeq)
	e.localSeq++
	dp1 := cep{Context: context, Exten: exten, Priority: 1}
	if !originated {
		dp1.AppName, dp1.AppData = outgoingLine.AppName, outgoingLine.AppData
	}
	c1 := e.newChannel(id1, base+";1", techLocal, stateDown, dp1)
	c2 := e.newChannel(id2, base+";2", techLocal, stateRing, cep{Context: context, Exten: exten, Priority: 1})
	c1.half, c2.half = 1, 2
	c1.other, c2.other = c2, c1
	c1.resource = exten + "@" + context
	c2.resource = c1.resource
	c1.outgoing = true
	return c1, c2
}

// localExists tells whether the simulated dialplan has exten@context.
func (e *engine) localExists(exten, context string) bool {
	if context == targetsContext {
		_, ok := targetOf(exten)
		return ok
	}
	return e.cfg.isStasisContext(context) && exten != ""
}

// callLocal starts the ;2 half's dialplan once ;1 is being dialed.
func (e *engine) callLocal(c2 *channel) {
	exten, context := c2.snap.Dialplan.Exten, c2.snap.Dialplan.Context
	if context == targetsContext {
		e.runTarget(c2, exten)
		return
	}
	e.runStasisContext(c2, context, exten, 1)
}

// runTarget runs the lab's targets context on c: a Local ;2 half, or any
// channel sent there with /continue.
func (e *engine) runTarget(c *channel, exten string) {
	kind, ok := targetOf(exten)
	if !ok {
		e.invalidExten(c)
		return
	}
	e.runApp(c, 1, "NoOp", fmt.Sprintf("target %s: %s", exten, kind.label()))
	switch kind {
	case '1', '5':
		e.runApp(c, 2, "Answer", "")
		e.answerFromDialplan(c)
		e.afterFunc(c, answerSettle, func() {
			if kind == '1' {
				d := e.cfg.TargetHangupAfter
				e.runApp(c, 3, "Wait", strconv.Itoa(int((d+time.Second-1)/time.Second)))
				e.afterFunc(c, d, func() { e.dialplanEnds(c) })
				return
			}
			e.runApp(c, 3, "Wait", "86400")
		})
	case '2':
		e.runApp(c, 2, "Busy", "5")
		c.cause = causeUserBusy
		e.setState(c, stateBusy)
		e.rejectFromDialplan(c, "BUSY", causeUserBusy)
	case '3':
		e.runApp(c, 2, "Ringing", "")
		var dialer *channel
		if c.half == 2 && c.other != nil && c.other.dial != nil {
			dialer = c.other
			e.setState(dialer, stateRinging)
		} else {
			e.ringFromDialplan(c)
		}
		e.runApp(c, 3, "Wait", "60")
		if dialer != nil {
			e.dialEvent(dialer, "RINGING")
		}
		e.afterFunc(c, 60*time.Second, func() { e.dialplanEnds(c) })
	case '4':
		e.runApp(c, 2, "Congestion", "5")
		c.cause = causeCongestion
		c.teardownState = stateBusy
		e.rejectFromDialplan(c, "CONGESTION", causeCongestion)
	}
}

// answerFromDialplan: Answer() on c. For a Local ;2 half this answers the
// dial of ;1; for a SIP channel it answers the caller.
func (e *engine) answerFromDialplan(c *channel) {
	e.setState(c, stateUp)
	if c.half == 2 && c.other != nil && !c.other.gone {
		e.dialAnswered(c.other)
		return
	}
	e.answerLeg(c)
}

func (e *engine) ringFromDialplan(c *channel) {
	if c.leg != nil && c.inbound {
		leg := c.leg
		e.later(leg.Ring)
	}
}

// rejectFromDialplan: Busy() or Congestion() on c. The caller of a Local
// ;2 half is the dial of ;1, which ends with the status and destroys ;1
// with cause 0, then ;2 with its own cause. A SIP channel is simply hung up
// with the cause.
func (e *engine) rejectFromDialplan(c *channel, status string, cause int) {
	if c.half == 2 && c.other != nil && !c.other.gone {
		if c.other.dial != nil {
			e.dialFailed(c.other, status, causeUnknown)
			return
		}
		e.hangup(c.other, causeUnknown, nil)
		return
	}
	e.hangup(c, cause, nil)
}

// dialplanEnds: the channel ran out of dialplan and hangs up normally.
func (e *engine) dialplanEnds(c *channel) {
	if c.gone {
		return
	}
	if c.half == 2 && c.other != nil && !c.other.gone && c.other.dial != nil {
		// The callee gave up before answering: the Local core queues the
		// hangup on ;1, whose dial reads it.
		e.hangupRequest(c.other, hangupRequest{HasCause: true, Cause: causeNormalClearing})
		e.dialFailed(c.other, dialStatusForCause(causeNormalClearing), causeNormalClearing)
		return
	}
	e.hangup(c, causeNormalClearing, nil)
}

// invalidExten: no such extension; the PBX hangs the channel up.
// runFeature runs the lab's features context on c: *98 answers and holds
// the caller until it hangs up; any other code is invalid.
func (e *engine) runFeature(c *channel, exten string) {
	if exten != "*98" {
		e.invalidExten(c)
		return
	}
	e.runApp(c, 1, "NoOp", "feature "+exten+": park")
	e.runApp(c, 2, "Answer", "")
	e.answerFromDialplan(c)
	e.afterFunc(c, answerSettle, func() { e.runApp(c, 3, "Wait", "86400") })
}

func (e *engine) invalidExten(c *channel) {
	if c.half == 2 && c.other != nil && c.other.dial != nil {
		e.dialFailed(c.other, "CHANUNAVAIL", causeUnknown)
		return
	}
	e.hangup(c, causeNormalClearing, nil)
}

// runStasisContext runs an inbound context from priority prio: NoOp, then
// Stasis(app,context,exten), then the fallback when the app is not served.
func (e *engine) runStasisContext(c *channel, context, exten string, prio int) {
	c.snap.Dialplan.Context = context
	c.snap.Dialplan.Exten = exten
	if prio <= 1 {
		e.runApp(c, 1, "NoOp", fmt.Sprintf("%s: \"%s\" <%s> -> %s", context, c.snap.Caller.Name, c.snap.Caller.Number, exten))
		prio = 2
	}
	if prio == 2 {
		data := e.cfg.App + "," + context + "," + exten
		e.runApp(c, 2, "Stasis", data)
		// Asterisk splits the application's data at commas: an exten with
		// commas becomes several arguments (m-comma-in-dialed).
		if e.enterStasis(c, e.cfg.App, strings.Split(data, ",")[1:], nil) {
			return
		}
		prio = 3
	}
	e.fallback(c, prio)
}

// fallback is what the dialplan does when Stasis() fails: the configured
// application (Congestion by default) and a hangup with its cause.
func (e *engine) fallback(c *channel, prio int) {
	fb := e.cfg.Fallback
	e.runApp(c, prio, fb.App, fb.AppData)
	c.cause = fb.Cause
	if c.half == 2 && c.other != nil && !c.other.gone {
		status := dialStatusForCause(fb.Cause)
		e.rejectFromDialplan(c, status, fb.Cause)
		return
	}
	e.hangup(c, fb.Cause, nil)
}

// continueDialplan implements POST /channels/{id}/continue: the channel
// leaves Stasis and runs the dialplan at context,exten,priority.
func (e *engine) continueDialplan(c *channel, context, exten string, prio int) {
	e.leaveStasis(c)
	switch {
	case context == targetsContext:
		c.snap.Dialplan.Context, c.snap.Dialplan.Exten = context, exten
		e.runTarget(c, exten)
	case context == featuresContext:
		c.snap.Dialplan.Context, c.snap.Dialplan.Exten = context, exten
		e.runFeature(c, exten)
	case e.cfg.isStasisContext(context):
		e.runStasisContext(c, context, exten, prio)
	default:
		c.snap.Dialplan.Context, c.snap.Dialplan.Exten = context, exten
		e.invalidExten(c)
	}
}

func (cfg *Config) isStasisContext(ctx string) bool {
	for _, s := range cfg.StasisContexts {
		if strings.EqualFold(s, ctx) {
			return true
		}
	}
	return false
}
