package integration

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/accounting"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/integration/sim"
	"github.com/callctl/callctl/integration/sim/callmodel"
)

// The scenario suite: each scenario is a real call through a callctl node
// and simulated media servers, on every fleet (all FreeSWITCH, all
// Asterisk, and server 11 FreeSWITCH with server 12 Asterisk). It asserts
// what the caller, the rung phones, the counters and the call record see.

func logger() *slog.Logger {
	if os.Getenv("CALLCTL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// scenario runs fn on every fleet, each in its own lab and node.
func scenario(t *testing.T, opt Options, fn func(t *testing.T, e *Env)) {
	t.Helper()
	for _, f := range Fleets {
		t.Run(f.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			o := opt
			o.Logger = logger()
			e, err := Start(ctx, f, o)
			if err != nil {
				t.Fatalf("start %s lab: %v", f.Name, err)
			}
			defer e.Close()
			fn(t, e)
			// Whatever happened, nothing stays counted once the lab is quiet.
			e.waitIdle(t)
			for _, s := range []string{"srv11", "srv12"} {
				e.waitCount(t, "server", s, 0)
			}
		})
	}
}

func phones(pairs ...any) []sim.PhoneConfig {
	var out []sim.PhoneConfig
	for i := 0; i+2 < len(pairs); i += 3 {
		out = append(out, sim.PhoneConfig{Server: pairs[i].(string), Ext: pairs[i+1].(string), Behaviour: pairs[i+2].(sim.Behaviour)})
	}
	return out
}

var (
	answers    = sim.Behaviour{Mode: "answer", RingFor: 100 * time.Millisecond}
	busy       = sim.Behaviour{Mode: "busy", RingFor: 20 * time.Millisecond}
	ringing    = sim.Behaviour{Mode: "ring"}
	unregister = sim.Behaviour{Mode: "unregistered"}
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// placed is a call the lab placed, with what identifies its record (the
// channel id callctl sees is the media server's, which for Asterisk is not
// the simulator's own id).
type placed struct {
	*sim.Call
	server, from, dialed string
	at                   time.Time
}

func (e *Env) call(t *testing.T, server, from, dialed string) *placed {
	t.Helper()
	at := time.Now()
	c, err := e.Lab.Call(ctxT(t), server, from, dialed, sim.CallOptions{})
	if err != nil {
		t.Fatalf("call %s -> %s on %s: %v", from, dialed, server, err)
	}
	return &placed{Call: c, server: server, from: from, dialed: dialed, at: at}
}

func (e *Env) pstnCall(t *testing.T, server, did, caller string) *placed {
	t.Helper()
	at := time.Now()
	c, err := e.Lab.CallFromPSTN(ctxT(t), server, did, caller, sim.CallOptions{})
	if err != nil {
		t.Fatalf("pstn call %s -> %s on %s: %v", caller, did, server, err)
	}
	return &placed{Call: c, server: server, from: caller, dialed: did, at: at}
}

// of matches the record of the call.
func of(p *placed) func(*controller.Record) bool {
	return func(r *controller.Record) bool {
		return r.Server == p.server && r.Caller == p.from && r.Dialed == p.dialed && !r.Start.Before(p.at.Add(-time.Second))
	}
}

func bridged(t *testing.T, c *placed) callmodel.Snapshot {
	t.Helper()
	s, err := c.WaitBridged(ctxT(t))
	if err != nil {
		t.Fatalf("caller was never connected: %v", err)
	}
	return s
}

func ended(t *testing.T, c *placed) sim.Result {
	t.Helper()
	r, err := c.WaitEnded(ctxT(t))
	if err != nil {
		t.Fatalf("call did not end: %v", err)
	}
	return r
}

func hangup(t *testing.T, c *placed) sim.Result {
	t.Helper()
	if err := c.Hangup(); err != nil {
		t.Fatal(err)
	}
	return ended(t, c)
}

// rang lists, in order, the phones of server that rang since the start.
func (e *Env) rang(server string, exts ...string) map[string][]callmodel.Ring {
	out := map[string][]callmodel.Ring{}
	for _, x := range exts {
		out[x] = e.Lab.Rings(server, x)
	}
	return out
}

func (e *Env) record(t *testing.T, match func(*controller.Record) bool) controller.Record {
	t.Helper()
	r, err := e.Records.Wait(ctxT(t), match)
	if err != nil {
		t.Fatalf("%v; records so far: %+v", err, e.Records.All())
	}
	return r
}

func attempts(r controller.Record) string {
	var s []string
	for _, a := range r.Attempts {
		s = append(s, a.Target+":"+a.Outcome.String())
	}
	return strings.Join(s, " ")
}

func (e *Env) waitCount(t *testing.T, scope, name string, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	got := -1
	for time.Now().Before(deadline) {
		if got = e.Count(context.Background(), scope, name); got == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s %s counts %d, want %d", scope, name, got, want)
}

// waitAnswered waits until callctl has connected one of its calls to target.
func (e *Env) waitAnswered(t *testing.T, target string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, c := range e.Node.Engine().Calls() {
			if c.Answered == target {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no call of callctl was connected to %s", target)
}

// waitAnsweredOn waits until a call of callctl on server is connected to
// target (across servers the far server's call connects first).
func (e *Env) waitAnsweredOn(t *testing.T, server, target string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, c := range e.Node.Engine().Calls() {
			if c.Server == server && c.Answered == target {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no call of callctl on %s was connected to %s", server, target)
}

func (e *Env) waitIdle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := e.Lab.WaitIdle(ctx); err != nil {
		t.Fatalf("lab not idle: %v", err)
	}
}

func ringCount(rs []callmodel.Ring) int { return len(rs) }

// Seed 002, example 1: 8008003 starts at 77721403; 03 is busy, 04 does not
// answer, 05 is not registered (skipped without ringing), 06 answers.
func TestSeed002ServiceNumberHunt(t *testing.T) {
	scenario(t, Options{Phones: phones(
		"srv11", "77721403", busy,
		"srv11", "77721404", ringing,
		"srv11", "77721405", unregister,
		"srv11", "77721406", answers,
	)}, func(t *testing.T, e *Env) {
		c := e.call(t, "srv11", "1100", "8008003")
		peer := bridged(t, c)
		res := hangup(t, c)
		if !res.Answered {
			t.Fatalf("caller not answered: %+v", res)
		}
		r := e.rang("srv11", "77721401", "77721402", "77721403", "77721404", "77721405", "77721406")
		for x, want := range map[string]int{"77721401": 0, "77721402": 0, "77721403": 1, "77721404": 1, "77721405": 0, "77721406": 1} {
			if got := ringCount(r[x]); got != want {
				t.Errorf("%s rang %d times, want %d", x, got, want)
			}
		}
		if rs := r["77721404"]; len(rs) == 1 {
			if d := rs[0].End.Sub(rs[0].Start); d < 2500*time.Millisecond || d > 6*time.Second {
				t.Errorf("77721404 rang %s, want the 3 s ring timeout", d)
			}
		}
		if rs := r["77721406"]; len(rs) == 1 && rs[0].Caller.Number != "1100" {
			t.Errorf("77721406 saw caller %q, want 1100", rs[0].Caller.Number)
		}
		_ = peer
		rec := e.record(t, of(c))
		if got := attempts(rec); got != "77721403:busy 77721404:no-answer 77721405:not-registered 77721406:answered" {
			t.Errorf("record attempts: %s", got)
		}
		if rec.Route != "hunt" || rec.Answered != "77721406" || rec.Billing != "grp1" || rec.Org != "grp1" {
			t.Errorf("record: route %s answered %s billing %s org %s", rec.Route, rec.Answered, rec.Billing, rec.Org)
		}
	})
}

// Seed 002: a member dialed directly still hunts on; with T only it rings.
func TestSeed002DirectMemberAndT(t *testing.T) {
	scenario(t, Options{Phones: phones(
		"srv11", "77721402", busy,
		"srv11", "77721403", answers,
	)}, func(t *testing.T, e *Env) {
		c := e.call(t, "srv11", "1100", "77721402")
		bridged(t, c)
		hangup(t, c)
		rec := e.record(t, of(c))
		if got := attempts(rec); got != "77721402:busy 77721403:answered" {
			t.Errorf("dialing 77721402: %s", got)
		}
		// T: 02 only; busy, so the caller hears busy and 03 does not ring again.
		before := len(e.Lab.Rings("srv11", "77721403"))
		c = e.call(t, "srv11", "1100", "77721402T")
		res := ended(t, c)
		if res.Answered || res.SIPStatus != 486 {
			t.Errorf("77721402T: answered %v, SIP %d; want 486 busy", res.Answered, res.SIPStatus)
		}
		if after := len(e.Lab.Rings("srv11", "77721403")); after != before {
			t.Errorf("77721403 rang after 77721402T")
		}
		rec = e.record(t, of(c))
		if got := attempts(rec); got != "77721402:busy" || rec.Route != "member" {
			t.Errorf("77721402T record: %s %s", rec.Route, got)
		}
	})
}

// Seed 002, examples 2 and 3: each service number starts at its start number.
func TestSeed002Examples2And3(t *testing.T) {
	scenario(t, Options{Phones: phones(
		"srv11", "77721401", answers,
	)}, func(t *testing.T, e *Env) {
		for _, tc := range []struct{ caller, dialed, org string }{{"1200", "8008002", "grp2"}, {"1300", "8008001", "grp3"}} {
			c := e.call(t, "srv11", tc.caller, tc.dialed)
			bridged(t, c)
			hangup(t, c)
			rec := e.record(t, of(c))
			if attempts(rec) != "77721401:answered" || rec.Org != tc.org {
				t.Errorf("%s of %s: %s in %s", tc.dialed, tc.caller, attempts(rec), rec.Org)
			}
		}
	})
}

// Seed 002, example 4, nobody answers: the caller gets busy, the record lists
// the attempt with its outcome and ring time.
func TestSeed002NobodyAnswers(t *testing.T) {
	scenario(t, Options{Phones: phones("srv11", "77721401", ringing)}, func(t *testing.T, e *Env) {
		c := e.call(t, "srv11", "1400", "8008001")
		res := ended(t, c)
		if res.Answered || res.SIPStatus != 486 {
			t.Errorf("answered %v, SIP %d; want 486", res.Answered, res.SIPStatus)
		}
		rec := e.record(t, of(c))
		if attempts(rec) != "77721401:no-answer" || rec.HangupCause != "USER_BUSY" {
			t.Errorf("record: %s, cause %s", attempts(rec), rec.HangupCause)
		}
		if len(rec.Attempts) == 1 && rec.Attempts[0].Ring < 2500*time.Millisecond {
			t.Errorf("ring time %s, want about 3 s", rec.Attempts[0].Ring)
		}
	})
}

// SPEC §3: when nobody in a group answers, a PSTN caller reaches the org's
// fallback target like a phone caller does; here an extension on the other
// server, which shows the PSTN caller's number (a forward passes the caller
// through, SPEC §4) and counts like a transfer: 2 on srv11, 1 on srv12 (§5).
func TestGroupFallbackForPSTNCallers(t *testing.T) {
	opt := Options{Phones: phones(
		"srv11", "77721401", busy,
		"srv11", "77721402", busy,
		"srv11", "77721403", busy,
		"srv11", "77721404", busy,
		"srv11", "77721405", busy,
		"srv11", "77721406", busy,
		"srv12", "1101", answers,
	), Edit: func(d *provision.Document) {
		for i := range d.Orgs {
			if d.Orgs[i].ID == "grp1" {
				d.Orgs[i].Users = append(d.Orgs[i].Users, provision.User{Extension: "1101", Name: "Night Desk", Server: "srv12"})
				d.Orgs[i].Hunt.Fallback = "1101"
			}
		}
	}}
	scenario(t, opt, func(t *testing.T, e *Env) {
		c := e.pstnCall(t, "srv11", "+4930200100", "+4915112345678")
		bridged(t, c)
		rs := e.Lab.Rings("srv12", "1101")
		if len(rs) != 1 || rs[0].Caller.Number != "+4915112345678" {
			t.Fatalf("the fallback 1101 rang %+v, want once showing +4915112345678", rs)
		}
		e.waitCount(t, "server", "srv11", 2)
		e.waitCount(t, "server", "srv12", 1)
		hangup(t, c)
		rec := e.record(t, of(c))
		want := "77721401:busy 77721402:busy 77721403:busy 77721404:busy 77721405:busy 77721406:busy 1101:answered"
		if got := attempts(rec); got != want || rec.Answered != "1101" {
			t.Errorf("record: attempts %s, answered by %q; want %s by 1101", got, rec.Answered, want)
		}
		// The fallback is a forward of the call (SPEC §4): its attempt says so.
		forwarded(t, rec, want, "fallback", "org grp1")
	})
}

// The caller hangs up mid-hunt: the ringing leg is cancelled at once and
// nothing rings after.
func TestCallerHangsUpMidHunt(t *testing.T) {
	scenario(t, Options{Phones: phones(
		"srv11", "77721401", busy,
		"srv11", "77721402", ringing,
		"srv11", "77721403", answers,
	)}, func(t *testing.T, e *Env) {
		c := e.call(t, "srv11", "1300", "8008001")
		deadline := time.Now().Add(10 * time.Second)
		for len(e.Lab.Rings("srv11", "77721402")) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		hung := time.Now()
		hangup(t, c)
		rec := e.record(t, of(c))
		if got := attempts(rec); got != "77721401:busy 77721402:cancelled" {
			t.Errorf("attempts %s", got)
		}
		rs := e.Lab.Rings("srv11", "77721402")
		if len(rs) != 1 || !rs[0].Ended() || rs[0].End.Sub(hung) > time.Second {
			t.Errorf("77721402's ring was not cancelled at once: %+v", rs)
		}
		// The record is written once callctl is done with the call, and the
		// lab is idle once nothing is in progress: nothing can ring after.
		e.waitIdle(t)
		if n := len(e.Lab.Rings("srv11", "77721403")); n != 0 {
			t.Errorf("77721403 rang %d times after the caller left", n)
		}
	})
}

// Seed 003: 3999 on server 11 dials 122099; 2099 on server 12 rings showing
// 113999; the call counts 1 on each server while up. And back.
func TestSeed003InterServer(t *testing.T) {
	scenario(t, Options{Phones: phones("srv12", "2099", answers, "srv11", "3999", answers)}, func(t *testing.T, e *Env) {
		c := e.call(t, "srv11", "3999", "122099")
		bridged(t, c)
		rs := e.Lab.Rings("srv12", "2099")
		if len(rs) != 1 || rs[0].Caller.Number != "113999" {
			t.Fatalf("2099 rings: %+v, want one showing 113999", rs)
		}
		// The caller's name crosses the trunk with the number (SPEC §4).
		if rs[0].Caller.Name != "Aiko Sato" {
			t.Errorf("2099 rings showing the name %q, want \"Aiko Sato\"", rs[0].Caller.Name)
		}
		e.waitCount(t, "server", "srv11", 1)
		e.waitCount(t, "server", "srv12", 1)
		hangup(t, c)
		checkInterServerRecords(t, e.record(t, of(c)), e.record(t, farEnd))
		e.waitCount(t, "server", "srv11", 0)
		e.waitCount(t, "server", "srv12", 0)

		c = e.call(t, "srv12", "2099", "113999")
		bridged(t, c)
		if rs := e.Lab.Rings("srv11", "3999"); len(rs) != 1 || rs[0].Caller.Number != "122099" {
			t.Errorf("3999 rings: %+v, want one showing 122099", rs)
		}
		hangup(t, c)
	})
}

// farEnd matches the record of 122099's arrival on server 12.
func farEnd(r *controller.Record) bool { return r.Server == "srv12" && r.Dialed == "2099" }

// checkInterServerRecords checks the two records of 3999 on server 11
// dialing 122099: the call out over the trunk, and its arrival on server 12.
func checkInterServerRecords(t *testing.T, rec, far controller.Record) {
	t.Helper()
	if rec.Route != "inter-server" || rec.CallerID != "113999" || len(rec.Legs) != 1 || rec.Legs[0].Server != "srv11" {
		t.Errorf("srv11 record: route %s caller id %s legs %+v", rec.Route, rec.CallerID, rec.Legs)
	}
	if far.Origin != "trunk" || far.Caller != "113999" || len(far.Legs) != 1 || far.Legs[0].Kind.String() != "trunk-in" {
		t.Errorf("srv12 record: origin %s caller %s legs %+v", far.Origin, far.Caller, far.Legs)
	}
}

// Seed 000: agent 124 of org A dials 1201, extension 201 of org B rings
// showing 2124; and back, 1201.
func TestSeed000OrgConnect(t *testing.T) {
	scenario(t, Options{Phones: phones("srv11", "201", answers, "srv11", "124", answers)}, func(t *testing.T, e *Env) {
		c := e.call(t, "srv11", "124", "1201")
		bridged(t, c)
		hangup(t, c)
		if rs := e.Lab.Rings("srv11", "201"); len(rs) != 1 || rs[0].Caller.Number != "2124" {
			t.Errorf("201 rings: %+v, want one showing 2124", rs)
		}
		rec := e.record(t, of(c))
		if rec.Route != "org-connect" || rec.Org != "orgB" || rec.Billing != "orgA" {
			t.Errorf("record: %s %s %s", rec.Route, rec.Org, rec.Billing)
		}
		c = e.call(t, "srv11", "201", "2124")
		bridged(t, c)
		hangup(t, c)
		if rs := e.Lab.Rings("srv11", "124"); len(rs) != 1 || rs[0].Caller.Number != "1201" {
			t.Errorf("124 rings: %+v, want one showing 1201", rs)
		}
	})
}

// Seed 004: the 0044 rule presents the +44 number; the org default otherwise.
func TestSeed004CallerID(t *testing.T) {
	scenario(t, Options{}, func(t *testing.T, e *Env) {
		c := e.call(t, "srv11", "3999", "00442079460000")
		bridged(t, c)
		hangup(t, c)
		if rs := e.Lab.PSTNRings("+442079460000"); len(rs) != 1 || rs[0].Caller.Number != "+442071234567" {
			t.Errorf("+442079460000 rings: %+v, want one showing +442071234567", rs)
		}
		rec := e.record(t, of(c))
		if rec.Route != "external" || rec.CallerID != "+442071234567" || rec.Billing != "acme" || rec.External != "+442079460000" {
			t.Errorf("record: %+v", rec)
		}
		c = e.call(t, "srv11", "3999", "030123456")
		bridged(t, c)
		hangup(t, c)
		if rs := e.Lab.PSTNRings("+4930123456"); len(rs) != 1 || rs[0].Caller.Number != "+4930100100" {
			t.Errorf("+4930123456 rings: %+v, want the org default +4930100100", rs)
		}
	})
}

// Seed 001: a number of account A used in account B's PBX is billed to A,
// both ways.
func TestSeed001SharedNumber(t *testing.T) {
	scenario(t, Options{Phones: phones("srv11", "300", answers)}, func(t *testing.T, e *Env) {
		c := e.call(t, "srv11", "300", "030999888")
		bridged(t, c)
		hangup(t, c)
		if rs := e.Lab.PSTNRings("+4930999888"); len(rs) != 1 || rs[0].Caller.Number != "+4930555001" {
			t.Errorf("PSTN rings: %+v, want one showing +4930555001", rs)
		}
		if rec := e.record(t, of(c)); rec.Billing != "kundeA" || rec.Org != "kundeB" {
			t.Errorf("outbound record billed to %s (org %s), want kundeA", rec.Billing, rec.Org)
		}
		in := e.pstnCall(t, "srv11", "+4930555001", "+4915112345678")
		bridged(t, in)
		hangup(t, in)
		if rs := e.Lab.Rings("srv11", "300"); len(rs) != 1 || rs[0].Caller.Number != "+4915112345678" {
			t.Errorf("300 rings: %+v", rs)
		}
		rec := e.record(t, of(in))
		if rec.Billing != "kundeA" || rec.Origin != "pstn" || len(rec.Legs) != 1 || rec.Legs[0].Kind.String() != "pstn-in" {
			t.Errorf("inbound record: billing %s origin %s legs %+v", rec.Billing, rec.Origin, rec.Legs)
		}
	})
}

// SPEC §5: a limit refuses the next counted leg with 503; the call up is
// untouched.
func TestLimitRefusesTheNextCall(t *testing.T) {
	opt := Options{Edit: func(d *provision.Document) {
		for i := range d.Servers {
			if d.Servers[i].Name == "srv11" {
				d.Servers[i].ChannelLimit = 1
			}
		}
	}}
	scenario(t, opt, func(t *testing.T, e *Env) {
		first := e.call(t, "srv11", "3999", "030111111")
		bridged(t, first)
		e.waitCount(t, "server", "srv11", 1)
		second := e.call(t, "srv11", "3998", "030222222")
		res := ended(t, second)
		if res.Answered || res.SIPStatus != 503 {
			t.Errorf("second call: answered %v SIP %d, want 503", res.Answered, res.SIPStatus)
		}
		if rs := e.Lab.PSTNRings("+4930222222"); len(rs) != 0 {
			t.Errorf("the refused call rang the PSTN: %+v", rs)
		}
		if first.Answered() == false {
			t.Error("the first call was disturbed")
		}
		rec := e.record(t, of(second))
		if rec.HangupCause != "NORMAL_CIRCUIT_CONGESTION" {
			t.Errorf("record cause %s", rec.HangupCause)
		}
		// The record says which limit refused the call, not that nobody answered.
		if want := "leg pstn-out on srv11: server srv11 is at its channel limit of 1"; rec.Reason != want {
			t.Errorf("record reason %q, want %q", rec.Reason, want)
		}
		e.waitCount(t, "server", "srv11", 1)
		hangup(t, first)
	})
}

// SPEC §5: an org's own limit refuses the next counted leg of that org, and
// the record names the org and its limit, whether the refused leg is the
// call's arrival from the PSTN or the leg it dials.
func TestOrgLimitRefusalSaysWhichLimit(t *testing.T) {
	opt := Options{Edit: func(d *provision.Document) {
		for i := range d.Orgs {
			if d.Orgs[i].ID == "acme" {
				d.Orgs[i].ChannelLimit = 1
			}
		}
	}}
	scenario(t, opt, func(t *testing.T, e *Env) {
		first := e.call(t, "srv11", "3999", "030111111")
		bridged(t, first)
		e.waitCount(t, "org", "acme", 1)
		out := e.call(t, "srv11", "3998", "030222222")
		in := e.pstnCall(t, "srv11", "+4930100100", "+4915112345678")
		for _, c := range []*placed{out, in} {
			if res := ended(t, c); res.Answered || res.SIPStatus != 503 {
				t.Errorf("call at acme's limit: answered %v SIP %d, want 503", res.Answered, res.SIPStatus)
			}
		}
		for _, tc := range []struct {
			c    *placed
			want string
		}{
			{out, "leg pstn-out on srv11: org acme is at its channel limit of 1"},
			{in, "leg pstn-in on srv11: org acme is at its channel limit of 1"},
		} {
			if rec := e.record(t, of(tc.c)); rec.Reason != tc.want || rec.HangupCause != "NORMAL_CIRCUIT_CONGESTION" {
				t.Errorf("record of %s: reason %q cause %s, want %q", rec.Dialed, rec.Reason, rec.HangupCause, tc.want)
			}
		}
		e.waitCount(t, "org", "acme", 1)
		hangup(t, first)
	})
}

// Rejections carry the right cause to the caller.
func TestRejections(t *testing.T) {
	scenario(t, Options{}, func(t *testing.T, e *Env) {
		for _, tc := range []struct {
			server, from, dialed string
			sip                  int
		}{
			{"srv11", "3999", "555", 404},            // nothing answers to it
			{"srv12", "2099", "00442079460000", 403}, // not in 2099's country whitelist
			{"srv11", "3999", "09001234567", 403},    // a deny pattern
			{"srv11", "9999", "3998", 403},           // not a user
			{"srv11", "3999", "1000,user/evil", 484}, // not a number at all
		} {
			c := e.call(t, tc.server, tc.from, tc.dialed)
			res := ended(t, c)
			if res.Answered || res.SIPStatus != tc.sip {
				t.Errorf("%s dials %q: answered %v SIP %d, want %d", tc.from, tc.dialed, res.Answered, res.SIPStatus, tc.sip)
			}
		}
	})
}

// SPEC §5: an external call into server 11 transferred (blind) by the user
// who took it to server 12 counts 2 on server 11 (inbound + transfer leg) and
// 1 on server 12; the phone there sees the original caller.
func TestTransferredExternalCallCounts2Plus1(t *testing.T) {
	scenario(t, Options{Phones: phones("srv11", "3999", answers, "srv12", "2099", answers)}, func(t *testing.T, e *Env) {
		in := e.pstnCall(t, "srv11", "+4930100100", "+4915112345678")
		bridged(t, in)
		e.waitCount(t, "server", "srv11", 1)
		time.Sleep(300 * time.Millisecond) // 3999 talks a moment, then transfers
		if err := e.Lab.BlindTransfer("srv11", in.UUID(), "122099"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(e.Lab.Rings("srv12", "2099")) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		rs := e.Lab.Rings("srv12", "2099")
		if len(rs) != 1 || rs[0].Caller.Number != "+4915112345678" {
			t.Fatalf("2099 rings: %+v, want one showing the original caller", rs)
		}
		e.waitAnsweredOn(t, "srv11", "2099")
		e.waitCount(t, "server", "srv11", 2)
		e.waitCount(t, "server", "srv12", 1)
		hangup(t, in)
		first := e.record(t, of(in))
		rec := e.record(t, func(r *controller.Record) bool { return r.Transfer == "blind" })
		if rec.Route != "inter-server" || rec.Caller != "3999" || rec.Answered != "2099" {
			t.Errorf("transfer record: route %s caller %s answered %s legs %+v", rec.Route, rec.Caller, rec.Answered, rec.Legs)
		}
		// Whose record the PSTN leg is on: FreeSWITCH moves the caller's own
		// channel into the transfer's call, which counts both legs, and the
		// first call ends TRANSFERRED; Asterisk puts a Local channel in the
		// phone's place, so the caller stays the first call's, counted there
		// until it hangs up, and the transfer's call counts its trunk leg.
		wantFirst, wantXfer, wantCause := "pstn-in", "pstn-in trunk-out", "TRANSFERRED"
		if e.Fleet.Kinds["srv11"] == provision.KindAsterisk {
			wantFirst, wantXfer, wantCause = "pstn-in", "trunk-out", "NORMAL_CLEARING"
		}
		if first.HangupCause != wantCause || first.Answered != "3999" || legKinds(first.Legs, "srv11") != wantFirst {
			t.Errorf("first record: cause %s answered %s legs %+v; want %s, 3999, %s", first.HangupCause, first.Answered, first.Legs, wantCause, wantFirst)
		}
		if got := legKinds(rec.Legs, "srv11"); got != wantXfer || len(rec.Legs) != len(strings.Fields(wantXfer)) {
			t.Errorf("transfer record: legs %+v, want %s on srv11", rec.Legs, wantXfer)
		}
		// The transferred call's record links to the record of the call it
		// came from and names who transferred it (SPEC §4).
		if first.ID == "" || rec.ID == first.ID || rec.TransferFrom != first.ID || rec.TransferBy != "3999" {
			t.Errorf("transfer record %q: from record %q by %q; want from %q (the first record) by 3999", rec.ID, rec.TransferFrom, rec.TransferBy, first.ID)
		}
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if want := `"transfer":{"kind":"blind","from_record":"` + first.ID + `","by":"3999"}`; !strings.Contains(string(b), want) {
			t.Errorf("transfer record JSON %s, want it to carry %s", b, want)
		}
	})
}

// SPEC §5: a transferred call whose target hangs up first. 3999 transfers
// an external caller to 122099; 2099 answers and hangs up first. The
// caller is ended, and so is every channel the transfer left behind: the
// transferring phone's channel, which on Asterisk stays in callctl's
// application after the stand-in took its place, is hung up with the call
// rather than left up with nobody to end it (the lab is idle, nothing is
// counted).
func TestTransferTargetHangsUpFirst(t *testing.T) {
	scenario(t, Options{Phones: phones("srv11", "3999", answers, "srv12", "2099", answers)}, func(t *testing.T, e *Env) {
		in := e.pstnCall(t, "srv11", "+4930100100", "+4915112345678")
		bridged(t, in)
		e.waitCount(t, "server", "srv11", 1)
		time.Sleep(300 * time.Millisecond) // 3999 talks a moment, then transfers
		if err := e.Lab.BlindTransfer("srv11", in.UUID(), "122099"); err != nil {
			t.Fatal(err)
		}
		e.waitAnsweredOn(t, "srv11", "2099")
		e.waitCount(t, "server", "srv12", 1)
		rs := e.Lab.Rings("srv12", "2099")
		if len(rs) != 1 {
			t.Fatalf("2099 rings: %+v, want one", rs)
		}
		if err := e.Lab.Hangup("srv12", rs[0].UUID, callmodel.CauseNormalClearing); err != nil {
			t.Fatal(err)
		}
		if _, err := in.WaitEnded(ctxT(t)); err != nil {
			t.Fatalf("the PSTN caller after the transfer's target hung up: %v", err)
		}
	})
}

// withAcmeDesk gives acme a sequential group on server 12: service number
// 8008031 hunts 77731201, then 77731202.
func withAcmeDesk(d *provision.Document) {
	for i := range d.Orgs {
		if d.Orgs[i].ID == "acme" {
			d.Orgs[i].SIPNumbers = append(d.Orgs[i].SIPNumbers,
				provision.SIPNumber{Number: "77731201", Server: "srv12", Next: "77731202"},
				provision.SIPNumber{Number: "77731202", Server: "srv12", Next: "00000"})
			d.Orgs[i].ServiceNumbers = append(d.Orgs[i].ServiceNumbers, provision.ServiceNumber{Number: "8008031", Start: "77731201"})
		}
	}
}

// SPEC §4: "a transfer to a group or a queue on the other server works like
// a call to an extension". An external call into server 11, answered by
// 3999, who transfers it (blind) to acme's service number on server 12
// (128008031): it hunts the group as a call from 3999 would, each member
// over the trunk (77731201T busy, then 77731202T, whose phone shows the
// original caller); server 11 counts 2 and server 12 1 while it is up (§5);
// the transfer's record holds the hunt and links to the first call's; and
// nothing stays counted.
func TestTransferToAGroupOnTheOtherServer(t *testing.T) {
	scenario(t, Options{Edit: withAcmeDesk, Phones: phones("srv11", "3999", answers,
		"srv12", "77731201", busy, "srv12", "77731202", answers)}, func(t *testing.T, e *Env) {
		const caller = "+4915112345678"
		in := e.pstnCall(t, "srv11", "+4930100100", caller)
		bridged(t, in)
		e.waitCount(t, "server", "srv11", 1)
		if err := e.Lab.BlindTransfer("srv11", in.UUID(), "128008031"); err != nil {
			t.Fatal(err)
		}
		e.waitAnsweredOn(t, "srv11", "77731202")
		e.waitAnsweredOn(t, "srv12", "77731202")
		if rs := e.Lab.Rings("srv12", "77731201"); len(rs) != 1 {
			t.Errorf("77731201 (busy) rang %d times, want once", len(rs))
		}
		rs := e.Lab.Rings("srv12", "77731202")
		if len(rs) != 1 || rs[0].Caller.Number != caller {
			t.Fatalf("77731202 rings: %+v, want one showing the original caller", rs)
		}
		e.waitCount(t, "server", "srv11", 2)
		e.waitCount(t, "server", "srv12", 1)
		hangup(t, in)
		first := e.record(t, of(in))
		rec := e.record(t, func(r *controller.Record) bool { return r.Transfer == "blind" })
		if got := attempts(rec); got != "77731201:busy 77731202:answered" || rec.Route != "hunt" || rec.Caller != "3999" ||
			rec.Org != "acme" || rec.Dialed != "128008031" || rec.CallerID != caller {
			t.Errorf("transfer record: attempts %s route %s caller %s org %s dialed %s caller id %s; want 77731201:busy 77731202:answered, hunt, 3999, acme, 128008031, %s",
				got, rec.Route, rec.Caller, rec.Org, rec.Dialed, rec.CallerID, caller)
		}
		if first.ID == "" || rec.TransferFrom != first.ID || rec.TransferBy != "3999" {
			t.Errorf("transfer record: from %q by %q; want from %q (the first record) by 3999", rec.TransferFrom, rec.TransferBy, first.ID)
		}
		member := e.record(t, func(r *controller.Record) bool { return r.Server == "srv12" && r.Dialed == "77731202T" })
		if member.Origin != "trunk" || member.Org != "acme" || member.CallerID != caller || member.Answered != "77731202" {
			t.Errorf("server 12's record: origin %s org %s caller id %s answered %s; want trunk, acme, %s, 77731202",
				member.Origin, member.Org, member.CallerID, member.Answered, caller)
		}
		e.waitCount(t, "server", "srv11", 0)
		e.waitCount(t, "server", "srv12", 0)
	})
}

// legKinds are the kinds of the legs on server, sorted, space-separated.
func legKinds(legs []accounting.Leg, server string) string {
	var out []string
	for _, l := range legs {
		if l.Server == server {
			out = append(out, l.Kind.String())
		}
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// SPEC §4: the media server itself moves an external call on (FreeSWITCH's
// uuid_transfer, an Asterisk redirect into its dialplan, as an IVR does):
// nobody transferred it, so it routes in the org that received the DID, not
// as a new DID; 2099 sees the original caller, and it counts 2 on server 11
// and 1 on server 12 (§5).
func TestIVRTransferRoutesInTheCallsOrg(t *testing.T) {
	scenario(t, Options{Phones: phones("srv11", "3999", answers, "srv12", "2099", answers)}, func(t *testing.T, e *Env) {
		const caller = "+4915112345678"
		in := e.pstnCall(t, "srv11", "+4930100100", caller)
		bridged(t, in)
		e.waitCount(t, "server", "srv11", 1)
		// The context of the server's dialplan that hands calls back to
		// callctl.
		context := "public"
		if e.Fleet.Kinds["srv11"] == provision.KindAsterisk {
			context = "from-pstn"
		}
		if err := e.Lab.Transfer("srv11", in.UUID(), "122099", context); err != nil {
			t.Fatal(err)
		}
		e.waitAnsweredOn(t, "srv11", "2099")
		rs := e.Lab.Rings("srv12", "2099")
		if len(rs) != 1 || rs[0].Caller.Number != caller {
			t.Fatalf("2099 rings: %+v, want one showing the original caller", rs)
		}
		e.waitCount(t, "server", "srv11", 2)
		e.waitCount(t, "server", "srv12", 1)
		hangup(t, in)
		first := e.record(t, of(in))
		rec := e.record(t, func(r *controller.Record) bool { return r.Transfer == "ivr" })
		if rec.Route != "inter-server" || rec.Org != "acme" || rec.CallerID != caller || rec.Answered != "2099" || len(rec.Legs) != 2 {
			t.Errorf("transfer record: route %s org %s caller id %s answered %s legs %+v", rec.Route, rec.Org, rec.CallerID, rec.Answered, rec.Legs)
		}
		if rec.TransferFrom != first.ID || rec.TransferBy != "" {
			t.Errorf("transfer record: from %q by %q; want from %q (the DID's call), by nobody", rec.TransferFrom, rec.TransferBy, first.ID)
		}
		e.waitCount(t, "server", "srv11", 0)
		e.waitCount(t, "server", "srv12", 0)
	})
}

// SPEC §4: a call handed back to the media server's own dialplan (here
// parked with *98) stays callctl's: its PSTN leg stays counted while it is
// parked, the live calls show it in the dialplan, and it is released when
// its channel ends. FreeSWITCH transfers the caller's own channel; Asterisk
// (core handling) parks a Local channel in the phone's place, a call of its
// own dialed *98 by 3999, and the PSTN leg stays the first call's until the
// caller's channel ends (as on the real servers, realHandOffKeepsCounting).
func TestHandOffKeepsCounting(t *testing.T) {
	scenario(t, Options{Edit: WithParking, Phones: phones("srv11", "3999", answers)}, func(t *testing.T, e *Env) {
		in := e.pstnCall(t, "srv11", "+4930100100", "+4915112345678")
		bridged(t, in)
		e.waitCount(t, "server", "srv11", 1)
		// 3999 parks the caller: a blind transfer to *98.
		if err := e.Lab.BlindTransfer("srv11", in.UUID(), ParkFeature); err != nil {
			t.Fatal(err)
		}
		onAsterisk := e.Fleet.Kinds["srv11"] == provision.KindAsterisk
		handedOff := func() bool {
			for _, v := range e.Node.Engine().Calls() {
				parked := v.ID == in.UUID()
				if onAsterisk {
					parked = v.ID != in.UUID() && v.Server == "srv11" && v.Caller == "3999"
				}
				if parked && v.Dialed == ParkFeature && v.HandedOff {
					return true
				}
			}
			return false
		}
		deadline := time.Now().Add(10 * time.Second)
		for !handedOff() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if !handedOff() {
			t.Fatalf("the parked call is not among the live calls as handed off: %+v", e.Node.Engine().Calls())
		}
		// Parked, and still counted: the caller's PSTN leg crosses the edge.
		e.waitCount(t, "server", "srv11", 1)
		e.waitCount(t, "org", "acme", 1)
		for _, ev := range in.Events() {
			if ev.Kind == callmodel.ChannelHangup {
				t.Fatal("the caller's call ended when it was parked")
			}
		}
		hangup(t, in)
		e.waitCount(t, "server", "srv11", 0)
		rec := e.record(t, func(r *controller.Record) bool { return r.Dialed == ParkFeature })
		legs := rec.Legs
		if onAsterisk {
			if len(legs) != 0 {
				t.Errorf("record of the parked Local channel: legs %+v, want none (the PSTN leg is the first call's)", legs)
			}
			legs = e.record(t, of(in)).Legs
		}
		if rec.Route != "feature" || !rec.HandedOff || rec.Transfer != "blind" || rec.TransferBy != "3999" || len(legs) != 1 {
			t.Errorf("record of the parked call: route %s handed off %v transfer %q by %q legs %+v; want feature, handed off, blind by 3999, the PSTN leg",
				rec.Route, rec.HandedOff, rec.Transfer, rec.TransferBy, legs)
		}
	})
}

// The media server drops every control connection mid-call: nothing is
// leaked (counts, calls), and callctl takes new calls once it reconnected.
func TestMediaServerDropsMidCall(t *testing.T) {
	scenario(t, Options{Phones: phones("srv11", "3998", answers)}, func(t *testing.T, e *Env) {
		c := e.call(t, "srv11", "3999", "030123456")
		bridged(t, c)
		e.waitCount(t, "server", "srv11", 1)
		if _, err := e.Lab.DropConnections("srv11"); err != nil {
			t.Fatal(err)
		}
		if e.Fleet.Kinds["srv11"] == provision.KindFreeSWITCH {
			// FreeSWITCH ends a call whose socket is gone (no other node in
			// its dialplan here).
			ended(t, c)
		} else {
			// Asterisk keeps the call; callctl reconnects and reconciles.
			time.Sleep(300 * time.Millisecond)
			hangup(t, c)
		}
		e.waitCount(t, "server", "srv11", 0)
		rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := e.Node.Ready(rctx, e.asteriskServers()...); err != nil {
			t.Fatal(err)
		}
		c2 := e.call(t, "srv11", "3999", "3998")
		bridged(t, c2)
		hangup(t, c2)
		if rec := e.record(t, of(c2)); rec.Answered != "3998" {
			t.Errorf("call after the drop: %+v", rec)
		}
	})
}
