package main

import (
	"context"
	"fmt"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/integration"
)

// The forward and transfer kinds beyond seed 003 §4's blind transfer: each
// with what the far phone shows and what is counted where.

// noAnswerForward: a PSTN caller to 3997, who does not answer within her
// wait; her no-answer forward rings the night desk on srv12, which shows
// the PSTN caller, and the call counts like a transfer: 2 on srv11, 1 on
// srv12.
func noAnswerForward(ctx context.Context, d *demo) error {
	if err := d.setPhones(ringing, "srv11", "3997"); err != nil {
		return err
	}
	if err := d.setPhones(answers, "srv12", "1101"); err != nil {
		return err
	}
	c, m, err := d.placeFromPSTN(ctx, "srv11", "+4915112345678", "+4930100197")
	if err != nil {
		return err
	}
	if err := d.bridged(ctx, c); err != nil {
		return err
	}
	for _, r := range d.env.Lab.RingsSince(m.at) {
		if r.Server == "srv12" && r.Target == "1101" {
			d.say("the night desk 1101 on srv12 shows the caller as %s (forwarded by 3997, unanswered for %.0f s)", shown(r.Caller), forwardAfter.Seconds())
		}
	}
	if err := d.talkAcross(ctx, c, 2, 1, " (srv11: the PSTN leg in + the forward's trunk leg out; srv12: the trunk leg in)"); err != nil {
		return err
	}
	// srv11's record of the forwarded call, srv12's of its arrival.
	return d.report(ctx, m, 2, phone{"srv11", "3997"}, phone{"srv12", "1101"})
}

// limitForward: srv11 limited to 1 counted leg with a limit forward to
// 3998. A PSTN caller to 3997 arrives while the one leg is in use: the
// arriving leg is on srv11 already, so it is counted past the limit, and
// the call goes to 3998 instead of getting 503.
func limitForward(ctx context.Context, d *demo) error {
	if err := d.reloadPlan(func(doc *provision.Document) {
		demoPlan(1)(doc)
		for i := range doc.Servers {
			if doc.Servers[i].Name == "srv11" {
				doc.Servers[i].LimitForward = &provision.LimitForward{Org: "acme", Target: "3998"}
			}
		}
	}); err != nil {
		return err
	}
	d.say(`the plan is reloaded with srv11 channel_limit: 1, limit_forward: {org: acme, target: "3998"}`)
	if err := d.setPhones(answers, "srv11", "3997", "3998"); err != nil {
		return err
	}
	first, m1, err := d.place(ctx, "srv11", "3999", "Aiko Sato", "acme", "030333333")
	if err != nil {
		return err
	}
	if err := d.bridged(ctx, first); err != nil {
		return err
	}
	if err := d.waitCount(ctx, "srv11", 1); err != nil {
		return err
	}
	if err := d.counts(ctx, " (the first call is up: srv11 is at its limit)"); err != nil {
		return err
	}
	c, m, err := d.placeFromPSTN(ctx, "srv11", "+4915112345678", "+4930100197")
	if err != nil {
		return err
	}
	if err := d.bridged(ctx, c); err != nil {
		return err
	}
	for _, r := range d.env.Lab.RingsSince(m.at) {
		if r.Server == "srv11" && r.Target == "3998" {
			d.say("3998 on srv11 shows the caller as %s (srv11's limit forward)", shown(r.Caller))
		}
	}
	if err := d.waitCount(ctx, "srv11", 2); err != nil {
		return err
	}
	if err := d.counts(ctx, " (the first call's leg, and the arriving PSTN leg counted past the limit of 1)"); err != nil {
		return err
	}
	if err := sleep(ctx, talk); err != nil {
		return err
	}
	if err := d.hangUp(ctx, c); err != nil {
		return err
	}
	// The first call is still up: the lab is not idle, so no report.
	d.phonesSaw(m, phone{"srv11", "3997"}, phone{"srv11", "3998"})
	if err := d.records(ctx, m, 1); err != nil {
		return err
	}
	if err := d.counts(ctx, " (the forwarded call is over; the first is untouched)"); err != nil {
		return err
	}
	d.say("the first call hangs up")
	m1.records = len(d.env.Records.All())
	if err := d.hangUp(ctx, first); err != nil {
		return err
	}
	if err := d.records(ctx, m1, 1); err != nil {
		return err
	}
	return d.reloadPlan(demoPlan(0))
}

// ivrTransfer: a PSTN call answered by 3999 is moved on by the media server
// itself (as an IVR does: FreeSWITCH's uuid_transfer, an Asterisk redirect
// back into the application) to 122099: routed in the org that received
// the DID, 2099 on srv12 shows the PSTN caller, 2 + 1 counted.
func ivrTransfer(ctx context.Context, d *demo) error {
	if err := d.setPhones(answers, "srv11", "3999"); err != nil {
		return err
	}
	if err := d.setPhones(answers, "srv12", "2099"); err != nil {
		return err
	}
	in, m, err := d.placeFromPSTN(ctx, "srv11", "+4915112345678", "+4930100100")
	if err != nil {
		return err
	}
	if err := d.bridged(ctx, in); err != nil {
		return err
	}
	if err := d.waitCount(ctx, "srv11", 1); err != nil {
		return err
	}
	// The context of srv11's dialplan that hands calls back to callctl.
	how, context := "uuid_transfer", "public"
	if d.fleet.Kinds["srv11"] == provision.KindAsterisk {
		how, context = "a redirect to from-pstn, back into Stasis", "from-pstn"
	}
	d.say("srv11 itself moves the caller on to 122099 (%s, as an IVR does): no user transferred it", how)
	if err := d.env.Lab.Transfer("srv11", in.UUID(), "122099", context); err != nil {
		return err
	}
	if err := waitFor(ctx, "callctl connected the transferred caller to 2099", d.answeredBy("srv11", "2099")); err != nil {
		return err
	}
	for _, r := range d.env.Lab.RingsSince(m.at) {
		if r.Server == "srv12" && r.Target == "2099" {
			d.say("2099's phone on srv12 shows the caller as %s (routed in acme, the org of the DID)", shown(r.Caller))
		}
	}
	if err := d.talkAcross(ctx, in, 2, 1, " (srv11: the PSTN leg in + the trunk leg out; srv12: the trunk leg in)"); err != nil {
		return err
	}
	// The DID's call, the transferred call (kind ivr) on srv11, its arrival on srv12.
	return d.report(ctx, m, 3, phone{"srv11", "3999"}, phone{"srv12", "2099"})
}

// parkHandOff: 3999 parks a PSTN caller with *98, a feature code handed
// back to the media server's dialplan: the call stays callctl's, its PSTN
// leg stays counted while parked, and the live calls show it handed off.
// FreeSWITCH parks the caller's own channel; Asterisk a Local channel in
// 3999's place, a call of its own, while the PSTN leg stays the first
// call's.
func parkHandOff(ctx context.Context, d *demo) error {
	if err := d.setPhones(answers, "srv11", "3999"); err != nil {
		return err
	}
	in, m, err := d.placeFromPSTN(ctx, "srv11", "+4915112345678", "+4930100100")
	if err != nil {
		return err
	}
	if err := d.bridged(ctx, in); err != nil {
		return err
	}
	if err := d.waitCount(ctx, "srv11", 1); err != nil {
		return err
	}
	d.say("3999 parks the caller: a blind transfer to %s, handed back to srv11's dialplan", integration.ParkFeature)
	if err := d.env.Lab.BlindTransfer("srv11", in.UUID(), integration.ParkFeature); err != nil {
		return err
	}
	var view controller.CallView
	parked := func() bool {
		for _, v := range d.env.Node.Engine().Calls() {
			if v.Server == "srv11" && v.Dialed == integration.ParkFeature && v.HandedOff {
				view = v
				return true
			}
		}
		return false
	}
	if err := waitFor(ctx, "callctl shows the parked call handed off", parked); err != nil {
		return err
	}
	d.say("the node's live calls (callctl calls) list call=%s: caller %s, dialed %s, route %s, handed off %v",
		view.ID, view.Caller, view.Dialed, view.Route, view.HandedOff)
	if d.fleet.Kinds["srv11"] == provision.KindAsterisk {
		d.say("(Asterisk parked a Local channel in 3999's place: the PSTN leg stays counted on the call 3999 took)")
	}
	if err := d.waitCount(ctx, "srv11", 1); err != nil {
		return err
	}
	if err := d.counts(ctx, " (parked: the caller's PSTN leg stays counted until its channel ends)"); err != nil {
		return err
	}
	if err := sleep(ctx, talk); err != nil {
		return err
	}
	d.say("the parked caller hangs up")
	if err := d.hangUp(ctx, in); err != nil {
		return err
	}
	if err := d.waitCount(ctx, "srv11", 0); err != nil {
		return err
	}
	// The call 3999 took, and the parked call's.
	return d.report(ctx, m, 2, phone{"srv11", "3999"})
}

// answeredBy says whether callctl connected one of its calls on server to
// target.
func (d *demo) answeredBy(server, target string) func() bool {
	return func() bool {
		for _, c := range d.env.Node.Engine().Calls() {
			if c.Server == server && c.Answered == target {
				return true
			}
		}
		return false
	}
}

// groupFallback: a PSTN caller to group 1, whose members are all busy,
// reaches the group's fallback, the night desk on srv12 (the plan is
// reloaded with it), which shows the PSTN caller; 2 + 1 counted like a
// transfer. The fallback is a forward of the call: its attempt says so.
func groupFallback(ctx context.Context, d *demo) error {
	if err := d.reloadPlan(func(doc *provision.Document) {
		demoPlan(0)(doc)
		for i := range doc.Orgs {
			if doc.Orgs[i].ID == "grp1" {
				doc.Orgs[i].Users = append(doc.Orgs[i].Users, provision.User{Extension: "1101", Name: "Night Desk", Server: "srv12"})
				doc.Orgs[i].Hunt.Fallback = "1101"
			}
		}
	}); err != nil {
		return err
	}
	d.say(`the plan is reloaded with grp1's hunt: {fallback: "1101"}, a night desk 1101 of grp1 on srv12`)
	if err := d.setPhones(busy, "srv11", members...); err != nil {
		return err
	}
	if err := d.setPhones(answers, "srv12", "1101"); err != nil {
		return err
	}
	c, m, err := d.placeFromPSTN(ctx, "srv11", "+4915112345678", "+4930200100")
	if err != nil {
		return err
	}
	if err := d.bridged(ctx, c); err != nil {
		return err
	}
	for _, r := range d.env.Lab.RingsSince(m.at) {
		if r.Server == "srv12" && r.Target == "1101" {
			d.say("every member was busy: the fallback 1101 on srv12 shows the caller as %s", shown(r.Caller))
		}
	}
	if err := d.talkAcross(ctx, c, 2, 1, " (srv11: the PSTN leg in + the trunk leg out; srv12: the trunk leg in)"); err != nil {
		return err
	}
	if err := d.report(ctx, m, 2, phone{"srv12", "1101"}); err != nil {
		return err
	}
	return d.reloadPlan(demoPlan(0))
}

// attendedTransfer: 3999 consults 2099 on srv12 (who sees 113999), takes a
// PSTN call and transfers it to 2099 replacing the consultation (REFER with
// Replaces): the PSTN caller talks to 2099, whose phone still shows 113999
// (an attended transfer shows the transferring extension); the joined legs
// count 2 on srv11 and 1 on srv12.
func attendedTransfer(ctx context.Context, d *demo) error {
	if err := d.setPhones(answers, "srv11", "3999"); err != nil {
		return err
	}
	if err := d.setPhones(answers, "srv12", "2099"); err != nil {
		return err
	}
	consult, m, err := d.place(ctx, "srv11", "3999", "Aiko Sato", "acme", "122099")
	if err != nil {
		return err
	}
	if err := d.bridged(ctx, consult); err != nil {
		return err
	}
	for _, r := range d.env.Lab.RingsSince(m.at) {
		if r.Server == "srv12" && r.Target == "2099" {
			d.say("2099's phone on srv12 shows the caller as %s (3999 consults 2099)", shown(r.Caller))
		}
	}
	in, _, err := d.placeFromPSTN(ctx, "srv11", "+4915112345678", "+4930100100")
	if err != nil {
		return err
	}
	if err := d.bridged(ctx, in); err != nil {
		return err
	}
	if err := waitFor(ctx, "3999 took the PSTN call", d.answeredBy("srv11", "3999")); err != nil {
		return err
	}
	if err := d.waitCount(ctx, "srv11", 2); err != nil {
		return err
	}
	if err := d.counts(ctx, " (srv11: the consultation's trunk leg out + the PSTN leg in; srv12: the trunk leg in)"); err != nil {
		return err
	}
	d.say("3999 transfers the PSTN caller to 2099, replacing the consultation (attended: a REFER with Replaces)")
	trunk := consult.Bridged()[0].UUID
	if err := d.env.Lab.AttendedTransfer("srv11", in.UUID(), consult.UUID()); err != nil {
		return err
	}
	wctx, cancel := within(ctx)
	_, err = consult.WaitEnded(wctx)
	cancel()
	if err != nil {
		return fmt.Errorf("3999's consultation did not end with the transfer: %w", err)
	}
	joined := func() bool {
		b := in.Bridged()
		return len(b) > 0 && b[len(b)-1].UUID == trunk
	}
	if err := waitFor(ctx, "the PSTN caller is joined to the consultation's trunk leg", joined); err != nil {
		return err
	}
	if d.fleet.Kinds["srv11"] == provision.KindAsterisk {
		d.say("(srv11, an Asterisk, links the two calls with a Local pair and hangs up the consultation's line; 3999 hangs up the other)")
	}
	d.say("3999's lines are gone: the PSTN caller talks to 2099, whose phone still shows 113999")
	if err := d.talkAcross(ctx, in, 2, 1, " (joined: srv11 the PSTN leg in + the trunk leg out; srv12 the trunk leg in)"); err != nil {
		return err
	}
	// The consultation's record (attended, by 3999), srv12's of its
	// arrival, and the PSTN call's.
	return d.report(ctx, m, 3, phone{"srv11", "3999"}, phone{"srv12", "2099"})
}
