package integration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
)

// Forwarding (SPEC §4) on every fleet: the lab's 3997 on srv11 forwards to
// the night desk 1101 on srv12 (121101) on no answer and on busy.

// editUser changes user ext of org in a plan.
func editUser(d *provision.Document, org, ext string, f func(*provision.User)) {
	for i := range d.Orgs {
		if d.Orgs[i].ID != org {
			continue
		}
		for j := range d.Orgs[i].Users {
			if d.Orgs[i].Users[j].Extension == ext {
				f(&d.Orgs[i].Users[j])
			}
		}
	}
}

// quickForward makes 3997's no-answer forward wait 1 s.
func quickForward(d *provision.Document) {
	editUser(d, "acme", "3997", func(u *provision.User) { u.Forward.After = provision.Duration(time.Second) })
}

// forwarded checks the attempts of a forwarded call's record and that
// its JSON carries the forward.
func forwarded(t *testing.T, rec controller.Record, want, kind, by string) {
	t.Helper()
	if got := attempts(rec); got != want {
		t.Errorf("record attempts %s, want %s", got, want)
	}
	last := rec.Attempts[len(rec.Attempts)-1]
	if last.Forward != kind || last.ForwardedBy != by || rec.Attempts[0].Forward != "" {
		t.Errorf("forward in the record: first %q, last %q by %q; want %s by %s", rec.Attempts[0].Forward, last.Forward, last.ForwardedBy, kind, by)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"forward":"`+kind+`","forwarded_by":"`+by+`"`) {
		t.Errorf("record JSON lacks the forward: %s", b)
	}
}

// A PSTN caller to 3997, who does not answer within her 1 s: the night
// desk on the other server rings showing the caller's number, and the
// call counts like a transfer, 2 on srv11 and 1 on srv12.
func TestNoAnswerForwardAcrossServers(t *testing.T) {
	opt := Options{Phones: phones("srv11", "3997", ringing, "srv12", "1101", answers), Edit: quickForward}
	scenario(t, opt, func(t *testing.T, e *Env) {
		c := e.pstnCall(t, "srv11", "+4930100197", "+4915112345678")
		bridged(t, c)
		if rs := e.Lab.Rings("srv12", "1101"); len(rs) != 1 || rs[0].Caller.Number != "+4915112345678" {
			t.Fatalf("the night desk rang %+v, want once showing +4915112345678", rs)
		}
		if rs := e.Lab.Rings("srv11", "3997"); len(rs) != 1 || !rs[0].Ended() {
			t.Errorf("3997 rang %+v, want once, cancelled", rs)
		}
		e.waitCount(t, "server", "srv11", 2)
		e.waitCount(t, "server", "srv12", 1)
		hangup(t, c)
		rec := e.record(t, of(c))
		forwarded(t, rec, "3997:no-answer 1101:answered", "forward-noanswer", "3997")
		if r := rec.Attempts[0].Ring; r < 900*time.Millisecond || r > 3*time.Second {
			t.Errorf("3997 rang %s before the forward, want her 1 s", r)
		}
		if rec.Answered != "1101" || len(rec.Legs) != 2 {
			t.Errorf("record: answered by %q, counted legs %+v", rec.Answered, rec.Legs)
		}
	})
}

// A user who is not registered is forwarded at once, and an internal
// caller is shown on the other server as prefix + extension with the name.
func TestUnregisteredUserIsForwarded(t *testing.T) {
	opt := Options{Phones: phones("srv11", "3997", unregister, "srv12", "1101", answers)}
	scenario(t, opt, func(t *testing.T, e *Env) {
		c := e.call(t, "srv11", "3999", "3997")
		bridged(t, c)
		rs := e.Lab.Rings("srv12", "1101")
		if len(rs) != 1 || rs[0].Caller.Number != "113999" || rs[0].Caller.Name != "Aiko Sato" {
			t.Fatalf("the night desk rang %+v, want once showing 113999 Aiko Sato", rs)
		}
		if n := len(e.Lab.Rings("srv11", "3997")); n != 0 {
			t.Errorf("the unregistered 3997 rang %d times", n)
		}
		e.waitCount(t, "server", "srv11", 1)
		e.waitCount(t, "server", "srv12", 1)
		hangup(t, c)
		forwarded(t, e.record(t, of(c)), "3997:not-registered 1101:answered", "forward-noanswer", "3997")
	})
}

// Busy: 3997's phone is busy, the night desk takes the call.
func TestBusyForward(t *testing.T) {
	opt := Options{Phones: phones("srv11", "3997", busy, "srv12", "1101", answers)}
	scenario(t, opt, func(t *testing.T, e *Env) {
		c := e.call(t, "srv11", "3999", "3997")
		bridged(t, c)
		if rs := e.Lab.Rings("srv12", "1101"); len(rs) != 1 || rs[0].Caller.Number != "113999" {
			t.Fatalf("the night desk rang %+v, want once showing 113999", rs)
		}
		hangup(t, c)
		forwarded(t, e.record(t, of(c)), "3997:busy 1101:answered", "forward-busy", "3997")
	})
}

// The caller hangs up while the forward target rings: its leg is
// cancelled at once and nothing stays counted.
func TestCallerLeavesDuringForward(t *testing.T) {
	opt := Options{Phones: phones("srv11", "3997", busy, "srv12", "1101", ringing)}
	scenario(t, opt, func(t *testing.T, e *Env) {
		c := e.pstnCall(t, "srv11", "+4930100197", "+4915112345678")
		deadline := time.Now().Add(10 * time.Second)
		for len(e.Lab.Rings("srv12", "1101")) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		e.waitCount(t, "server", "srv11", 2)
		hung := time.Now()
		hangup(t, c)
		rec := e.record(t, of(c))
		forwarded(t, rec, "3997:busy 1101:cancelled", "forward-busy", "3997")
		// The desk's ring ends over the trunk, after the caller's record.
		e.waitIdle(t)
		rs := e.Lab.Rings("srv12", "1101")
		if len(rs) != 1 || !rs[0].Ended() || rs[0].End.Sub(hung) > time.Second {
			t.Errorf("the night desk's ring was not cancelled at once: %+v", rs)
		}
		e.waitCount(t, "server", "srv11", 0)
		e.waitCount(t, "server", "srv12", 0)
	})
}

// limitForward sets a server's limit and its limit forward.
func limitForward(server string, limit int, org, target string) func(*provision.Document) {
	return func(d *provision.Document) {
		for i := range d.Servers {
			if d.Servers[i].Name == server {
				d.Servers[i].ChannelLimit = limit
				d.Servers[i].LimitForward = &provision.LimitForward{Org: org, Target: target}
			}
		}
	}
}

// srv11 at its limit of 1: 3997's call to 122099 would need a trunk leg
// there; instead of 503 it goes to srv11's limit forward, 3998 on the same
// server, which shows 3997. The call up is untouched.
func TestLimitForwardInsteadOf503(t *testing.T) {
	opt := Options{Phones: phones("srv11", "3998", answers), Edit: limitForward("srv11", 1, "acme", "3998")}
	scenario(t, opt, func(t *testing.T, e *Env) {
		first := e.call(t, "srv11", "3999", "030111111")
		bridged(t, first)
		e.waitCount(t, "server", "srv11", 1)
		c := e.call(t, "srv11", "3997", "122099")
		bridged(t, c)
		if rs := e.Lab.Rings("srv11", "3998"); len(rs) != 1 || rs[0].Caller.Number != "3997" {
			t.Fatalf("3998 rang %+v, want once showing 3997", rs)
		}
		if n := len(e.Lab.Rings("srv12", "2099")); n != 0 {
			t.Errorf("2099 rang %d times past srv11's limit", n)
		}
		e.waitCount(t, "server", "srv11", 1)
		hangup(t, c)
		rec := e.record(t, of(c))
		forwarded(t, rec, "2099:congested 3998:answered", "forward-limit", "server srv11")
		if !strings.Contains(rec.Attempts[0].Cause, "server srv11 is at its channel limit of 1") {
			t.Errorf("the refused attempt says %q, not which limit", rec.Attempts[0].Cause)
		}
		if !first.Answered() {
			t.Error("the first call was disturbed")
		}
		hangup(t, first)
	})
}

// The far server at its limit refuses the trunk call (503); the node that
// sent it forwards to srv12's limit forward, 3998 on srv11.
func TestFarServerLimitForward(t *testing.T) {
	opt := Options{Phones: phones("srv12", "2099", answers, "srv11", "3998", answers), Edit: limitForward("srv12", 1, "acme", "3998")}
	scenario(t, opt, func(t *testing.T, e *Env) {
		first := e.call(t, "srv11", "3999", "122099")
		bridged(t, first)
		e.waitCount(t, "server", "srv12", 1)
		c := e.call(t, "srv11", "3997", "122099")
		bridged(t, c)
		if rs := e.Lab.Rings("srv11", "3998"); len(rs) != 1 || rs[0].Caller.Number != "3997" {
			t.Fatalf("3998 rang %+v, want once showing 3997", rs)
		}
		e.waitCount(t, "server", "srv12", 1)
		e.waitCount(t, "server", "srv11", 1)
		hangup(t, c)
		forwarded(t, e.record(t, of(c)), "2099:congested 3998:answered", "forward-limit", "server srv12")
		hangup(t, first)
	})
}

// 3997 and the night desk forward to each other on busy: with max_forwards
// 2 the call is forwarded twice, then the caller gets busy and the record
// says why.
func TestMaxForwardsEndsALoop(t *testing.T) {
	opt := Options{Phones: phones("srv11", "3997", busy, "srv12", "1101", busy), Edit: func(d *provision.Document) {
		d.Settings.MaxForwards = 2
		editUser(d, "acme", "1101", func(u *provision.User) { u.Forward = &provision.Forward{Busy: "113997"} })
	}}
	scenario(t, opt, func(t *testing.T, e *Env) {
		c := e.call(t, "srv11", "3999", "3997")
		res := ended(t, c)
		if res.Answered || res.SIPStatus != 486 {
			t.Errorf("a forward loop: answered %v, SIP %d; want busy (486)", res.Answered, res.SIPStatus)
		}
		rec := e.record(t, of(c))
		forwarded(t, rec, "3997:busy 1101:busy 3997:busy", "forward-busy", "1101")
		if !strings.Contains(rec.Reason, "max_forwards 2") || rec.HangupCause != "USER_BUSY" {
			t.Errorf("record: reason %q cause %s", rec.Reason, rec.HangupCause)
		}
	})
}
