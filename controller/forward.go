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
	// n is how many times the call was forwarded.
	n int
	// cur is the forward whose target is being rung (zero: the call's own
	// target).
	cur routing.Forward
	// refusal is the limit that refused a leg of the last attempt here.
	refusal error
	// spent: the call reached max_forwards and ends busy.
	spent bool
}

// dialForwarding rings the call's targets and then, while a target that
// did not take the call forwards it, the forward's targets; true when one
// answered. The node that owns the call forwards it: the caller stays on
// this channel and each forward is a new attempt of the same record.
func (c *run) dialForwarding() bool {
	for {
		members := c.dec.Members()
		c.dec.ForwardRing(members)
		from := len(c.rec.Attempts)
		c.fwd.refusal = nil
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
		f, ok := c.nextForward(members)
		if !ok {
			return false
		}
		if max := c.router.Plan.MaxForwards; c.fwd.n >= max {
			c.fwd.spent = true
			c.rec.Reason = fmt.Sprintf("forwarded %d times (max_forwards %d): not forwarded again to %s", c.fwd.n, max, f.Target)
			c.log.Warn("forward refused: the call was forwarded max_forwards times; it ends busy", "forward", f.Kind,
				"by", f.By, "target", f.Target, "forwards", c.fwd.n)
			return false
		}
		fd := new(routing.Decision)
		c.router.ForwardInto(&c.dec, f, fd)
		if fd.Kind == routing.Rejected {
			c.log.Warn("forward does not route", "forward", f.Kind, "by", f.By, "target", f.Target, "cause", fd.Cause, "reason", fd.Reason)
			return false
		}
		c.fwd.n++
		c.fwd.cur = f
		c.log.Info("forwarding", "forward", f.Kind, "by", f.By, "target", f.Target, "route", fd.Kind, "org", orgID(fd.Org),
			"caller_id", fd.Target.CallerID, "forwards", c.fwd.n)
		c.dec = *fd
	}
}

// nextForward is the forward the outcome of the last attempt calls for,
// if the target has one: no answer (also not registered or unreachable)
// and busy forward as the target's user says; a refusal at a limit
// forwards as that limit says, here or on the far server that refused
// the trunk call.
func (c *run) nextForward(members []routing.Target) (routing.Forward, bool) {
	if len(members) != 1 || len(c.rec.Attempts) == 0 {
		return routing.Forward{}, false
	}
	t := &members[0]
	switch c.rec.Attempts[len(c.rec.Attempts)-1].Outcome {
	case hunt.NoAnswer, hunt.NotRegistered, hunt.Unreachable:
		return c.dec.UserForward(t, routing.ForwardNoAnswer)
	case hunt.Busy:
		return c.dec.UserForward(t, routing.ForwardBusy)
	case hunt.Congested:
		var le *accounting.LimitError
		if errors.As(c.fwd.refusal, &le) {
			return c.router.LimitForward(&c.dec, le.Scope, le.Name)
		}
		if c.fwd.refusal == nil {
			return c.router.FarLimitForward(&c.dec, t)
		}
	}
	return routing.Forward{}, false
}

// unansweredCause is what the caller gets when nobody took the call: busy
// after a hunt (SPEC §3) or max_forwards (SPEC §4), else the last target's
// own outcome.
func (c *run) unansweredCause() routing.Cause {
	n := len(c.rec.Attempts)
	if c.fwd.spent || c.dec.Kind == routing.Hunt || n == 0 || c.fwd.n == 0 && n != 1 {
		return routing.CauseBusy
	}
	return causeFor(c.rec.Attempts[n-1].Outcome)
}
