package controller

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/callctl/callctl/controller/hunt"
	"github.com/callctl/callctl/controller/routing"
)

// A hunt rung in one go: the media server rings the members one after the
// other by itself (HuntDialer), as its own dialplan would, instead of
// callctl dialing each member once the one before has ended. That saves
// the round trips between two members (on FreeSWITCH two 20 ms ticks each:
// the caller's channel picks up a queued command at its next frame, the
// event socket delivers events at its next poll).
//
// It is chosen per call, only when it gives the same calls, counts and
// records as dialing member by member:
//   - more than one member, on a media server that can do it;
//   - no member has a leg counted here: a counted leg is acquired before its
//     member rings, which needs callctl between two members (members over a
//     trunk or to the PSTN are always dialed one by one);
//   - registrations are checked for every member before the first rings:
//     members not registered then are skipped, recorded in their place.
//
// Each member rung still gets its own attempt, from its own leg's end (or
// answer), in order; ring timeouts are still callctl's; a caller who hangs
// up stops the hunt where it is, and nothing rings after.

// oneGo says whether members can be rung in one go, and by what.
func (c *run) oneGo(members []routing.Target) (HuntDialer, bool) {
	if len(members) < 2 {
		return nil, false
	}
	hd, ok := c.call.(HuntDialer)
	if !ok {
		return nil, false
	}
	for i := range members {
		t := &members[i]
		if t.Trunk != nil {
			return nil, false
		}
		for j := 0; j < t.Legs.Len(); j++ {
			if !t.Legs.At(j).Remote {
				return nil, false
			}
		}
	}
	return hd, true
}

// dialAtOnce rings members in one go. took is true when one answered;
// ok is false when the media server could not ring them in one go and
// nothing rang (then they are dialed one by one).
func (c *run) dialAtOnce(hd HuntDialer, members []routing.Target) (took, ok bool) {
	skips := make([]hunt.Attempt, len(members))
	skipped := make([]bool, len(members))
	specs := make([]DialSpec, 0, len(members))
	idx := make([]int, 0, len(members))
	for i := range members {
		t := &members[i]
		a := hunt.Attempt{Target: t.Number, Start: c.e.opt.Now()}
		if t.Server != nil {
			a.Server = t.Server.Name
		}
		if c.unregistered(t, &a, c.log.With("target", t.Number)) {
			skips[i], skipped[i] = a, true
			continue
		}
		specs = append(specs, c.dialSpec(t, NewID()))
		idx = append(idx, i)
	}
	// Nothing of these members is counted here: no refusal of an earlier
	// target may be taken for theirs.
	c.fwd.refusal = nil
	h := hunt.New(len(members))
	next := 0
	record := func(a hunt.Attempt) {
		h.Report(a)
		c.rec.Attempts = append(c.rec.Attempts, a)
		if m := c.e.opt.Metrics; m != nil {
			m.attempts.WithLabelValues(a.Outcome.String()).Inc()
		}
	}
	// skipTo records the members skipped before member end, in their place.
	skipTo := func(end int) {
		for ; next < end; next++ {
			if skipped[next] {
				record(skips[next])
			}
		}
	}
	if len(specs) == 0 {
		skipTo(len(members))
		return false, true
	}
	targets := make([]string, len(specs))
	for k, s := range specs {
		targets[k] = members[idx[k]].Number + "=" + s.Target
	}
	c.log.Info("dialing in one go", "targets", strings.Join(targets, " "), "caller_id", specs[0].CallerIDNumber)
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	defer context.AfterFunc(c.e.stopCtx, cancel)()
	rang := false
	done := func(k int, res DialResult) {
		rang = true
		i := idx[k]
		skipTo(i)
		next = i + 1
		t := &members[i]
		a := hunt.Attempt{Target: t.Number, Outcome: res.Outcome, Cause: res.Cause, Start: c.e.opt.Now()}
		if t.Server != nil {
			a.Server = t.Server.Name
		}
		if !res.Sent.IsZero() {
			a.Start = a.Start.Add(-time.Since(res.Sent))
			if !res.At.IsZero() {
				a.Ring = res.At.Sub(res.Sent)
			}
		}
		c.dialStepDone(&res)
		c.log.Info("dial result", "target", t.Number, "leg", specs[k].LegID, "outcome", a.Outcome, "cause", a.Cause,
			"ring", a.Ring.Round(time.Millisecond))
		record(a)
	}
	leg, k, err := hd.DialHunt(ctx, specs, done)
	if err != nil && !rang && errors.Is(err, ErrDialOneByOne) {
		// Nothing was recorded yet: the members are dialed as usual.
		c.log.Info("members are dialed one by one", "reason", err)
		return false, false
	}
	if err != nil {
		c.log.Warn("dial failed", "err", err)
	}
	if k >= 0 && leg != nil {
		c.answered = answered{leg: leg}
		c.note(&members[idx[k]])
		return true, true
	}
	if c.over() {
		h.Abort()
		return false, true
	}
	skipTo(len(members))
	return false, true
}
