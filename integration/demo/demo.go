package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/integration"
	"github.com/callctl/callctl/integration/sim"
	"github.com/callctl/callctl/integration/sim/callmodel"
)

const (
	// ringTimeout is how long each group member rings in the demo (the lab
	// plan says 20 s): two examples wait for a no-answer, and the demo
	// should take seconds.
	ringTimeout = 2 * time.Second
	// forwardAfter is how long 3997 rings before her no-answer forward
	// (4 s in the lab plan).
	forwardAfter = 2 * time.Second
	// talk is how long an answered call stays up before its caller hangs up.
	talk = 300 * time.Millisecond
	// patience bounds every wait for something the lab or the node must do
	// (generous: a loaded machine is slow, a broken one is reported).
	patience = 15 * time.Second
)

// demo is a running lab, the node serving it, and where the story goes.
type demo struct {
	fleet integration.Fleet
	env   *integration.Env
	out   io.Writer
}

// runDemo starts the lab and the node, runs every example in order and
// stops everything, also when ctx ends (Ctrl-C) or an example fails.
func runDemo(ctx context.Context, fleet integration.Fleet, jsonLogs bool, out io.Writer) (err error) {
	d := &demo{fleet: fleet, out: out}
	d.banner()
	env, err := integration.Start(ctx, fleet, integration.Options{Logger: newLogger(out, jsonLogs), Edit: demoPlan(0)})
	if err != nil {
		return fmt.Errorf("start the simulated servers and the node: %w", err)
	}
	d.env = env
	defer func() {
		if err != nil {
			// Interrupted or failed mid-call: end what is still up, so the
			// node's drain has nothing to wait for.
			d.hangUpAll()
		}
		env.Close()
	}()
	d.ready()
	for _, ex := range examples {
		if err := ctx.Err(); err != nil {
			return err
		}
		d.title(ex.title)
		if err := ex.run(ctx, d); err != nil {
			return fmt.Errorf("%s: %w", ex.title, err)
		}
	}
	if err := d.summary(ctx); err != nil {
		return err
	}
	env.Close() // the deferred Close is then a no-op
	d.title("callctl stopped: the node drained, the simulated servers are down")
	d.say("to attach real FreeSWITCH and Asterisk servers, see the README (callctl serve --plan PLAN.yaml)")
	return nil
}

// demoPlan edits the lab plan: short rings (3997's forward waits as long),
// acme's park code *98, and srv11's channel limit when limit > 0.
func demoPlan(limit int) func(*provision.Document) {
	return func(doc *provision.Document) {
		doc.Settings.RingTimeout = provision.Duration(ringTimeout)
		integration.WithParking(doc)
		for i := range doc.Orgs {
			for j := range doc.Orgs[i].Users {
				if u := &doc.Orgs[i].Users[j]; doc.Orgs[i].ID == "acme" && u.Extension == "3997" && u.Forward != nil {
					u.Forward.After = provision.Duration(forwardAfter)
				}
			}
		}
		if limit > 0 {
			for i := range doc.Servers {
				if doc.Servers[i].Name == "srv11" {
					doc.Servers[i].ChannelLimit = limit
				}
			}
		}
	}
}

// reloadPlan gives the running node a new plan, as `callctl serve` does when
// the plan file changes: new calls route with it.
func (d *demo) reloadPlan(edit func(*provision.Document)) error {
	doc, err := integration.LabDocument(d.fleet, func(name string) (string, string) {
		s := d.env.Lab.Server(name)
		return s.ESLAddr(), s.ARIURL()
	})
	if err != nil {
		return err
	}
	edit(doc)
	plan, probs := provision.Compile(doc, nil)
	if plan == nil {
		return &provision.InvalidError{Problems: probs}
	}
	d.env.Node.SetPlan(plan)
	return nil
}

func (d *demo) printf(format string, args ...any) {
	fmt.Fprintf(d.out, format, args...)
}

// say prints one line of the demo's own commentary, indented under its title.
func (d *demo) say(format string, args ...any) {
	d.printf("   "+format+"\n", args...)
}

func (d *demo) title(t string) {
	d.printf("\n── %s\n", t)
}

func (d *demo) banner() {
	kinds := make([]string, 0, 2)
	for _, name := range []string{"srv11", "srv12"} {
		kinds = append(kinds, fmt.Sprintf("%s (prefix %s) a simulated %s", name, name[3:], kindName(d.fleet.Kinds[name])))
	}
	d.printf("callctl demo — THIS IS A SIMULATION, fleet %q: %s.\n", d.fleet.Name, strings.Join(kinds, ", "))
	d.printf("The media servers, their phones and the PSTN are simulated in this process on 127.0.0.1; callctl\n")
	d.printf("is the real node that `callctl serve` runs, on the lab plan examples/lab.yaml (pointed at the\n")
	d.printf("simulated servers; group members ring %.0f s here instead of 20 s, 3997 forwards after %.0f s instead of 4 s).\n",
		ringTimeout.Seconds(), forwardAfter.Seconds())
	d.printf("Its log lines follow, INFO and up.\n")
}

func kindName(kind string) string {
	if kind == provision.KindAsterisk {
		return "Asterisk (ARI)"
	}
	return "FreeSWITCH (event socket)"
}

func (d *demo) ready() {
	status := d.env.Node.Status()
	names := make([]string, 0, len(status))
	for name := range status {
		names = append(names, name)
	}
	slices.Sort(names)
	d.title("callctl node n1 is up")
	for _, name := range names {
		s := d.env.Lab.Server(name)
		addr := s.ESLAddr()
		if addr == "" {
			addr = s.ARIURL()
		}
		d.say("%s %s at %s: %s", name, d.fleet.Kinds[name], addr, status[name])
	}
}

// within bounds one wait.
func within(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, patience)
}

// mark is where an example's call begins: rings and records after it are
// the call's.
type mark struct {
	at      time.Time
	records int
}

func (d *demo) mark() mark {
	return mark{at: d.env.Lab.Now(), records: len(d.env.Records.All())}
}

// place places a call from a phone (its user's name and org) and says so.
func (d *demo) place(ctx context.Context, server, from, name, org, dialed string) (*sim.Call, mark, error) {
	m := d.mark()
	d.say("%s (%s, %s) on %s dials %s", from, name, org, server, dialed)
	c, err := d.env.Lab.Call(ctx, server, from, dialed, sim.CallOptions{CallerName: name})
	if err != nil {
		return nil, m, err
	}
	return c, m, nil
}

// placeFromPSTN places a call from the PSTN to a DID and says so.
func (d *demo) placeFromPSTN(ctx context.Context, server, caller, did string) (*sim.Call, mark, error) {
	m := d.mark()
	d.say("%s calls %s from the PSTN, arriving on %s", caller, did, server)
	c, err := d.env.Lab.CallFromPSTN(ctx, server, did, caller, sim.CallOptions{})
	if err != nil {
		return nil, m, err
	}
	return c, m, nil
}

// bridged waits until the caller is connected.
func (d *demo) bridged(ctx context.Context, c *sim.Call) error {
	wctx, cancel := within(ctx)
	defer cancel()
	if _, err := c.WaitBridged(wctx); err != nil {
		return fmt.Errorf("the caller was never connected: %w", err)
	}
	return nil
}

// hangUp makes the caller hang up and waits for the end of the call.
func (d *demo) hangUp(ctx context.Context, c *sim.Call) error {
	if err := c.Hangup(); err != nil {
		return fmt.Errorf("hang up: %w", err)
	}
	_, err := d.ended(ctx, c)
	return err
}

// converse waits for the caller to be connected, lets them talk a moment
// and hangs up.
func (d *demo) converse(ctx context.Context, c *sim.Call) error {
	if err := d.bridged(ctx, c); err != nil {
		return err
	}
	if err := sleep(ctx, talk); err != nil {
		return err
	}
	return d.hangUp(ctx, c)
}

// ended waits for the end of the call and says how it ended for the caller.
func (d *demo) ended(ctx context.Context, c *sim.Call) (sim.Result, error) {
	wctx, cancel := within(ctx)
	defer cancel()
	res, err := c.WaitEnded(wctx)
	if err != nil {
		return res, err
	}
	if res.Answered {
		d.say("caller: answered, talked %.1f s, hung up", res.EndedAt.Sub(res.AnsweredAt).Seconds())
	} else {
		d.say("caller: not connected, SIP %d (%s)", res.SIPStatus, res.Cause.Name)
	}
	return res, nil
}

// phone is a simulated phone (server and extension) or, with server "",
// a PSTN number.
type phone struct{ server, ext string }

// setPhones scripts what phones do when they ring.
func (d *demo) setPhones(b sim.Behaviour, server string, exts ...string) error {
	m, err := b.Model()
	if err != nil {
		return err
	}
	for _, x := range exts {
		d.env.Lab.SetPhone(server, x, m)
	}
	return nil
}

// phonesSaw prints every ring since m, then the watched phones that did
// not ring.
func (d *demo) phonesSaw(m mark, watch ...phone) {
	rang := map[phone]bool{}
	d.say("phones:")
	for _, r := range d.env.Lab.RingsSince(m.at) {
		p := phone{server: r.Server, ext: r.Target}
		where := r.Server + " " + r.Target
		if r.PSTN {
			p.server = ""
			where = "PSTN " + r.Target
		}
		rang[p] = true
		d.say("  %-18s rang, showing %s: %s", where, shown(r.Caller), ringOutcome(r))
	}
	for _, p := range watch {
		if rang[p] {
			continue
		}
		where := p.server + " " + p.ext
		if p.server == "" {
			where = "PSTN " + p.ext
		}
		d.say("  %-18s did not ring", where)
	}
}

func shown(p callmodel.Party) string {
	if p.Name != "" && p.Name != p.Number {
		return fmt.Sprintf("%s %q", p.Number, p.Name)
	}
	return p.Number
}

func ringOutcome(r callmodel.Ring) string {
	switch {
	case !r.Answered.IsZero():
		return fmt.Sprintf("answered after %.1f s", r.Answered.Sub(r.Start).Seconds())
	case r.End.IsZero():
		return "still ringing"
	case r.Outcome == callmodel.OutcomeCancelled:
		return fmt.Sprintf("not answered, cancelled after %.1f s", r.End.Sub(r.Start).Seconds())
	default:
		return fmt.Sprintf("%s after %.1f s", r.Outcome, r.End.Sub(r.Start).Seconds())
	}
}

// records waits for the n call records written since m and prints them.
func (d *demo) records(ctx context.Context, m mark, n int) error {
	wctx, cancel := within(ctx)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		all := d.env.Records.All()
		if len(all) >= m.records+n {
			for _, rec := range all[m.records : m.records+n] {
				b, err := json.MarshalIndent(rec, "   ", "  ")
				if err != nil {
					return fmt.Errorf("call record %s: %w", rec.CallID, err)
				}
				d.say("call record (%s, call=%s):", rec.Server, rec.CallID)
				d.printf("   %s\n", b)
			}
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("waiting for %d call records, %d written: %w", n, len(all)-m.records, wctx.Err())
		case <-tick.C:
		}
	}
}

// report waits until the lab is quiet, then prints what the phones saw and
// the n call records of the call.
func (d *demo) report(ctx context.Context, m mark, n int, watch ...phone) error {
	wctx, cancel := within(ctx)
	defer cancel()
	if err := d.env.Lab.WaitIdle(wctx); err != nil {
		return err
	}
	d.phonesSaw(m, watch...)
	return d.records(ctx, m, n)
}

// waitCount waits until a server counts want legs and returns the count.
func (d *demo) waitCount(ctx context.Context, server string, want int) error {
	wctx, cancel := within(ctx)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		got, err := d.env.State.Count(wctx, "server", server)
		if err == nil && got == want {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("%s counts %d legs (err %v), want %d: %w", server, got, err, want, wctx.Err())
		case <-tick.C:
		}
	}
}

// counts prints what each server counts now.
func (d *demo) counts(ctx context.Context, why string) error {
	var parts []string
	for _, s := range []string{"srv11", "srv12"} {
		n, err := d.env.State.Count(ctx, "server", s)
		if err != nil {
			return fmt.Errorf("count %s: %w", s, err)
		}
		parts = append(parts, fmt.Sprintf("%s %d", s, n))
	}
	d.say("counted legs now: %s%s", strings.Join(parts, ", "), why)
	return nil
}

// talkAcross waits until srv11 counts n11 legs and srv12 n12, says so with
// why, lets the call on c talk a moment and hangs it up: the middle of
// every example whose call crosses the trunk.
func (d *demo) talkAcross(ctx context.Context, c *sim.Call, n11, n12 int, why string) error {
	if err := d.waitCount(ctx, "srv11", n11); err != nil {
		return err
	}
	if err := d.waitCount(ctx, "srv12", n12); err != nil {
		return err
	}
	if err := d.counts(ctx, why); err != nil {
		return err
	}
	if err := sleep(ctx, talk); err != nil {
		return err
	}
	return d.hangUp(ctx, c)
}

// waitFor polls cond until it holds.
func waitFor(ctx context.Context, what string, cond func() bool) error {
	wctx, cancel := within(ctx)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-wctx.Done():
			return fmt.Errorf("waiting until %s: %w", what, wctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// summary checks that nothing stays counted or up once every call is over.
func (d *demo) summary(ctx context.Context) error {
	d.title("all calls are over")
	for _, s := range []string{"srv11", "srv12"} {
		if err := d.waitCount(ctx, s, 0); err != nil {
			return err
		}
	}
	if err := d.counts(ctx, ": nothing leaked"); err != nil {
		return err
	}
	d.say("%d call records written; `grep call=<id>` above follows any one call through callctl's log", len(d.env.Records.All()))
	return nil
}

// hangUpAll ends every channel still up in the lab, as if every party hung
// up.
func (d *demo) hangUpAll() {
	for _, s := range d.env.Lab.Servers() {
		for _, ch := range d.env.Lab.Channels(s.Name) {
			if err := d.env.Lab.Hangup(s.Name, ch.UUID, callmodel.CauseNormalClearing); err != nil && !errors.Is(err, callmodel.ErrNoChannel) {
				d.say("hang up %s on %s: %v", ch.UUID, s.Name, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = d.env.Lab.WaitIdle(ctx)
}
