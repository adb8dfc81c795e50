package routing_test

import (
	"strings"
	"testing"
	"time"

	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/controller/routing"
	"github.com/callctl/callctl/examples"
)

func forwardRouter(t *testing.T, edits ...string) *routing.Router {
	t.Helper()
	lab := string(examples.Lab)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(lab, edits[i]) {
			t.Fatalf("lab plan has no %q", edits[i])
		}
		lab = strings.Replace(lab, edits[i], edits[i+1], 1)
	}
	plan, probs, err := provision.Load(examples.LabName, []byte(lab))
	if err != nil {
		t.Fatalf("plan: %v %v", err, probs)
	}
	return routing.New(plan)
}

// The lab's 3997 forwards to the night desk 1101 on srv12 (121101) when she
// does not answer in 4 s or is busy; the desk sees the original caller.
func TestUserForwards(t *testing.T) {
	r := forwardRouter(t)
	var fd routing.Decision

	// A PSTN caller: the desk sees the caller's E.164 number over the trunk,
	// and the forward costs a trunk leg on each server (2 + 1 with the
	// caller's own leg, SPEC §5).
	d := r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: "+4915112345678", CallerName: "Kim", Dialed: "+4930100197"})
	check(t, d, want{kind: routing.Local, org: "acme", members: []string{"3997"}, billing: "acme", inLegs: "srv11:pstn-in(acme)"})
	ms := d.Members()
	d.ForwardRing(ms)
	if ms[0].RingTimeout != 4*time.Second {
		t.Errorf("3997 rings %s before her no-answer forward, want 4s", ms[0].RingTimeout)
	}
	f, ok := d.UserForward(&ms[0], routing.ForwardNoAnswer)
	if !ok || f.Target != "121101" || f.By != "3997" || f.Kind.String() != "forward-noanswer" {
		t.Fatalf("no-answer forward %+v %v", f, ok)
	}
	r.ForwardInto(&d, f, &fd)
	check(t, fd, want{kind: routing.InterServer, org: "acme", members: []string{"1101"}, dial: []string{"sofia/gateway/srv12/1101"},
		callerID: []string{"+4915112345678"}, cidName: "Kim", billing: "acme", legs: "srv11:trunk-out(acme), srv12:trunk-in(acme)[counted there]"})

	// A phone on the same server: the desk on the other server sees 113999.
	d = r.Route(&routing.Request{Server: "srv11", Caller: "3999", CallerName: "Aiko Sato", Dialed: "3997"})
	f, ok = d.UserForward(&d.Target, routing.ForwardBusy)
	if !ok || f.Target != "121101" || f.Kind.String() != "forward-busy" {
		t.Fatalf("busy forward %+v %v", f, ok)
	}
	r.ForwardInto(&d, f, &fd)
	check(t, fd, want{kind: routing.InterServer, org: "acme", members: []string{"1101"}, callerID: []string{"113999"}, cidName: "Aiko Sato",
		billing: "acme", legs: "srv11:trunk-out(acme), srv12:trunk-in(acme)[counted there]"})

	// A user without forwards, and a call another server's node sent over
	// its trunk (that node forwards it): nothing.
	d = r.Route(&routing.Request{Server: "srv11", Caller: "3997", Dialed: "3999"})
	if _, ok := d.UserForward(&d.Target, routing.ForwardNoAnswer); ok {
		t.Errorf("3999 has no forward")
	}
	d = r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.12", MarkOrg: "acme", Caller: "122099", Dialed: "3997"})
	if d.Kind != routing.Local {
		t.Fatalf("trunk call for 3997: %s %s", d.Kind, d.Reason)
	}
	if _, ok := d.UserForward(&d.Target, routing.ForwardNoAnswer); ok {
		t.Errorf("the receiving node forwards a trunk call; the sending node owns it")
	}
	ms = d.Members()
	d.ForwardRing(ms)
	if ms[0].RingTimeout != 20*time.Second {
		t.Errorf("a trunk call rings 3997 %s, want the org's 20s", ms[0].RingTimeout)
	}
}

// A forward to the PSTN shows an external caller's number, and for an
// internal caller the forwarding user's own outgoing number.
func TestForwardToThePSTN(t *testing.T) {
	r := forwardRouter(t, `outgoing_number: "+4930100199"}`, `outgoing_number: "+4930100199", forward: {busy: "030123456"}}`)
	var fd routing.Decision
	d := r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: "+4915112345678", Dialed: "+4930100199"})
	f, ok := d.UserForward(&d.Target, routing.ForwardBusy)
	if !ok {
		t.Fatal("3998 has a busy forward")
	}
	r.ForwardInto(&d, f, &fd)
	check(t, fd, want{kind: routing.External, org: "acme", external: "+4930123456", callerID: []string{"+4915112345678"}, billing: "acme",
		legs: "srv11:pstn-out(acme)"})

	d = r.Route(&routing.Request{Server: "srv11", Caller: "3999", Dialed: "3998"})
	f, _ = d.UserForward(&d.Target, routing.ForwardBusy)
	r.ForwardInto(&d, f, &fd)
	check(t, fd, want{kind: routing.External, org: "acme", external: "+4930123456", callerID: []string{"+4930100199"}, billing: "acme",
		legs: "srv11:pstn-out(acme)"})
}

// Limit forwards: a server's in the org it names, an org's in the org; a
// far server that refused the trunk call (503) forwards with its own.
func TestLimitForwards(t *testing.T) {
	r := forwardRouter(t,
		"    channel_limit: 30\n    asterisk:", "    channel_limit: 30\n    limit_forward: {org: acme, target: \"3998\"}\n    asterisk:",
		"    channel_limit: 20\n", "    channel_limit: 20\n    limit_forward: {target: \"121101\"}\n")
	var fd routing.Decision
	d := r.Route(&routing.Request{Server: "srv11", Caller: "3999", CallerName: "Aiko Sato", Dialed: "122099"})
	f, ok := r.FarLimitForward(&d, &d.Target)
	if !ok || f.Target != "3998" || f.By != "server srv12" || f.Kind.String() != "forward-limit" {
		t.Fatalf("srv12's limit forward: %+v %v", f, ok)
	}
	r.ForwardInto(&d, f, &fd)
	check(t, fd, want{kind: routing.Local, org: "acme", members: []string{"3998"}, dial: []string{"user/3998"}, callerID: []string{"3999"},
		cidName: "Aiko Sato", billing: "acme"})

	f, ok = r.LimitForward(&d, "org", "acme")
	if !ok || f.Target != "121101" || f.By != "org acme" {
		t.Fatalf("acme's limit forward: %+v %v", f, ok)
	}
	r.ForwardInto(&d, f, &fd)
	check(t, fd, want{kind: routing.InterServer, org: "acme", members: []string{"1101"}, callerID: []string{"113999"}, billing: "acme",
		legs: "srv11:trunk-out(acme), srv12:trunk-in(acme)[counted there]"})

	// An external call of a phone forwarded at a limit shows the caller's
	// extension, not the external number it would have presented.
	d = r.Route(&routing.Request{Server: "srv11", Caller: "3997", Dialed: "030999999"})
	r.ForwardInto(&d, f, &fd)
	check(t, fd, want{kind: routing.InterServer, org: "acme", members: []string{"1101"}, callerID: []string{"113997"}, cidName: "Dana Ruiz",
		billing: "acme", legs: "srv11:trunk-out(acme), srv12:trunk-in(acme)[counted there]"})

	if _, ok := r.LimitForward(&d, "server", "srv11"); ok {
		t.Errorf("srv11 has no limit forward")
	}
	// A hunt whose member's leg (or its arrival) is over a limit goes to
	// the limit's forward like any call (SPEC §4); a group nobody answered
	// goes to its fallback, also a forward (counted towards max_forwards).
	d = r.Route(&routing.Request{Server: "srv11", Caller: "1100", Dialed: "8008001"})
	if f, ok := r.LimitForward(&d, "server", "srv12"); !ok || f.Target != "3998" || f.By != "server srv12" {
		t.Errorf("a hunt over srv12's limit: %+v %v, want srv12's limit forward to 3998", f, ok)
	}
	if f, ok := r.FallbackForward(&d); ok {
		t.Errorf("grp1 has no fallback, yet %+v", f)
	}
	// The hunt's node forwards; a node that got the call over a trunk
	// leaves it to the sender.
	d = r.Route(&routing.Request{Server: "srv12", Source: "srv11", MarkOrg: "acme", Caller: "113999", Dialed: "2099"})
	if d.Kind != routing.Local {
		t.Fatalf("trunk call for 2099: %s %s", d.Kind, d.Reason)
	}
	if _, ok := r.LimitForward(&d, "server", "srv12"); ok {
		t.Errorf("the receiving node of a trunk call forwards it at a limit; the sender owns it")
	}
}

// A group's fallback is a forward (SPEC §3, §4): routed from the hunt,
// presenting the caller the group was shown.
func TestFallbackForward(t *testing.T) {
	r := forwardRouter(t, "      - {number: \"8008003\", start: \"77721403\"}\n",
		"      - {number: \"8008003\", start: \"77721403\"}\n    hunt: {fallback: \"1100\"}\n")
	d := r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: "+4915112345678", Dialed: "+4930200100"})
	f, ok := r.FallbackForward(&d)
	if !ok || f.Target != "1100" || f.By != "org grp1" || f.Kind.String() != "fallback" {
		t.Fatalf("grp1's fallback: %+v %v", f, ok)
	}
	var fd routing.Decision
	r.ForwardInto(&d, f, &fd)
	check(t, fd, want{kind: routing.Local, org: "grp1", members: []string{"1100"}, callerID: []string{"+4915112345678"}, billing: "grp1"})
	if _, ok := r.FallbackForward(&fd); ok {
		t.Errorf("a fallback has a fallback of its own")
	}
}
