package freeswitch

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/callctl/callctl/adapters/freeswitch/esl"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/hunt"
)

var _ controller.HuntDialer = (*call)(nil)

// DialHunt rings specs with one bridge, '|' failover between their legs:
// FreeSWITCH moves on to the next leg as soon as one fails, as its own
// dialplan's bridge a|b|c does, where dialing each member once the one
// before has ended costs two 20 ms ticks per member (the parked caller
// picks a queued command up at its next frame; the event socket sends
// events at its next poll).
//
// Each leg is followed by its own events: its CHANNEL_HANGUP_COMPLETE on
// the inbound connection says it is over and why, the caller's
// CHANNEL_BRIDGE which one answered; the bridge's originate_causes (on the
// CHANNEL_BRIDGE, or the bridge's CHANNEL_EXECUTE_COMPLETE) list every leg
// FreeSWITCH created, so a leg it never created (a user no longer
// registered) is told from one that rang. Ring timeouts stay callctl's: the
// ringing leg is ended with NO_ANSWER when its time is up, and FreeSWITCH
// moves on (leg_timeout is only a backstop). Cancelling ctx cancels the
// ringing leg; when the caller is still up (the engine stops) the caller is
// ended too, the one way to keep FreeSWITCH from ringing the next leg.
func (c *call) DialHunt(ctx context.Context, specs []controller.DialSpec, done func(int, controller.DialResult)) (controller.Leg, int, error) {
	arg, dropped, err := HuntArg(specs)
	if err != nil {
		return nil, -1, fmt.Errorf("dial hunt: %w: %w", controller.ErrDialOneByOne, err)
	}
	if len(dropped) > 0 {
		c.log.Warn("caller id number is not digits: left out of the dial string", "caller_id", dropped[0])
	}
	ws := make([]*legWatch, len(specs))
	ids := make([]string, len(specs))
	for i := range specs {
		ids[i] = specs[i].LegID
		ws[i] = c.ms.watch(ids[i])
	}
	d := &dialState{several: &severalLegs{ids: ids}, appUUID: controller.NewID(), arg: arg,
		answered: make(chan struct{}), complete: make(chan struct{})}
	c.mu.Lock()
	if c.hungup || c.sockClosed || c.transferred || c.handedOff {
		c.mu.Unlock()
		for _, w := range ws {
			c.ms.unwatch(w)
		}
		return nil, -1, controller.ErrCallGone
	}
	c.dial = d
	c.legs = append(c.legs, ws...)
	first := !c.varsSet
	c.varsSet = true
	c.mu.Unlock()
	h := &huntRun{c: c, d: d, specs: specs, ws: ws, done: done, from: time.Now()}
	if err := c.sendBridge(d, first); err != nil {
		h.from = d.sentAt
		// The bridge may or may not be queued: end what it may ring.
		c.log.Warn("bridge of several legs failed", "err", err)
		h.cancelAll()
		h.endAt(hunt.Failed, "COMMAND_FAILED")
		return nil, -1, fmt.Errorf("dial hunt: %w", err)
	}
	h.from = d.sentAt
	return h.run(ctx)
}

// huntRun is one DialHunt in progress, on the handler's goroutine.
type huntRun struct {
	c     *call
	d     *dialState
	specs []controller.DialSpec
	ws    []*legWatch
	done  func(int, controller.DialResult)
	// cur is the leg ringing (or about to), from when: the bridge's sending,
	// then the end of the leg before it.
	cur  int
	from time.Time
	// cancelling: the hunt is being ended (the caller left, the engine
	// stops); nothing after the ringing leg may ring.
	cancelling bool
	// bridged is a leg whose end came before the news of its answer.
	bridged *legWatch
}

func (h *huntRun) run(ctx context.Context) (controller.Leg, int, error) {
	c, d := h.c, h.d
	var limit time.Duration
	for _, s := range h.specs {
		l := time.Duration(s.BackstopSeconds()) * time.Second
		if l <= 0 {
			l = 60 * time.Second
		}
		limit += l
	}
	backstop := time.NewTimer(limit + c.srv.opt.DialGrace)
	defer backstop.Stop()
	ring := time.NewTimer(time.Hour)
	defer ring.Stop()
	h.ringFor(ring)
	ctxDone := ctx.Done()
	var retry <-chan time.Time
	var retryTicker *time.Ticker
	defer func() {
		if retryTicker != nil {
			retryTicker.Stop()
		}
	}()
	for h.cur < len(h.ws) {
		if isClosed(d.answered) {
			// Read before whatever else is ready: a leg's end or the
			// caller's on one connection may be handled after the answer
			// that came before them on the other.
			return h.answered()
		}
		gone := h.ws[h.cur].gone
		if h.ws[h.cur] == h.bridged {
			// It answered before it ended: the caller's CHANNEL_BRIDGE (or
			// the bridge's end) says so, on the other connection.
			gone = nil
		}
		select {
		case <-d.answered:
			return h.answered()
		case <-gone:
			w := h.ws[h.cur]
			if isClosed(d.answered) {
				return h.answered()
			}
			if w.answered {
				h.bridged = w
				continue
			}
			o, cause := legOutcome(w.cause)
			h.report(o, cause, w.at)
			if !h.cancelling {
				h.ringFor(ring)
			}
		case <-d.complete:
			return h.completed()
		case <-ring.C:
			// Its ring time is up: FreeSWITCH moves on to the next leg.
			c.killLeg(h.ws[h.cur].id, "NO_ANSWER")
		case <-ctxDone:
			if isClosed(d.answered) {
				// The answer came first (the caller's CHANNEL_BRIDGE is read
				// before its hangup): the call was connected.
				return h.answered()
			}
			ctxDone = nil
			h.cancelling = true
			ring.Stop()
			if c.ctx.Err() == nil {
				c.log.Info("hunt stopped: ending the caller, so that no further leg rings")
				c.killLeg(c.id, "NORMAL_CLEARING")
			}
			c.cancelLeg(h.ws[h.cur].id)
			retryTicker = time.NewTicker(250 * time.Millisecond)
			retry = retryTicker.C
			backstop.Reset(c.srv.opt.LegGoneWait)
		case <-retry:
			c.cancelLeg(h.ws[h.cur].id)
		case <-c.conn.Done():
			// The socket is gone: the bridge's end cannot be seen here.
			h.cancelAll()
			h.endAt(hunt.Cancelled, "CONNECTION_LOST")
			return nil, -1, fmt.Errorf("dial hunt: %w", controller.ErrCallGone)
		case <-backstop.C:
			if !h.cancelling {
				c.log.Warn("bridge of several legs did not report its end in time: ending the caller", "leg", h.ws[h.cur].id)
				c.killLeg(c.id, "NORMAL_TEMPORARY_FAILURE")
			}
			h.cancelAll()
			h.endAt(hunt.Failed, "BRIDGE_TIMEOUT")
			return nil, -1, nil
		}
	}
	// Every leg has ended: so has the bridge, which says so shortly.
	t := time.NewTimer(c.srv.opt.LegGoneWait)
	defer t.Stop()
	select {
	case <-d.complete:
	case <-d.answered:
	case <-c.conn.Done():
	case <-t.C:
	}
	c.clearDial(d)
	return nil, -1, nil
}

// ringFor sets the ring timer for the current leg.
func (h *huntRun) ringFor(t *time.Timer) {
	t.Stop()
	if h.cur >= len(h.specs) || h.specs[h.cur].Timeout <= 0 {
		return
	}
	t.Reset(max(h.specs[h.cur].Timeout-time.Since(h.from), 0))
}

// report ends the current leg's attempt with o and moves on to the next.
func (h *huntRun) report(o hunt.Outcome, cause string, at time.Time) {
	if at.IsZero() {
		at = time.Now()
	}
	w := h.ws[h.cur]
	h.c.dropWatch(w)
	h.done(h.cur, controller.DialResult{Outcome: o, Cause: cause, Sent: h.from, At: at})
	h.cur++
	h.from = at
}

// settleUpTo reports the legs before leg end, which FreeSWITCH has ended
// (it moved past them), from their own end or the bridge's causes.
func (h *huntRun) settleUpTo(end int, causes map[string]string) {
	for h.cur < end {
		w := h.ws[h.cur]
		cause, listed := causes[w.id]
		if !listed && !isClosed(w.gone) {
			// Never created (a user no longer registered): it never rang.
			h.report(notCreated(h.specs[h.cur].Target))
			continue
		}
		h.c.awaitGone(w)
		if w.cause != "" {
			cause = w.cause
		}
		o, cause := legOutcome(cause)
		h.report(o, cause, w.at)
	}
}

// answered: a leg took the call.
func (h *huntRun) answered() (controller.Leg, int, error) {
	c, d := h.c, h.d
	k := -1
	for i, id := range d.several.ids {
		if id == d.several.answered {
			k = i
		}
	}
	if k < h.cur {
		// Not one still to come: a bridge event out of step. Never expected.
		c.log.Error("bridge answered by a leg already over", "leg", d.several.answered)
		k = h.cur
	}
	h.settleUpTo(k, parseCauses(d.several.causes))
	if h.cancelling {
		// Answered just as the hunt was being ended: the caller is gone or
		// going, so the leg is cancelled.
		c.cancelLeg(h.ws[k].id)
		h.endAt(hunt.Cancelled, "ORIGINATOR_CANCEL")
		return nil, -1, nil
	}
	return h.take(k, d.answeredAt)
}

// take connects leg k, the one that answered.
func (h *huntRun) take(k int, at time.Time) (controller.Leg, int, error) {
	c, d := h.c, h.d
	w := h.ws[k]
	for _, o := range h.ws[k+1:] {
		c.dropWatch(o)
	}
	c.mu.Lock()
	d.legID = w.id
	d.leg = w
	c.mu.Unlock()
	c.ms.arm(w)
	h.done(k, controller.DialResult{Outcome: hunt.Answered, Cause: controller.AnswerCause, Sent: h.from, At: at})
	return &leg{w: w}, k, nil
}

// completed: the bridge ended without a CHANNEL_BRIDGE of ours.
func (h *huntRun) completed() (controller.Leg, int, error) {
	c, d := h.c, h.d
	causes := parseCauses(d.several.endCauses)
	if o, _ := d.vars.Outcome(); o == hunt.Answered {
		// Answered and already unbridged (the leg hung up at once): the leg
		// FreeSWITCH lists without a failure.
		for k := h.cur; k < len(h.ws); k++ {
			if cause, ok := causes[h.ws[k].id]; ok && (cause == "" || cause == "NONE") {
				h.settleUpTo(k, causes)
				return h.take(k, d.doneAt)
			}
		}
	}
	gone := c.ctx.Err() != nil || h.cancelling
	for h.cur < len(h.ws) {
		w := h.ws[h.cur]
		if _, listed := causes[w.id]; !listed && !isClosed(w.gone) {
			if gone {
				// The caller left: the hunt ended before this leg.
				break
			}
			h.report(notCreated(h.specs[h.cur].Target))
			continue
		}
		h.settleUpTo(h.cur+1, causes)
	}
	for _, w := range h.ws[h.cur:] {
		c.dropWatch(w)
	}
	c.clearDial(d)
	return nil, -1, nil
}

// cancelAll ends every leg that may ring.
func (h *huntRun) cancelAll() {
	for _, w := range h.ws[h.cur:] {
		h.c.cancelLeg(w.id)
	}
}

// endAt ends the hunt where it is: the current leg's attempt gets o (once
// its channel is gone), the legs after it never rang.
func (h *huntRun) endAt(o hunt.Outcome, cause string) {
	c := h.c
	if h.cur < len(h.ws) {
		w := h.ws[h.cur]
		c.awaitGone(w)
		if w.cause != "" {
			if lo, ok := controller.CauseOutcome(w.cause); ok && lo != hunt.Cancelled {
				o, cause = lo, w.cause
			}
		}
		h.report(o, cause, w.at)
	}
	for _, w := range h.ws[h.cur:] {
		c.dropWatch(w)
	}
	c.clearDial(h.d)
}

// killLeg ends a channel with cause, on the call's own connection when it
// is up, else on the inbound one.
func (c *call) killLeg(id, cause string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.opt.CommandTimeout)
	defer cancel()
	if !c.conn.Closed() {
		buf := esl.GetBuf()
		*buf, _ = esl.AppendCommand(*buf, "api", "uuid_kill", id, cause)
		_, err := c.conn.Send(ctx, 1, *buf)
		esl.PutBuf(buf)
		if err == nil {
			return
		}
	}
	if err := c.ms.Kill(ctx, id, cause); err != nil {
		c.log.Warn("ending a channel failed", "channel", id, "cause", cause, "err", err)
	}
}

// legOutcome reads the cause a leg of a bridge ended with.
func legOutcome(cause string) (hunt.Outcome, string) {
	if o, ok := controller.CauseOutcome(cause); ok {
		return o, cause
	}
	if cause == "" {
		cause = "UNKNOWN"
	}
	return hunt.Failed, cause
}

// notCreated is the outcome of a leg FreeSWITCH could not create: for a
// user/ endpoint, that it is not registered (the check before the hunt
// found it registered, it no longer is).
func notCreated(target string) (hunt.Outcome, string, time.Time) {
	if strings.HasPrefix(target, "user/") {
		return hunt.NotRegistered, "USER_NOT_REGISTERED", time.Now()
	}
	return hunt.Failed, "CHANNEL_NOT_CREATED", time.Now()
}

// parseCauses reads originate_causes ("ARRAY::<uuid>;<cause>|:<uuid>;<cause>",
// or one "<uuid>;<cause>"): each leg FreeSWITCH created, and the cause it
// ended with (empty, or NONE: it answered).
func parseCauses(v string) map[string]string {
	v = strings.TrimPrefix(v, "ARRAY::")
	if v == "" {
		return nil
	}
	out := make(map[string]string)
	for _, item := range strings.Split(v, "|:") {
		id, cause, _ := strings.Cut(item, ";")
		if id != "" {
			out[id] = cause
		}
	}
	return out
}
