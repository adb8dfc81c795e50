package integration

import (
	"strings"
	"testing"

	"github.com/callctl/callctl/controller/provision"
)

// Limit forwards where the leg over the limit is the call's arrival, or a
// group member's, and a group's fallback as a forward (SPEC §3, §4, §5).

// editOrg changes org id of a plan.
func editOrg(d *provision.Document, id string, f func(*provision.Org)) {
	for i := range d.Orgs {
		if d.Orgs[i].ID == id {
			f(&d.Orgs[i])
		}
	}
}

// srv11 at its limit of 1: a PSTN caller to 3997's number arrives over the
// limit. Its leg is on srv11 already: it is counted past the limit (srv11
// counts 2 while it lasts) and the call goes to srv11's limit forward,
// 3998 on the same server, which shows the PSTN caller; 3997 never rings.
func TestLimitForwardAtArrival(t *testing.T) {
	opt := Options{Phones: phones("srv11", "3997", answers, "srv11", "3998", answers), Edit: limitForward("srv11", 1, "acme", "3998")}
	scenario(t, opt, func(t *testing.T, e *Env) {
		first := e.call(t, "srv11", "3999", "030111111")
		bridged(t, first)
		e.waitCount(t, "server", "srv11", 1)
		c := e.pstnCall(t, "srv11", "+4930100197", "+4915112345678")
		bridged(t, c)
		if rs := e.Lab.Rings("srv11", "3998"); len(rs) != 1 || rs[0].Caller.Number != "+4915112345678" {
			t.Fatalf("3998 rang %+v, want once showing +4915112345678", rs)
		}
		if n := len(e.Lab.Rings("srv11", "3997")); n != 0 {
			t.Errorf("3997 rang %d times for a call over srv11's limit", n)
		}
		e.waitCount(t, "server", "srv11", 2)
		e.waitCount(t, "server", "srv12", 0)
		hangup(t, c)
		rec := e.record(t, of(c))
		forwarded(t, rec, "3997:congested 3998:answered", "forward-limit", "server srv11")
		if want := "leg pstn-in on srv11: server srv11 is at its channel limit of 1"; rec.Attempts[0].Cause != want {
			t.Errorf("the refused attempt says %q, want %q", rec.Attempts[0].Cause, want)
		}
		if rec.Answered != "3998" || len(rec.Legs) != 1 || rec.Legs[0].Kind.String() != "pstn-in" || rec.HangupCause == "NORMAL_CIRCUIT_CONGESTION" {
			t.Errorf("record: answered by %q, legs %+v, cause %s", rec.Answered, rec.Legs, rec.HangupCause)
		}
		e.waitCount(t, "server", "srv11", 1)
		if !first.Answered() {
			t.Error("the first call was disturbed")
		}
		hangup(t, first)
	})
}

// acme at its limit of 1 with a limit forward to the night desk on srv12:
// the arriving PSTN leg is counted past acme's limit and forwarded, but
// the trunk leg to srv12 would be acme's too and the same limit refuses
// it. The forward is not forwarded again by its own limit: the caller
// gets 503 and the record says which limit, nothing rang.
func TestLimitForwardRefusedBySameLimit(t *testing.T) {
	opt := Options{Phones: phones("srv12", "1101", answers), Edit: func(d *provision.Document) {
		editOrg(d, "acme", func(o *provision.Org) {
			o.ChannelLimit = 1
			o.LimitForward = &provision.LimitForward{Target: "121101"}
		})
	}}
	scenario(t, opt, func(t *testing.T, e *Env) {
		first := e.call(t, "srv11", "3999", "030111111")
		bridged(t, first)
		e.waitCount(t, "org", "acme", 1)
		c := e.pstnCall(t, "srv11", "+4930100197", "+4915112345678")
		if res := ended(t, c); res.Answered || res.SIPStatus != 503 {
			t.Errorf("answered %v SIP %d, want 503", res.Answered, res.SIPStatus)
		}
		if n := len(e.Lab.Rings("srv12", "1101")); n != 0 {
			t.Errorf("the night desk rang %d times past acme's limit", n)
		}
		rec := e.record(t, of(c))
		forwarded(t, rec, "3997:congested 1101:congested", "forward-limit", "org acme")
		if rec.HangupCause != "NORMAL_CIRCUIT_CONGESTION" || !strings.Contains(rec.Reason, "org acme is at its channel limit of 1") {
			t.Errorf("record: cause %s, reason %q", rec.HangupCause, rec.Reason)
		}
		e.waitCount(t, "org", "acme", 1)
		hangup(t, first)
	})
}

// A PSTN caller to group 1 (+4930200100) arriving at srv11's limit: the
// hunt is forwarded like any call, to srv11's limit forward 3998.
func TestHuntLimitForwardAtArrival(t *testing.T) {
	opt := Options{Phones: phones("srv11", "77721401", answers, "srv11", "3998", answers), Edit: limitForward("srv11", 1, "acme", "3998")}
	scenario(t, opt, func(t *testing.T, e *Env) {
		first := e.call(t, "srv11", "3999", "030111111")
		bridged(t, first)
		e.waitCount(t, "server", "srv11", 1)
		c := e.pstnCall(t, "srv11", "+4930200100", "+4915112345678")
		bridged(t, c)
		if rs := e.Lab.Rings("srv11", "3998"); len(rs) != 1 || rs[0].Caller.Number != "+4915112345678" {
			t.Fatalf("3998 rang %+v, want once showing +4915112345678", rs)
		}
		if n := len(e.Lab.Rings("srv11", "77721401")); n != 0 {
			t.Errorf("the group rang %d times over srv11's limit", n)
		}
		e.waitCount(t, "server", "srv11", 2)
		hangup(t, c)
		forwarded(t, e.record(t, of(c)), "77721401:congested 3998:answered", "forward-limit", "server srv11")
		e.waitCount(t, "server", "srv11", 1)
		hangup(t, first)
	})
}

// A group member on the other server needs a trunk leg on srv11, which is
// at its limit: the hunt leaves its group there for srv11's limit
// forward, 3998, which shows the group's caller; the members after it do
// not ring, and srv11 still counts 1.
func TestHuntMemberLimitForward(t *testing.T) {
	opt := Options{Phones: phones("srv11", "77721401", busy, "srv12", "77721402", answers, "srv11", "77721403", answers, "srv11", "3998", answers),
		Edit: func(d *provision.Document) {
			limitForward("srv11", 1, "acme", "3998")(d)
			editOrg(d, "grp1", func(o *provision.Org) {
				for i := range o.SIPNumbers {
					if o.SIPNumbers[i].Number == "77721402" {
						o.SIPNumbers[i].Server = "srv12"
					}
				}
			})
		}}
	scenario(t, opt, func(t *testing.T, e *Env) {
		first := e.call(t, "srv11", "3999", "030111111")
		bridged(t, first)
		e.waitCount(t, "server", "srv11", 1)
		c := e.call(t, "srv11", "1100", "8008001")
		bridged(t, c)
		if rs := e.Lab.Rings("srv11", "3998"); len(rs) != 1 || rs[0].Caller.Number != "1100" {
			t.Fatalf("3998 rang %+v, want once showing 1100", rs)
		}
		for server, ext := range map[string]string{"srv12": "77721402", "srv11": "77721403"} {
			if n := len(e.Lab.Rings(server, ext)); n != 0 {
				t.Errorf("%s rang %d times after the hunt left at the limit", ext, n)
			}
		}
		e.waitCount(t, "server", "srv11", 1)
		e.waitCount(t, "server", "srv12", 0)
		hangup(t, c)
		rec := e.record(t, of(c))
		forwarded(t, rec, "77721401:busy 77721402:congested 3998:answered", "forward-limit", "server srv11")
		if !strings.Contains(rec.Attempts[1].Cause, "server srv11 is at its channel limit of 1") {
			t.Errorf("the refused member says %q, not which limit", rec.Attempts[1].Cause)
		}
		hangup(t, first)
	})
}

// Group 4's fallback is its desk 1401, whose busy forward is the group's
// own service number: a loop that max_forwards ends, the fallback counting
// as a forward. With max_forwards 2: the member, the fallback (1), the
// desk's busy forward back to the group (2), the member again; the next
// fallback would be a third forward, so the caller gets busy.
func TestFallbackCountsTowardsMaxForwards(t *testing.T) {
	opt := Options{Phones: phones("srv11", "77721401", busy, "srv11", "1401", busy), Edit: func(d *provision.Document) {
		d.Settings.MaxForwards = 2
		editOrg(d, "grp4", func(o *provision.Org) {
			o.Users = append(o.Users, provision.User{Extension: "1401", Name: "Desk", Server: "srv11",
				Forward: &provision.Forward{Busy: "8008001"}})
			o.Hunt.Fallback = "1401"
		})
	}}
	scenario(t, opt, func(t *testing.T, e *Env) {
		c := e.call(t, "srv11", "1400", "8008001")
		if res := ended(t, c); res.Answered || res.SIPStatus != 486 {
			t.Errorf("answered %v SIP %d; want busy (486)", res.Answered, res.SIPStatus)
		}
		rec := e.record(t, of(c))
		forwarded(t, rec, "77721401:busy 1401:busy 77721401:busy", "forward-busy", "1401")
		if a := rec.Attempts[1]; a.Forward != "fallback" || a.ForwardedBy != "org grp4" {
			t.Errorf("the fallback's attempt says %q by %q, want fallback by org grp4", a.Forward, a.ForwardedBy)
		}
		if !strings.Contains(rec.Reason, "max_forwards 2") || rec.HangupCause != "USER_BUSY" {
			t.Errorf("record: reason %q cause %s", rec.Reason, rec.HangupCause)
		}
		if n := len(e.Lab.Rings("srv11", "1401")); n != 1 {
			t.Errorf("the desk rang %d times, want once", n)
		}
	})
}

// The far server refuses a group member's trunk call at its limit (503):
// the node running the hunt leaves the group for srv12's limit forward,
// 3998 on srv11, as it does for a single target.
func TestHuntMemberFarLimitForward(t *testing.T) {
	opt := Options{Phones: phones("srv11", "77721401", busy, "srv12", "77721402", answers, "srv12", "2099", answers, "srv11", "3998", answers),
		Edit: func(d *provision.Document) {
			limitForward("srv12", 1, "acme", "3998")(d)
			editOrg(d, "grp1", func(o *provision.Org) {
				for i := range o.SIPNumbers {
					if o.SIPNumbers[i].Number == "77721402" {
						o.SIPNumbers[i].Server = "srv12"
					}
				}
			})
		}}
	scenario(t, opt, func(t *testing.T, e *Env) {
		first := e.call(t, "srv11", "3999", "122099")
		bridged(t, first)
		e.waitCount(t, "server", "srv12", 1)
		c := e.call(t, "srv11", "1100", "8008001")
		bridged(t, c)
		if rs := e.Lab.Rings("srv11", "3998"); len(rs) != 1 || rs[0].Caller.Number != "1100" {
			t.Fatalf("3998 rang %+v, want once showing 1100", rs)
		}
		if n := len(e.Lab.Rings("srv12", "77721402")); n != 0 {
			t.Errorf("77721402 rang %d times past srv12's limit", n)
		}
		e.waitCount(t, "server", "srv12", 1)
		hangup(t, c)
		forwarded(t, e.record(t, of(c)), "77721401:busy 77721402:congested 3998:answered", "forward-limit", "server srv12")
		hangup(t, first)
	})
}
