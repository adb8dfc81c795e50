package main

import (
	"context"
	"time"

	"github.com/callctl/callctl/integration/sim"
)

// What the simulated phones do when they ring.
var (
	answers    = sim.Behaviour{Mode: "answer", RingFor: 100 * time.Millisecond}
	busy       = sim.Behaviour{Mode: "busy", RingFor: 20 * time.Millisecond}
	ringing    = sim.Behaviour{Mode: "ring"}
	unregister = sim.Behaviour{Mode: "unregistered"}
)

// The six members of each seed-002 group; the four groups share these SIP
// numbers on srv11 (each org has its own, the simulated phones are one set).
var members = []string{"77721401", "77721402", "77721403", "77721404", "77721405", "77721406"}

func onSrv11(exts ...string) []phone {
	out := make([]phone, 0, len(exts))
	for _, x := range exts {
		out = append(out, phone{server: "srv11", ext: x})
	}
	return out
}

// example is one worked example of the lab plan, placed as real calls.
type example struct {
	title string
	run   func(ctx context.Context, d *demo) error
}

var examples = []example{
	{"seed 002, example 1: 8008003 rings 03 busy, 04 no answer, 05 not registered, 06 answers", seed002Example1},
	{"seed 002, example 2: 8008002 starts at 77721401; 01 busy, 02 answers", seed002Example2},
	{"seed 002, example 3: 77721402 dialed directly still hunts on; 77721402T rings 02 only", seed002Example3},
	{"seed 002, example 4: 8008001 rings its one member, nobody answers: the caller hears busy", seed002Example4},
	{"seed 003: 3999 on srv11 dials 122099; 2099 on srv12 sees 113999, so a call-back works", seed003InterServer},
	{"seed 000: agent 124 of org A dials 1201; 201 of org B sees 2124", seed000OrgConnect},
	{"seed 004: the 0044 caller-ID rule presents +442071234567; other calls the org default", seed004CallerID},
	{"seed 001: kundeA's number +4930555001, used in kundeB's PBX, is billed to kundeA", seed001SharedNumber},
	{"seed 003 §4: an external call into srv11 transferred to srv12 counts 2 on srv11 + 1 on srv12", transferCounts},
	{"attended transfer: 3999 consults 2099 on srv12, then transfers a PSTN caller to 2099; 2099 still sees 113999, 2 + 1 counted", attendedTransfer},
	{"IVR transfer: srv11 itself moves an external call on to 122099; 2099 on srv12 sees the PSTN caller, 2 + 1 counted", ivrTransfer},
	{"hand-off: 3999 parks an external caller with *98; parked, the call stays counted until it ends", parkHandOff},
	{"forwarding: 3999 calls 3997, who is busy; her busy forward rings the night desk 1101 on srv12, which sees 113999", busyForward},
	{"no-answer forward: a PSTN caller to 3997, who does not answer; the night desk on srv12 sees the PSTN caller, 2 + 1 counted", noAnswerForward},
	{"group fallback: a PSTN caller to group 1, every member busy, reaches the fallback on srv12, 2 + 1 counted", groupFallback},
	{"channel limit: srv11 limited to 1 counted leg; the next external call is refused with 503", channelLimit},
	{"limit forward: srv11 at its limit of 1 forwards an arriving PSTN call to 3998 instead of refusing it", limitForward},
}

func busyForward(ctx context.Context, d *demo) error {
	if err := d.setPhones(busy, "srv11", "3997"); err != nil {
		return err
	}
	if err := d.setPhones(answers, "srv12", "1101"); err != nil {
		return err
	}
	c, m, err := d.place(ctx, "srv11", "3999", "Aiko Sato", "acme", "3997")
	if err != nil {
		return err
	}
	if err := d.bridged(ctx, c); err != nil {
		return err
	}
	for _, r := range d.env.Lab.RingsSince(m.at) {
		if r.Server == "srv12" && r.Target == "1101" {
			d.say("the night desk 1101 on srv12 shows the caller as %s (forwarded by 3997)", shown(r.Caller))
		}
	}
	if err := d.talkAcross(ctx, c, 1, 1, " (the forward's trunk leg out of srv11, and into srv12)"); err != nil {
		return err
	}
	return d.report(ctx, m, 2, phone{"srv11", "3997"}, phone{"srv12", "1101"})
}

func seed002Example1(ctx context.Context, d *demo) error {
	for _, s := range []struct {
		b   sim.Behaviour
		ext string
	}{{busy, "77721403"}, {ringing, "77721404"}, {unregister, "77721405"}, {answers, "77721406"}} {
		if err := d.setPhones(s.b, "srv11", s.ext); err != nil {
			return err
		}
	}
	c, m, err := d.place(ctx, "srv11", "1100", "Caller One", "grp1", "8008003")
	if err != nil {
		return err
	}
	if err := d.converse(ctx, c); err != nil {
		return err
	}
	return d.report(ctx, m, 1, onSrv11(members...)...)
}

func seed002Example2(ctx context.Context, d *demo) error {
	if err := d.setPhones(busy, "srv11", "77721401"); err != nil {
		return err
	}
	if err := d.setPhones(answers, "srv11", "77721402"); err != nil {
		return err
	}
	c, m, err := d.place(ctx, "srv11", "1200", "Caller Two", "grp2", "8008002")
	if err != nil {
		return err
	}
	if err := d.converse(ctx, c); err != nil {
		return err
	}
	return d.report(ctx, m, 1, onSrv11(members[:3]...)...)
}

func seed002Example3(ctx context.Context, d *demo) error {
	if err := d.setPhones(busy, "srv11", "77721402"); err != nil {
		return err
	}
	if err := d.setPhones(answers, "srv11", "77721403"); err != nil {
		return err
	}
	c, m, err := d.place(ctx, "srv11", "1300", "Caller Three", "grp3", "77721402")
	if err != nil {
		return err
	}
	if err := d.converse(ctx, c); err != nil {
		return err
	}
	if err := d.report(ctx, m, 1, onSrv11(members[:4]...)...); err != nil {
		return err
	}
	c, m, err = d.place(ctx, "srv11", "1300", "Caller Three", "grp3", "77721402T")
	if err != nil {
		return err
	}
	if _, err := d.ended(ctx, c); err != nil {
		return err
	}
	return d.report(ctx, m, 1, onSrv11(members[1:3]...)...)
}

func seed002Example4(ctx context.Context, d *demo) error {
	if err := d.setPhones(ringing, "srv11", "77721401"); err != nil {
		return err
	}
	c, m, err := d.place(ctx, "srv11", "1400", "Caller Four", "grp4", "8008001")
	if err != nil {
		return err
	}
	if _, err := d.ended(ctx, c); err != nil {
		return err
	}
	return d.report(ctx, m, 1, onSrv11("77721401")...)
}

func seed003InterServer(ctx context.Context, d *demo) error {
	if err := d.setPhones(answers, "srv12", "2099"); err != nil {
		return err
	}
	c, m, err := d.place(ctx, "srv11", "3999", "Aiko Sato", "acme", "122099")
	if err != nil {
		return err
	}
	if err := d.bridged(ctx, c); err != nil {
		return err
	}
	for _, r := range d.env.Lab.RingsSince(m.at) {
		if r.Server == "srv12" && r.Target == "2099" {
			d.say("2099's phone on srv12 shows the caller as %s", shown(r.Caller))
		}
	}
	if err := d.talkAcross(ctx, c, 1, 1, " (the trunk leg out of srv11, the trunk leg into srv12)"); err != nil {
		return err
	}
	// One record per server: srv11's call out, srv12's call in over the trunk.
	return d.report(ctx, m, 2, phone{"srv12", "2099"})
}

func seed000OrgConnect(ctx context.Context, d *demo) error {
	if err := d.setPhones(answers, "srv11", "201"); err != nil {
		return err
	}
	c, m, err := d.place(ctx, "srv11", "124", "Agent 124", "orgA", "1201")
	if err != nil {
		return err
	}
	if err := d.converse(ctx, c); err != nil {
		return err
	}
	return d.report(ctx, m, 1, phone{"srv11", "201"})
}

func seed004CallerID(ctx context.Context, d *demo) error {
	for _, dialed := range []string{"00442079460000", "030123456"} {
		c, m, err := d.place(ctx, "srv11", "3999", "Aiko Sato", "acme", dialed)
		if err != nil {
			return err
		}
		if err := d.converse(ctx, c); err != nil {
			return err
		}
		if err := d.report(ctx, m, 1); err != nil {
			return err
		}
	}
	return nil
}

func seed001SharedNumber(ctx context.Context, d *demo) error {
	if err := d.setPhones(answers, "srv11", "300"); err != nil {
		return err
	}
	c, m, err := d.place(ctx, "srv11", "300", "Berlin desk", "kundeB", "030999888")
	if err != nil {
		return err
	}
	if err := d.converse(ctx, c); err != nil {
		return err
	}
	if err := d.report(ctx, m, 1); err != nil {
		return err
	}
	c, m, err = d.placeFromPSTN(ctx, "srv11", "+4915112345678", "+4930555001")
	if err != nil {
		return err
	}
	if err := d.converse(ctx, c); err != nil {
		return err
	}
	return d.report(ctx, m, 1, phone{"srv11", "300"})
}

func transferCounts(ctx context.Context, d *demo) error {
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
	if err := d.counts(ctx, " (3999 answered the PSTN call)"); err != nil {
		return err
	}
	if err := sleep(ctx, talk); err != nil {
		return err
	}
	d.say("3999 transfers the caller (blind) to 122099")
	if err := d.env.Lab.BlindTransfer("srv11", in.UUID(), "122099"); err != nil {
		return err
	}
	answered := func() bool {
		for _, c := range d.env.Node.Engine().Calls() {
			if c.Answered == "2099" {
				return true
			}
		}
		return false
	}
	if err := waitFor(ctx, "callctl connected the transferred caller to 2099", answered); err != nil {
		return err
	}
	if err := d.talkAcross(ctx, in, 2, 1, " (srv11: the PSTN leg in + the trunk leg out; srv12: the trunk leg in)"); err != nil {
		return err
	}
	// The call 3999 took, the transferred call on srv11, and its arrival on srv12.
	return d.report(ctx, m, 3, phone{"srv11", "3999"}, phone{"srv12", "2099"})
}

func channelLimit(ctx context.Context, d *demo) error {
	if err := d.reloadPlan(demoPlan(1)); err != nil {
		return err
	}
	d.say("the plan is reloaded with srv11 channel_limit: 1")
	first, m1, err := d.place(ctx, "srv11", "3999", "Aiko Sato", "acme", "030111111")
	if err != nil {
		return err
	}
	if err := d.bridged(ctx, first); err != nil {
		return err
	}
	if err := d.waitCount(ctx, "srv11", 1); err != nil {
		return err
	}
	if err := d.counts(ctx, " (the first call is up)"); err != nil {
		return err
	}
	second, m2, err := d.place(ctx, "srv11", "3998", "Ben Ode", "acme", "030222222")
	if err != nil {
		return err
	}
	if _, err := d.ended(ctx, second); err != nil {
		return err
	}
	d.phonesSaw(m2, phone{"", "+4930222222"})
	if err := d.records(ctx, m2, 1); err != nil {
		return err
	}
	if err := d.counts(ctx, " (the first call is untouched)"); err != nil {
		return err
	}
	if err := sleep(ctx, talk); err != nil {
		return err
	}
	d.say("the first call hangs up")
	m1.records = len(d.env.Records.All())
	if err := d.hangUp(ctx, first); err != nil {
		return err
	}
	if err := d.report(ctx, m1, 1); err != nil {
		return err
	}
	// Back to the plan the demo started with.
	return d.reloadPlan(demoPlan(0))
}
