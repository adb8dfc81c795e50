package integration

import (
	"strings"
	"testing"

	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/integration/sipp"
)

// Forwarding on real servers (SPEC §4), with real SIP callers and phones:
// what the far phone displays, the counts while up and after, the record.

func init() {
	realScenarios = append(realScenarios,
		realScenario{name: "NoAnswerForward", two: true, sip: true,
			eps: Endpoints{"acme": {"3997": PhoneRings, "1101": PhoneAnswers}}, run: realNoAnswerForward},
		realScenario{name: "BusyForward", two: true, sip: true,
			eps: Endpoints{"acme": {"3997": PhoneBusy, "1101": PhoneAnswers}}, run: realBusyForward},
		realScenario{name: "LimitForward", sip: true, eps: Endpoints{"acme": {"3999": PhoneAnswers, "3998": PhoneAnswers}},
			edit: limitForward("srv11", 1, "acme", "3998"), run: realLimitForward},
		realScenario{name: "LimitForwardAtArrival", two: true, sip: true,
			eps:  Endpoints{"acme": {"2099": PhoneAnswers, "1101": PhoneAnswers}},
			edit: limitForward("srv12", 1, "acme", "1101"), run: realLimitForwardAtArrival},
		realScenario{name: "HuntLimitForwardAtArrival", sip: true, eps: Endpoints{"acme": {"3998": PhoneAnswers}, "grp1": {"77721401": PhoneAnswers}},
			edit: limitForward("srv11", 1, "acme", "3998"), run: realHuntLimitForwardAtArrival},
		realScenario{name: "OrgLimitForwardAtArrival", two: true, sip: true, eps: Endpoints{"acme": {"1101": PhoneAnswers}},
			edit: orgLimitForward("1101"), run: realOrgLimitForwardAtArrival},
		realScenario{name: "LimitForwardRefusedBySameLimit", two: true, sip: true, eps: Endpoints{"acme": {"1101": PhoneAnswers}},
			edit: orgLimitForward("121101"), run: realLimitForwardRefusedBySameLimit},
		realScenario{name: "GroupFallbackForPSTNCaller", two: true, sip: true, eps: Endpoints{
			"grp1": {"77721401": Busy, "77721402": Busy, "77721403": Busy, "77721404": Busy, "77721405": Busy, "77721406": Busy},
			"acme": {"1101": PhoneAnswers}}, edit: grp1FallbackToNightDesk, run: realGroupFallback},
	)
}

// A PSTN caller to 3997 (DID +4930100197), whose phone rings and is not
// answered within her 4 s: the night desk 1101 on srv12 rings showing the
// caller's number; 2 counted on srv11, 1 on srv12.
func realNoAnswerForward(t *testing.T, e *RealEnv) {
	cl := e.sipStart(t, "srv11", sipp.Call{Port: e.pstnCaller(), From: "+4915112345678", Dialed: "+4930100197"})
	e.sipAnswered(t, "srv11", "+4915112345678", "+4930100197", cl)
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "1101"), "+4915112345678")
	if rs := e.SIPPhones.RingsOf(PhoneNumber(PhoneRings, "3997")); len(rs) != 1 {
		t.Errorf("3997's phone rang %d times, want once", len(rs))
	}
	e.waitCount(t, "server", "srv11", 2)
	e.waitCount(t, "server", "srv12", 1)
	r := e.hangupSIP(t, "srv11", "+4915112345678", cl)
	rec := e.sipRecord(t, "srv11", "+4915112345678", "+4930100197", r)
	forwarded(t, rec, "3997:no-answer 1101:answered", "forward-noanswer", "3997")
	if a := rec.Attempts[0].Ring; a < 3900e6 {
		t.Errorf("3997 rang %s before the forward, want her 4 s", a)
	}
	e.waitCount(t, "server", "srv11", 0)
	e.waitCount(t, "server", "srv12", 0)
}

// 3999 calls 3997, whose phone is busy: the night desk on srv12 rings
// showing 113999 and Aiko Sato.
func realBusyForward(t *testing.T, e *RealEnv) {
	cl := e.sipStart(t, "srv11", sipp.Call{From: "3999", FromName: "Aiko Sato", Dialed: "3997"})
	e.sipAnswered(t, "srv11", "3999", "3997", cl)
	ring := e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "1101"), "113999")
	if ring.From.Name != "Aiko Sato" {
		t.Errorf("the night desk shows the name %q, want Aiko Sato", ring.From.Name)
	}
	e.waitCount(t, "server", "srv11", 1)
	e.waitCount(t, "server", "srv12", 1)
	r := e.hangupSIP(t, "srv11", "3999", cl)
	forwarded(t, e.sipRecord(t, "srv11", "3999", "3997", r), "3997:busy 1101:answered", "forward-busy", "3997")
	e.waitCount(t, "server", "srv11", 0)
	e.waitCount(t, "server", "srv12", 0)
}

// srv11 at its limit of 1: 3997's external call would need a second PSTN
// leg; instead of 503 it reaches srv11's limit forward, 3998, showing 3997.
func realLimitForward(t *testing.T, e *RealEnv) {
	first := e.sipStart(t, "srv11", sipp.Call{From: "3999", Dialed: "030123456"})
	e.sipAnswered(t, "srv11", "3999", "030123456", first)
	e.waitCount(t, "server", "srv11", 1)
	cl := e.sipStart(t, "srv11", sipp.Call{From: "3997", Dialed: "030999999"})
	e.sipAnswered(t, "srv11", "3997", "030999999", cl)
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "3998"), "3997")
	if e.PSTN != nil && len(e.PSTN.RingsOf("+4930999999")) != 0 {
		t.Errorf("the call over the limit reached the PSTN")
	}
	e.waitCount(t, "server", "srv11", 1)
	r := e.hangupSIP(t, "srv11", "3997", cl)
	forwarded(t, e.sipRecord(t, "srv11", "3997", "030999999", r), "+4930999999:congested 3998:answered", "forward-limit", "server srv11")
	if first.Ended() {
		t.Fatal("the first call ended")
	}
	e.hangupSIP(t, "srv11", "3999", first)
	e.waitCount(t, "server", "srv11", 0)
}

// srv12 at its limit of 1 (3999's call to 2099 holds it): a PSTN caller to
// 2099's number arrives at srv12 over the limit. The arriving leg is on
// srv12 already, so it is counted past the limit (srv12 counts 2) and the
// call goes to srv12's limit forward, the night desk 1101 on srv12, which
// shows the PSTN caller; 2099's phone rings only for the first call.
func realLimitForwardAtArrival(t *testing.T, e *RealEnv) {
	first := e.sipStart(t, "srv11", sipp.Call{From: "3999", FromName: "Aiko Sato", Dialed: "122099"})
	e.sipAnswered(t, "srv11", "3999", "122099", first)
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "2099"), "113999")
	e.waitCount(t, "server", "srv12", 1)
	cl := e.sipStart(t, "srv12", sipp.Call{Port: e.pstnCaller(), From: "+4915112345678", Dialed: "+442071234567"})
	e.sipAnswered(t, "srv12", "+4915112345678", "+442071234567", cl)
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "1101"), "+4915112345678")
	if rs := e.SIPPhones.RingsOf(PhoneNumber(PhoneAnswers, "2099")); len(rs) != 1 {
		t.Errorf("2099's phone rang %d times, want once (the first call)", len(rs))
	}
	e.waitCount(t, "server", "srv12", 2)
	e.waitCount(t, "server", "srv11", 1)
	r := e.hangupSIP(t, "srv12", "+4915112345678", cl)
	rec := e.sipRecord(t, "srv12", "+4915112345678", "+442071234567", r)
	forwarded(t, rec, "2099:congested 1101:answered", "forward-limit", "server srv12")
	if want := "leg pstn-in on srv12: server srv12 is at its channel limit of 1"; rec.Attempts[0].Cause != want {
		t.Errorf("the refused attempt says %q, want %q", rec.Attempts[0].Cause, want)
	}
	e.waitCount(t, "server", "srv12", 1)
	if first.Ended() {
		t.Fatal("the first call ended")
	}
	e.hangupSIP(t, "srv11", "3999", first)
	e.waitCount(t, "server", "srv11", 0)
	e.waitCount(t, "server", "srv12", 0)
}

// srv11 at its limit of 1: a PSTN caller to group 1 (+4930200100) arrives
// over it; the hunt is forwarded like any call, to srv11's limit forward
// 3998, which shows the PSTN caller; the group's first member never rings.
func realHuntLimitForwardAtArrival(t *testing.T, e *RealEnv) {
	first := e.sipStart(t, "srv11", sipp.Call{From: "3999", Dialed: "030123456"})
	e.sipAnswered(t, "srv11", "3999", "030123456", first)
	e.waitCount(t, "server", "srv11", 1)
	cl := e.sipStart(t, "srv11", sipp.Call{Port: e.pstnCaller(), From: "+4915112345678", Dialed: "+4930200100"})
	e.sipAnswered(t, "srv11", "+4915112345678", "+4930200100", cl)
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "3998"), "+4915112345678")
	if rs := e.SIPPhones.RingsOf(PhoneNumber(PhoneAnswers, "77721401")); len(rs) != 0 {
		t.Errorf("group 1's first member rang %d times over srv11's limit", len(rs))
	}
	e.waitCount(t, "server", "srv11", 2)
	r := e.hangupSIP(t, "srv11", "+4915112345678", cl)
	rec := e.sipRecord(t, "srv11", "+4915112345678", "+4930200100", r)
	forwarded(t, rec, "77721401:congested 3998:answered", "forward-limit", "server srv11")
	e.waitCount(t, "server", "srv11", 1)
	e.hangupSIP(t, "srv11", "3999", first)
	e.waitCount(t, "server", "srv11", 0)
}

// orgLimitForward limits acme to 1 counted leg, with a limit forward to
// target.
func orgLimitForward(target string) func(*provision.Document) {
	return func(d *provision.Document) {
		editOrg(d, "acme", func(o *provision.Org) {
			o.ChannelLimit = 1
			o.LimitForward = &provision.LimitForward{Target: target}
		})
	}
}

// acme at its limit of 1 (3999's external call on srv11): a PSTN caller to
// 2099's number arrives on srv12 over acme's limit; the arriving leg is
// counted past it (acme counts 2) and the call goes to acme's limit
// forward, the night desk 1101 on srv12, which shows the PSTN caller.
func realOrgLimitForwardAtArrival(t *testing.T, e *RealEnv) {
	first := e.sipStart(t, "srv11", sipp.Call{From: "3999", Dialed: "030123456"})
	e.sipAnswered(t, "srv11", "3999", "030123456", first)
	e.waitCount(t, "org", "acme", 1)
	cl := e.sipStart(t, "srv12", sipp.Call{Port: e.pstnCaller(), From: "+4915112345678", Dialed: "+442071234567"})
	e.sipAnswered(t, "srv12", "+4915112345678", "+442071234567", cl)
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "1101"), "+4915112345678")
	e.waitCount(t, "org", "acme", 2)
	e.waitCount(t, "server", "srv12", 1)
	e.waitCount(t, "server", "srv11", 1)
	r := e.hangupSIP(t, "srv12", "+4915112345678", cl)
	rec := e.sipRecord(t, "srv12", "+4915112345678", "+442071234567", r)
	forwarded(t, rec, "2099:congested 1101:answered", "forward-limit", "org acme")
	if want := "leg pstn-in on srv12: org acme is at its channel limit of 1"; rec.Attempts[0].Cause != want {
		t.Errorf("the refused attempt says %q, want %q", rec.Attempts[0].Cause, want)
	}
	e.waitCount(t, "org", "acme", 1)
	e.hangupSIP(t, "srv11", "3999", first)
	e.waitCount(t, "org", "acme", 0)
	e.waitCount(t, "server", "srv11", 0)
	e.waitCount(t, "server", "srv12", 0)
}

// acme at its limit of 1, its limit forward the night desk on srv12: a PSTN
// caller to 3997's number arrives on srv11 over the limit and is forwarded,
// but reaching srv12 needs a trunk leg of acme's, which the same limit
// refuses. A limit forward is not forwarded again by its own limit: the
// caller hears 503, the night desk never rings, the record says which
// limit.
func realLimitForwardRefusedBySameLimit(t *testing.T, e *RealEnv) {
	first := e.sipStart(t, "srv11", sipp.Call{From: "3999", Dialed: "030123456"})
	e.sipAnswered(t, "srv11", "3999", "030123456", first)
	e.waitCount(t, "org", "acme", 1)
	in := e.sipCall(t, "srv11", sipp.Call{Port: e.pstnCaller(), From: "+4915112345678", Dialed: "+4930100197"})
	if in.Final != 503 {
		t.Errorf("the PSTN caller got %d (cause %s), want 503", in.Final, in.Reason)
	}
	rec := e.sipRecord(t, "srv11", "+4915112345678", "+4930100197", in)
	forwarded(t, rec, "3997:congested 1101:congested", "forward-limit", "org acme")
	if rec.HangupCause != "NORMAL_CIRCUIT_CONGESTION" || !strings.Contains(rec.Reason, "org acme is at its channel limit of 1") {
		t.Errorf("record: cause %s, reason %q", rec.HangupCause, rec.Reason)
	}
	if rs := e.SIPPhones.RingsOf(PhoneNumber(PhoneAnswers, "1101")); len(rs) != 0 {
		t.Errorf("the night desk rang %d times past acme's limit", len(rs))
	}
	e.waitCount(t, "org", "acme", 1)
	if first.Ended() {
		t.Fatal("the first call ended")
	}
	e.hangupSIP(t, "srv11", "3999", first)
	e.waitCount(t, "org", "acme", 0)
	e.waitCount(t, "server", "srv11", 0)
}

// grp1FallbackToNightDesk gives group 1 a fallback on srv12: its own 1101,
// the phone acme's 1101 is on in the scenario.
func grp1FallbackToNightDesk(d *provision.Document) {
	ep := ""
	editUser(d, "acme", "1101", func(u *provision.User) { ep = u.Endpoint })
	for i := range d.Orgs {
		if d.Orgs[i].ID == "grp1" {
			d.Orgs[i].Users = append(d.Orgs[i].Users, provision.User{Extension: "1101", Name: "Night Desk", Server: "srv12", Endpoint: ep})
			d.Orgs[i].Hunt.Fallback = "1101"
		}
	}
}

// SPEC §3: a PSTN caller to group 1 (+4930200100), where every member is
// busy, reaches the group's fallback on srv12, shown the caller's number;
// 2 counted on srv11, 1 on srv12.
func realGroupFallback(t *testing.T, e *RealEnv) {
	cl := e.sipStart(t, "srv11", sipp.Call{Port: e.pstnCaller(), From: "+4915112345678", Dialed: "+4930200100"})
	e.sipAnswered(t, "srv11", "+4915112345678", "+4930200100", cl)
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "1101"), "+4915112345678")
	e.waitCount(t, "server", "srv11", 2)
	e.waitCount(t, "server", "srv12", 1)
	r := e.hangupSIP(t, "srv11", "+4915112345678", cl)
	rec := e.sipRecord(t, "srv11", "+4915112345678", "+4930200100", r)
	want := "77721401:busy 77721402:busy 77721403:busy 77721404:busy 77721405:busy 77721406:busy 1101:answered"
	if got := attempts(rec); got != want || rec.Answered != "1101" {
		t.Errorf("record: attempts %s, answered by %q; want %s by 1101", got, rec.Answered, want)
	}
	e.waitCount(t, "server", "srv11", 0)
	e.waitCount(t, "server", "srv12", 0)
}
