package controller

import (
	"errors"
	"fmt"

	"github.com/callctl/callctl/controller/accounting"
	"github.com/callctl/callctl/controller/hunt"
	"github.com/callctl/callctl/controller/routing"
)

// forwardState is what a call knows of its forwards (SPEC §4).
type forwardState struct {
	// n is how many times the call was forwarded (a group's fallback
	// included).
	n int
	// cur is the forward whose target is being rung (zero: the call's own
	// target).
	cur routing.Forward
	// refusal is the limit that refused a leg of the last attempt here.
	refusal error
	// spent: the call reached max_forwards and ends busy.
	spent bool
	// arrival is the limit forward of the limit the call's arriving leg
	// was counted past (admitPastLimit): the call goes there first.
	arrival routing.Forward
}

// dialForwarding rings the call's targets and then, while a target that
// did not take the call forwards it (or a group nobody answered has a
// fallback), the forward's targets; true when one answered. The node that
// owns the call forwards it: the caller stays on this channel and each
// forward is a new attempt of the same record.
func (c *run) dialForwarding() bool {
	if c.fwd.arrival.Kind != routing.NoForward && !c.forward(c.fwd.arrival) {
		return false
	}
	for {
		members := c.dec.Members()
		c.dec.ForwardRing(members)
		from := len(c.rec.Attempts)
		answered := c.dialAll(members)
		if c.fwd.cur.Kind != routing.NoForward {
			for i := from; i < len(c.rec.Attempts); i++ {
				c.rec.Attempts[i].Forward = c.fwd.cur.Kind.String()
				c.rec.Attempts[i].ForwardedBy = c.fwd.cur.By
			}
		}
		if answered || c.over() {
			return answered
		}
		f, ok := c.nextForward(members, from)
		if !ok || !c.forward(f) {
			return false
		}
	}
}

// forward moves the call on to f's target; false when it may not
// (max_forwards) or the target does not route.
func (c *run) forward(f routing.Forward) bool {
	if max := c.router.Plan.MaxForwards; c.fwd.n >= max {
		c.fwd.spent = true
		c.rec.Reason = fmt.Sprintf("forwarded %d times (max_forwards %d): not forwarded again to %s", c.fwd.n, max, f.Target)
		c.log.Warn("forward refused: the call was forwarded max_forwards times; it ends busy", "forward", f.Kind,
			"by", f.By, "target", f.Target, "forwards", c.fwd.n)
		return false
	}
	fd := new(routing.Decision)
	c.router.ForwardInto(&c.dec, f, fd)
	if fd.Kind == routing.Rejected || fd.Kind == routing.Feature {
		c.log.Warn("forward does not route", "forward", f.Kind, "by", f.By, "target", f.Target, "cause", fd.Cause, "reason", fd.Reason)
		return false
	}
	c.fwd.n++
	c.fwd.cur = f
	c.e.opt.Metrics.forwarded(f.Kind)
	c.log.Info("forwarding", "forward", f.Kind, "by", f.By, "target", f.Target, "route", fd.Kind, "org", orgID(fd.Org),
		"caller_id", fd.Target.CallerID, "forwards", c.fwd.n)
	c.dec = *fd
	return true
}

// nextForward is the forward the outcome of the attempts since from call
// for: no answer (also not registered or unreachable) and busy forward
// of a single target's user; a refusal at a limit forwards as that limit
// says, here or on the far server that refused the trunk call (for a
// hunt too, which leaves its group there); a group nobody answered goes
// to its fallback.
func (c *run) nextForward(members []routing.Target, from int) (routing.Forward, bool) {
	if n := len(c.rec.Attempts); n > from {
		last := &c.rec.Attempts[n-1]
		kind := routing.NoForward
		switch last.Outcome {
		case hunt.NoAnswer, hunt.NotRegistered, hunt.Unreachable:
			kind = routing.ForwardNoAnswer
		case hunt.Busy:
			kind = routing.ForwardBusy
		case hunt.Congested:
			for i := range members {
				if members[i].Number == last.Target {
					if f, ok := c.limitForward(&members[i]); ok {
						return f, true
					}
					break
				}
			}
		}
		if kind != routing.NoForward && len(members) == 1 {
			if f, ok := c.dec.UserForward(&members[0], kind); ok {
				return f, true
			}
		}
	}
	return c.router.FallbackForward(&c.dec)
}

// limitForward is the forward for target t, whose leg the last attempt
// could not count: the forward of the limit that refused it here, or of
// the far server that refused the trunk call. A limit's own forward
// refused by the same limit is not forwarded again: the caller gets 503.
func (c *run) limitForward(t *routing.Target) (routing.Forward, bool) {
	var f routing.Forward
	var ok bool
	var le *accounting.LimitError
	switch {
	case errors.As(c.fwd.refusal, &le):
		f, ok = c.router.LimitForward(&c.dec, le.Scope, le.Name)
	case c.fwd.refusal == nil:
		f, ok = c.router.FarLimitForward(&c.dec, t)
	}
	if ok && c.fwd.cur.Kind == routing.ForwardLimit && c.fwd.cur.By == f.By {
		c.log.Warn("the limit forward's target is over the same limit: not forwarded again", "by", f.By, "target", f.Target)
		return routing.Forward{}, false
	}
	return f, ok
}

// leavesHunt says whether the hunt ends at member t, whose attempt a: a
// member's leg refused at a limit with a forward sends the call to that
// forward at once, as for any call (the members after it are not rung).
func (c *run) leavesHunt(t *routing.Target, a *hunt.Attempt) bool {
	if a.Outcome != hunt.Congested || c.dec.Kind != routing.Hunt {
		return false
	}
	_, ok := c.limitForward(t)
	return ok
}

// admitPastLimit decides about a call whose arriving leg (PSTN or trunk in)
// a limit refused with err. When that limit has a limit forward, the leg
// is counted past it and the call goes to the forward (SPEC §4): the
// leg's channel is on the server already, so the counts stay true (the
// server or org counts over its limit while the call lasts, and the next
// call is refused or forwarded too), and every leg the forward's target
// adds is held to the limits as usual. It returns the refusal when the
// call is not forwarded.
func (c *run) admitPastLimit(id string, leg accounting.Leg, err error) error {
	limits := c.limitsOf(leg)
	var first routing.Forward
	for {
		var le *accounting.LimitError
		if !errors.As(err, &le) {
			return err
		}
		f, ok := c.router.LimitForward(&c.dec, le.Scope, le.Name)
		if !ok {
			return err
		}
		switch {
		case le.Scope == "server" && limits.Server != 0:
			limits.Server = 0
		case le.Scope == "org" && limits.Org != 0:
			limits.Org = 0
		default:
			return err
		}
		if first.Kind == routing.NoForward {
			first = f
			c.refused = err.Error()
		}
		if err = c.hold(id, c.call.ID(), leg, limits); err == nil {
			break
		}
	}
	// The call's own target is recorded as refused at the limit, like a
	// target whose leg a limit refuses.
	a := hunt.Attempt{Target: c.dec.Target.Number, Outcome: hunt.Congested, Cause: c.refused, Start: c.e.opt.Now()}
	if c.dec.Target.Server != nil {
		a.Server = c.dec.Target.Server.Name
	}
	c.rec.Attempts = append(c.rec.Attempts, a)
	if m := c.e.opt.Metrics; m != nil {
		m.attempts.WithLabelValues(a.Outcome.String()).Inc()
	}
	c.fwd.arrival = first
	c.log.Info("arriving leg over a limit with a limit forward: counted past the limit, forwarded", "leg", leg.Kind,
		"server", leg.Server, "org", leg.Org, "refused", c.refused, "by", first.By, "target", first.Target)
	return nil
}

// unansweredCause is what the caller gets when nobody took the call: busy
// after a hunt or its fallback (SPEC §3) or max_forwards (SPEC §4), else
// the last target's own outcome.
func (c *run) unansweredCause() routing.Cause {
	n := len(c.rec.Attempts)
	if c.fwd.spent || c.dec.Kind == routing.Hunt || c.fwd.cur.Kind == routing.ForwardFallback || n == 0 || c.fwd.n == 0 && n != 1 {
		return routing.CauseBusy
	}
	return causeFor(c.rec.Attempts[n-1].Outcome)
}
