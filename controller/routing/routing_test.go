package routing_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/callctl/callctl/controller/accounting"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/controller/routing"
	"github.com/callctl/callctl/examples"
)

func labRouter(t testing.TB) *routing.Router {
	t.Helper()
	plan, probs, err := provision.Load(examples.LabName, examples.Lab)
	if err != nil {
		t.Fatalf("lab plan: %v", err)
	}
	for _, p := range probs {
		t.Logf("lab plan: %s", p)
	}
	return routing.New(plan)
}

// want is the full decision a worked example must produce.
type want struct {
	kind     routing.Kind
	cause    routing.Cause
	org      string
	members  []string // numbers, in ringing order
	dial     []string // dial strings, in ringing order
	callerID []string // per member, what the rung phone shows
	cidName  string
	billing  string
	external string
	inLegs   string
	legs     string // legs of the first target
	reason   string // substring
}

func member(d routing.Decision) []routing.Target { return d.Members() }

func check(t *testing.T, d routing.Decision, w want) {
	t.Helper()
	if d.Kind != w.kind {
		t.Fatalf("kind = %s (cause %s, %s), want %s", d.Kind, d.Cause, d.Reason, w.kind)
	}
	if d.Cause != w.cause {
		t.Errorf("cause = %s, want %s", d.Cause, w.cause)
	}
	if w.reason != "" && !strings.Contains(d.Reason, w.reason) {
		t.Errorf("reason = %q, want it to mention %q", d.Reason, w.reason)
	}
	if d.Kind == routing.Rejected {
		return
	}
	if w.org != "" && (d.Org == nil || d.Org.ID != w.org) {
		t.Errorf("org = %v, want %s", d.Org, w.org)
	}
	ms := member(d)
	var nums, dials, cids []string
	for _, m := range ms {
		nums = append(nums, m.Number)
		dials = append(dials, m.DialString())
		cids = append(cids, m.CallerID)
	}
	if w.members != nil && strings.Join(nums, " ") != strings.Join(w.members, " ") {
		t.Errorf("members = %v, want %v", nums, w.members)
	}
	if w.dial != nil && strings.Join(dials, " ") != strings.Join(w.dial, " ") {
		t.Errorf("dial strings = %v, want %v", dials, w.dial)
	}
	if w.callerID != nil && strings.Join(cids, " ") != strings.Join(w.callerID, " ") {
		t.Errorf("caller ids = %v, want %v", cids, w.callerID)
	}
	if w.cidName != "" && d.CallerIDName != w.cidName {
		t.Errorf("caller name = %q, want %q", d.CallerIDName, w.cidName)
	}
	if d.Billing != w.billing {
		t.Errorf("billing = %q, want %q", d.Billing, w.billing)
	}
	if d.External != w.external {
		t.Errorf("external = %q, want %q", d.External, w.external)
	}
	if got := d.InLegs.String(); got != w.inLegs {
		t.Errorf("in legs = %q, want %q", got, w.inLegs)
	}
	if got := d.Target.Legs.String(); got != w.legs {
		t.Errorf("target legs = %q, want %q", got, w.legs)
	}
}

func TestSeed002Groups(t *testing.T) {
	r := labRouter(t)
	all := []string{"77721401", "77721402", "77721403", "77721404", "77721405", "77721406"}
	dials := func(ns ...string) []string {
		out := make([]string, len(ns))
		for i, n := range ns {
			out[i] = "user/" + n
		}
		return out
	}
	tests := []struct {
		name, caller, dialed string
		w                    want
	}{
		// Example 1: three service numbers over one chain.
		{"ex1 8008001 starts at 01", "1100", "8008001", want{kind: routing.Hunt, org: "grp1", members: all, dial: dials(all...), billing: "grp1"}},
		{"ex1 8008002 also starts at 01", "1100", "8008002", want{kind: routing.Hunt, org: "grp1", members: all, billing: "grp1"}},
		{"ex1 8008003 rings 03 04 05 06 then ends", "1100", "8008003", want{kind: routing.Hunt, org: "grp1", members: all[2:], billing: "grp1"}},
		{"ex1 member dialed directly still hunts", "1100", "77721402", want{kind: routing.Hunt, org: "grp1", members: all[1:], billing: "grp1"}},
		{"ex1 T rings only that member", "1100", "77721402T", want{kind: routing.Member, org: "grp1", members: all[1:2], dial: dials("77721402"), billing: "grp1"}},
		{"ex1 last member has no next", "1100", "77721406", want{kind: routing.Hunt, org: "grp1", members: all[5:], billing: "grp1"}},
		// Example 2.
		{"ex2 8008001", "1200", "8008001", want{kind: routing.Hunt, org: "grp2", members: all, billing: "grp2"}},
		{"ex2 8008002", "1200", "8008002", want{kind: routing.Hunt, org: "grp2", members: all, billing: "grp2"}},
		{"ex2 8008003 does not exist", "1200", "8008003", want{kind: routing.Rejected, cause: routing.CauseUnallocated}},
		// Example 3.
		{"ex3 8008001", "1300", "8008001", want{kind: routing.Hunt, org: "grp3", members: all, billing: "grp3"}},
		{"ex3 77721404T", "1300", "77721404T", want{kind: routing.Member, org: "grp3", members: all[3:4], billing: "grp3"}},
		// Example 4: one member.
		{"ex4 8008001 rings the only member", "1400", "8008001", want{kind: routing.Hunt, org: "grp4", members: all[:1], billing: "grp4"}},
		{"ex4 T of a number that is not there", "1400", "77721402T", want{kind: routing.Rejected, cause: routing.CauseUnallocated}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := r.Route(&routing.Request{Server: "srv11", Caller: tc.caller, Dialed: tc.dialed})
			check(t, d, tc.w)
			if d.Kind == routing.Hunt {
				for _, m := range d.Members() {
					if m.RingTimeout.Seconds() != 20 {
						t.Errorf("member %s ring timeout = %s, want the 20s default", m.Number, m.RingTimeout)
					}
				}
			}
		})
	}
}

func TestSeed003InterServer(t *testing.T) {
	r := labRouter(t)
	// 3999 on srv11 dials 122099: 2099 on srv12 rings showing 113999; the
	// trunk leg counts 1 on each server.
	d := r.Route(&routing.Request{Server: "srv11", Caller: "3999", Dialed: "122099"})
	check(t, d, want{kind: routing.InterServer, org: "acme", members: []string{"2099"},
		dial: []string{"sofia/gateway/srv12/2099"}, callerID: []string{"113999"}, billing: "acme",
		legs: "srv11:trunk-out(acme), srv12:trunk-in(acme)[counted there]"})
	if d.Target.Dest != "2099" {
		t.Errorf("the trunk carries %q, want the extension without prefix", d.Target.Dest)
	}
	// On srv12 the call arrives from srv11's trunk with the org mark: it rings
	// 2099 locally, keeps 113999, and counts its trunk-in leg.
	d = r.Route(&routing.Request{Server: "srv12", Source: "srv11", Caller: "113999", MarkOrg: "acme", Dialed: "2099"})
	check(t, d, want{kind: routing.Local, org: "acme", members: []string{"2099"}, dial: []string{"PJSIP/2099"},
		callerID: []string{"113999"}, billing: "acme", inLegs: "srv12:trunk-in(acme)"})
	if d.Origin != routing.FromTrunk || d.PeerServer.Name != "srv11" {
		t.Errorf("origin = %s from %v, want trunk from srv11", d.Origin, d.PeerServer)
	}
	// And back: 2099 dials 113999, 3999 shows 122099.
	d = r.Route(&routing.Request{Server: "srv12", Source: "10.0.0.5", Caller: "2099", Dialed: "113999"})
	check(t, d, want{kind: routing.InterServer, org: "acme", dial: []string{"PJSIP/3999@srv11"}, callerID: []string{"122099"},
		billing: "acme", legs: "srv12:trunk-out(acme), srv11:trunk-in(acme)[counted there]"})
	// The mark is not trusted from anything but a known trunk: a phone that
	// sends it is just a phone (and 2099 is not a user of srv11).
	d = r.Route(&routing.Request{Server: "srv11", Source: "10.9.9.9", Caller: "2099", MarkOrg: "acme", Dialed: "3999"})
	check(t, d, want{kind: routing.Rejected, cause: routing.CauseRejected, reason: "not a user of server srv11"})
	// A trunk call for a target that is not on this server is not sent on.
	d = r.Route(&routing.Request{Server: "srv12", Source: "srv11", Caller: "113999", MarkOrg: "acme", Dialed: "3998"})
	check(t, d, want{kind: routing.Rejected, cause: routing.CauseUnallocated, reason: "not on server srv12"})
	// The caller's own prefix reaches its own server's extensions locally.
	d = r.Route(&routing.Request{Server: "srv11", Caller: "3999", Dialed: "113998"})
	check(t, d, want{kind: routing.Local, members: []string{"3998"}, dial: []string{"user/3998"}, callerID: []string{"3999"}, billing: "acme"})
	// A bare extension of the org on another server also crosses, prefixed.
	d = r.Route(&routing.Request{Server: "srv11", Caller: "3999", Dialed: "2099"})
	check(t, d, want{kind: routing.InterServer, callerID: []string{"113999"}, billing: "acme",
		legs: "srv11:trunk-out(acme), srv12:trunk-in(acme)[counted there]"})
	// Host:port sources match a trunk given by host.
	d = r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.12:5060", Caller: "122099", MarkOrg: "acme", Dialed: "3999"})
	check(t, d, want{kind: routing.Local, callerID: []string{"122099"}, billing: "acme", inLegs: "srv11:trunk-in(acme)"})
}

func TestSeed000OrgConnect(t *testing.T) {
	r := labRouter(t)
	d := r.Route(&routing.Request{Server: "srv11", Caller: "124", Dialed: "1201"})
	check(t, d, want{kind: routing.OrgConnect, org: "orgB", members: []string{"201"}, dial: []string{"user/201"},
		callerID: []string{"2124"}, cidName: "Agent 124", billing: "orgA"})
	d = r.Route(&routing.Request{Server: "srv11", Caller: "201", Dialed: "2124"})
	check(t, d, want{kind: routing.OrgConnect, org: "orgA", members: []string{"124"}, callerID: []string{"1201"}, billing: "orgB"})
	// Only users assigned the rule may use its prefix: 3999 of acme cannot.
	d = r.Route(&routing.Request{Server: "srv11", Caller: "3999", Dialed: "1201"})
	check(t, d, want{kind: routing.Rejected, cause: routing.CauseUnallocated})
	// An unknown extension behind the prefix is unallocated.
	d = r.Route(&routing.Request{Server: "srv11", Caller: "124", Dialed: "1299"})
	check(t, d, want{kind: routing.Rejected, cause: routing.CauseUnallocated})
}

func TestSeed004CallerID(t *testing.T) {
	r := labRouter(t)
	tests := []struct {
		name, caller, dialed, cid, external string
	}{
		{"0044 rule for a default user", "3999", "00442079460000", "+442071234567", "+442079460000"},
		{"+44 is normalised too", "3999", "+442079460000", "+442071234567", "+442079460000"},
		{"no rule: org default", "3999", "030123456", "+4930100100", "+4930123456"},
		{"user number wins when override is off", "3998", "00442079460000", "+4930100199", "+442079460000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := r.Route(&routing.Request{Server: "srv11", Caller: tc.caller, Dialed: tc.dialed})
			check(t, d, want{kind: routing.External, org: "acme", callerID: []string{tc.cid}, external: tc.external,
				billing: "acme", dial: []string{"sofia/gateway/pstn/" + tc.external}, legs: "srv11:pstn-out(acme)"})
		})
	}
	// The outbound rule: 2099 may only call Germany; the deny pattern blocks
	// premium numbers for 3999.
	d := r.Route(&routing.Request{Server: "srv12", Caller: "2099", Dialed: "00442079460000"})
	check(t, d, want{kind: routing.Rejected, cause: routing.CauseRejected, reason: "whitelist"})
	d = r.Route(&routing.Request{Server: "srv11", Caller: "3999", Dialed: "09001234567"})
	check(t, d, want{kind: routing.Rejected, cause: routing.CauseRejected, reason: "deny pattern"})
	// A user with no outbound rule makes no external calls.
	d = r.Route(&routing.Request{Server: "srv11", Caller: "1100", Dialed: "030123456"})
	check(t, d, want{kind: routing.Rejected, cause: routing.CauseRejected, reason: "no outbound rule"})
}

func TestSeed001SharedNumber(t *testing.T) {
	r := labRouter(t)
	// Outbound: 300 of kundeB presents kundeA's Berlin number: billed to A.
	d := r.Route(&routing.Request{Server: "srv11", Caller: "300", Dialed: "030999888"})
	check(t, d, want{kind: routing.External, org: "kundeB", callerID: []string{"+4930555001"}, external: "+4930999888",
		billing: "kundeA", legs: "srv11:pstn-out(kundeB)"})
	// 301 presents B's own default: billed to B.
	d = r.Route(&routing.Request{Server: "srv11", Caller: "301", Dialed: "030999888"})
	check(t, d, want{kind: routing.External, org: "kundeB", callerID: []string{"+4940555000"}, external: "+4930999888",
		billing: "kundeB", legs: "srv11:pstn-out(kundeB)"})
	// Inbound on A's number rings B's desk and is billed to A.
	d = r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: "+4915112345678", Dialed: "+4930555001"})
	check(t, d, want{kind: routing.Local, org: "kundeB", members: []string{"300"}, callerID: []string{"+4915112345678"},
		billing: "kundeA", inLegs: "srv11:pstn-in(kundeB)"})
	// Carriers that drop the plus still reach the number.
	d = r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: "+4915112345678", Dialed: "4930555001"})
	check(t, d, want{kind: routing.Local, org: "kundeB", billing: "kundeA", inLegs: "srv11:pstn-in(kundeB)"})
	// An unknown DID is unallocated.
	d = r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: "+4915112345678", Dialed: "+4930555999"})
	check(t, d, want{kind: routing.Rejected, cause: routing.CauseUnallocated})
}

// SPEC §5 worked examples.
func TestAccountingExamples(t *testing.T) {
	r := labRouter(t)
	// Extension call from server 1 to server 2: server 1: 1, server 2: 1.
	d := r.Route(&routing.Request{Server: "srv11", Caller: "3999", Dialed: "122099"})
	if got := []int{d.InLegs.Count("srv11") + d.Target.Legs.Count("srv11"), d.Target.Legs.Count("srv12")}; got[0] != 1 || got[1] != 1 {
		t.Errorf("extension call 11->12 counts %v, want [1 1]", got)
	}
	// External call into server 1 ...
	in := r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: "+4915112345678", Dialed: "+4930100100"})
	if in.Kind != routing.Local || in.Target.Number != "3999" {
		t.Fatalf("DID +4930100100 -> %s %s (%s)", in.Kind, in.Target.Number, in.Reason)
	}
	// ... transferred (blind) by 3999 to server 2: server 1: 2, server 2: 1,
	// and 2099 sees the original caller.
	// The transferred channel still comes from the PSTN: the call that
	// continues after the transfer counts its inbound leg and the trunk leg,
	// the first call's count having ended with it.
	tr := r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: "3999", Dialed: "122099",
		Transfer: routing.Blind, OriginalCaller: "+4915112345678"})
	if tr.Kind != routing.InterServer || tr.InLegs.String() != "srv11:pstn-in(acme)" {
		t.Fatalf("transfer: %s %s in-legs %s (%s)", tr.Kind, tr.Target.Number, tr.InLegs, tr.Reason)
	}
	s1 := tr.InLegs.Count("srv11") + tr.Target.Legs.Count("srv11")
	s2 := tr.Target.Legs.Count("srv12")
	if s1 != 2 || s2 != 1 {
		t.Errorf("transfer counts srv11=%d srv12=%d, want 2 and 1", s1, s2)
	}
	if in.InLegs.Count("srv11") != 1 {
		t.Errorf("before the transfer srv11 counts %d, want 1", in.InLegs.Count("srv11"))
	}
	if tr.Target.CallerID != "+4915112345678" {
		t.Errorf("blind transfer shows %q, want the original caller", tr.Target.CallerID)
	}
	// An attended transfer shows the transferring extension, prefixed.
	at := r.Route(&routing.Request{Server: "srv11", Caller: "3999", Dialed: "122099", Transfer: routing.Attended,
		OriginalCaller: "+4915112345678"})
	if at.Target.CallerID != "113999" {
		t.Errorf("attended transfer shows %q, want 113999", at.Target.CallerID)
	}
	// Two phones of the same server count 0.
	loc := r.Route(&routing.Request{Server: "srv11", Caller: "3999", Dialed: "3998"})
	if loc.InLegs.Len()+loc.Target.Legs.Len() != 0 {
		t.Errorf("local call counts %s %s, want nothing", loc.InLegs, loc.Target.Legs)
	}
	// A leg kind round trip for the record.
	if accounting.TrunkOut.String() != "trunk-out" {
		t.Error("leg kind names changed")
	}
}

func TestHostileDialedStrings(t *testing.T) {
	r := labRouter(t)
	for _, s := range []string{"", "1000,user/evil", "1000|loopback/x", "{x=y}1000", "1000 &park", "1000\nexit",
		"1000/evil", "PJSIP/x&PJSIP/y", "1000@other-context", "\x00", "12\x7f", "T", "1+2", "++49",
		strings.Repeat("1", 40), "3999\r\n", "${uuid}", "3999'", "T3999"} {
		d := r.Route(&routing.Request{Server: "srv11", Caller: "3999", Dialed: s})
		if d.Kind != routing.Rejected {
			t.Errorf("%q routed as %s to %q; want it rejected", s, d.Kind, d.Target.DialString())
			continue
		}
		if d.Cause != routing.CauseInvalid {
			t.Errorf("%q rejected with %s, want INVALID_NUMBER_FORMAT", s, d.Cause)
		}
	}
	d := r.Route(&routing.Request{Server: "nope", Caller: "3999", Dialed: "3998"})
	if d.Kind != routing.Rejected {
		t.Errorf("unknown server routed as %s", d.Kind)
	}
}

// Emergency numbers of the org's country reach the PSTN as dialed, whatever
// the outbound rule (1100 of grp1 has none; 2099's allows Germany only).
func TestEmergencyNumbers(t *testing.T) {
	jp := strings.Replace(string(examples.Lab), "  - id: grp4\n    country_code: \"49\"", "  - id: grp4\n    country_code: \"81\"", 1)
	plan, _, err := provision.Load("jp", []byte(jp))
	if err != nil {
		t.Fatal(err)
	}
	r := routing.New(plan)
	for _, c := range []struct{ server, from, dial string }{
		{"srv11", "1100", "112"}, {"srv11", "1100", "110"}, {"srv12", "2099", "112"}, {"srv11", "1400", "119"}, {"srv11", "1400", "118"},
	} {
		d := r.Route(&routing.Request{Server: c.server, Caller: c.from, Dialed: c.dial})
		if d.Kind != routing.External || !d.Emergency || d.Target.Dest != c.dial || d.Target.Trunk == nil || d.Target.Trunk.Peer != nil {
			t.Errorf("%s dials %s: %s %s emergency=%v dest %q", c.from, c.dial, d.Kind, d.Reason, d.Emergency, d.Target.Dest)
		}
	}
	// 119 is not an emergency number in Germany: 1100 has no rule, refused.
	if d := r.Route(&routing.Request{Server: "srv11", Caller: "1100", Dialed: "119"}); d.Emergency || d.Kind != routing.Rejected {
		t.Errorf("119 in Germany: %s emergency=%v", d.Kind, d.Emergency)
	}
	// An org may not give an emergency number to anything of its own.
	bad := strings.Replace(string(examples.Lab), `{extension: "1100"`, `{extension: "112"`, 1)
	if _, probs, err := provision.Load("bad", []byte(bad)); err == nil || !strings.Contains(fmt.Sprint(probs), "112 is an emergency number of org grp1") {
		t.Errorf("extension 112: %v", probs)
	}
}

// SPEC §10: a caller that is not a number (or that asked for privacy) is
// passed on withheld, never refused and never as it came: from the PSTN,
// from another server's trunk, as the party of a blind transfer.
func TestWithheldCallers(t *testing.T) {
	r := labRouter(t)
	for _, caller := range []string{"anonymous", "Restricted", "unknown", "+49 30 1234", " ", "", "12a4", "+", "1000,user/3998", "+4930\n12"} {
		d := r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: caller, CallerName: "Evil\" <sip:x>", Dialed: "+4930100100"})
		if d.Kind != routing.Local || d.Target.Number != "3999" || !d.Withheld || d.Target.CallerID != "" || d.CallerIDName != "" {
			t.Errorf("PSTN caller %q: %s %s withheld %v caller id %q name %q (%s)", caller, d.Kind, d.Target.Number, d.Withheld,
				d.Target.CallerID, d.CallerIDName, d.Reason)
		}
		// Over a trunk to the other server (a hunt member there would be the same).
		tr := r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: "3999", Dialed: "122099",
			Transfer: routing.Blind, OriginalCaller: caller, OriginalName: "x"})
		if tr.Kind != routing.InterServer || !tr.Withheld || tr.Target.CallerID != "" {
			t.Errorf("blind transfer of %q: %s withheld %v shows %q", caller, tr.Kind, tr.Withheld, tr.Target.CallerID)
		}
		in := r.Route(&routing.Request{Server: "srv12", Source: "srv11", MarkOrg: "acme", Caller: caller, Dialed: "2099"})
		if in.Kind != routing.Local || !in.Withheld || in.Target.CallerID != "" {
			t.Errorf("trunk caller %q: %s withheld %v shows %q (%s)", caller, in.Kind, in.Withheld, in.Target.CallerID, in.Reason)
		}
	}
	d := r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: "+4915112345678", Dialed: "+4930100100"})
	if d.Withheld || d.Target.CallerID != "+4915112345678" {
		t.Errorf("a number: withheld %v shows %q", d.Withheld, d.Target.CallerID)
	}
	d = r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: "+4915112345678", Dialed: "+4930100100", Withheld: true})
	if !d.Withheld || d.Target.CallerID != "" {
		t.Errorf("a number that asked for privacy: withheld %v shows %q", d.Withheld, d.Target.CallerID)
	}
}

// SPEC §3, §4: the fallback of a group nobody answered is routed in the
// group's org for every kind of caller, and shows the caller the hunt
// showed: a PSTN caller's number, an org-connect caller's prefixed
// extension.
func TestFallback(t *testing.T) {
	lab := strings.Replace(string(examples.Lab), "  - id: grp1\n", "  - id: grp1\n    hunt: {fallback: \"1100\"}\n", 1)
	lab = strings.Replace(lab, "  - id: orgB\n", "  - id: orgB\n    hunt: {fallback: \"201\"}\n    sip_numbers:\n      - {number: \"4001\", server: srv11, next: \"0000\"}\n    service_numbers:\n      - {number: \"400\", start: \"4001\"}\n", 1)
	plan, probs, err := provision.Load(examples.LabName, []byte(lab))
	if err != nil {
		t.Fatalf("plan: %v %v", err, probs)
	}
	r := routing.New(plan)
	var fd routing.Decision

	d := r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: "+4915112345678", CallerName: "Kim", Dialed: "+4930200100"})
	if d.Kind != routing.Hunt || d.Fallback != "1100" {
		t.Fatalf("DID of 8008001: %s fallback %q", d.Kind, d.Fallback)
	}
	r.FallbackInto(&d, &fd)
	check(t, fd, want{kind: routing.Local, org: "grp1", members: []string{"1100"}, callerID: []string{"+4915112345678"},
		cidName: "Kim", billing: "grp1"})
	if fd.Fallback != "" {
		t.Errorf("a fallback has a fallback of its own: %q", fd.Fallback)
	}

	// Agent 124 of org A reaches org B's group 400 as 1400: the fallback is
	// org B's 201 (not org A's), shown 2124 like the group was.
	d = r.Route(&routing.Request{Server: "srv11", Caller: "124", Dialed: "1400"})
	if d.Kind != routing.Hunt || d.Fallback != "201" {
		t.Fatalf("124 dials 1400: %s (%s) fallback %q", d.Kind, d.Reason, d.Fallback)
	}
	r.FallbackInto(&d, &fd)
	check(t, fd, want{kind: routing.Local, org: "orgB", members: []string{"201"}, callerID: []string{"2124"}, billing: "orgA"})

	// Not a hunt: nothing to fall back to.
	d = r.Route(&routing.Request{Server: "srv11", Caller: "3999", Dialed: "3998"})
	r.FallbackInto(&d, &fd)
	if fd.Kind != routing.Rejected {
		t.Errorf("fallback of a call to an extension: %s, want rejected", fd.Kind)
	}
}

// An IVR's or the media server's own transfer (uuid_transfer, a dialplan
// transfer, an ARI redirect) of an external call routes in the org that
// received its DID, never as a new DID (SPEC §4): 122099 reaches 2099 on
// server 12 showing the PSTN caller, counting 2 + 1.
func TestIVRTransferRoutesInTheCallsOrg(t *testing.T) {
	r := labRouter(t)
	const caller = "+4915112345678"
	// Without the transfer's org, 122099 from the PSTN is a DID nobody has.
	if d := r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: caller, Dialed: "122099"}); d.Cause != routing.CauseUnallocated {
		t.Fatalf("122099 as a DID: %s %s, want unallocated", d.Kind, d.Cause)
	}
	for _, req := range []routing.Request{
		{Server: "srv11", Source: "127.0.0.99", Caller: caller, Dialed: "122099", Transfer: routing.IVR, TransferOrg: "acme"},
		{Server: "srv11", Source: "127.0.0.99", Caller: caller, Dialed: "122099", Transfer: routing.IVR, Previous: "+4930100100"},
		{Server: "srv11", Source: "127.0.0.99", Caller: caller, Dialed: "122099", Transfer: routing.IVR, Previous: "4930100100"},
	} {
		d := r.Route(&req)
		if d.Kind != routing.InterServer || d.Target.Number != "2099" || d.Org.ID != "acme" {
			t.Fatalf("ivr transfer (org %q previous %q): %s %s %s (%s)", req.TransferOrg, req.Previous, d.Kind, d.Cause, d.Target.Number, d.Reason)
		}
		if d.Target.CallerID != caller || d.Origin != routing.FromPSTN || d.Billing != "acme" {
			t.Errorf("ivr transfer shows %q, origin %s, billing %s; want the PSTN caller, pstn, acme", d.Target.CallerID, d.Origin, d.Billing)
		}
		s1 := d.InLegs.Count("srv11") + d.Target.Legs.Count("srv11")
		if s2 := d.Target.Legs.Count("srv12"); s1 != 2 || s2 != 1 {
			t.Errorf("ivr transfer counts srv11=%d srv12=%d, want 2 and 1", s1, s2)
		}
	}
	// In the org's own numbers: a local extension and a group.
	if d := r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: caller, Dialed: "3998",
		Transfer: routing.IVR, TransferOrg: "acme"}); d.Kind != routing.Local || d.Target.CallerID != caller {
		t.Errorf("ivr transfer to 3998: %s shows %q (%s)", d.Kind, d.Target.CallerID, d.Reason)
	}
	if d := r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: caller, Dialed: "8008003",
		Transfer: routing.IVR, TransferOrg: "grp1"}); d.Kind != routing.Hunt || d.Target.Number != "77721403" {
		t.Errorf("ivr transfer to 8008003 in grp1: %s %s (%s)", d.Kind, d.Target.Number, d.Reason)
	}
	// Not in another org, and not to the PSTN: no user's rule allows it.
	if d := r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: caller, Dialed: "8008003",
		Transfer: routing.IVR, TransferOrg: "acme"}); d.Cause != routing.CauseUnallocated {
		t.Errorf("ivr transfer to another org's number: %s %s", d.Kind, d.Cause)
	}
	if d := r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: caller, Dialed: "030123456",
		Transfer: routing.IVR, TransferOrg: "acme"}); d.Cause != routing.CauseRejected {
		t.Errorf("ivr transfer to the PSTN: %s %s, want rejected", d.Kind, d.Cause)
	}
	// An unknown org and a previous destination that is no DID: nothing to
	// route it in.
	if d := r.Route(&routing.Request{Server: "srv11", Source: "127.0.0.99", Caller: caller, Dialed: "122099",
		Transfer: routing.IVR, Previous: "1000"}); d.Cause != routing.CauseUnallocated {
		t.Errorf("ivr transfer without an org: %s %s", d.Kind, d.Cause)
	}
	// A phone's call moved on by an IVR: the phone is shown as on its own
	// calls, prefixed across servers; no leg counts on its way in.
	d := r.Route(&routing.Request{Server: "srv11", Caller: "3998", Dialed: "122099", Transfer: routing.IVR, TransferOrg: "acme"})
	if d.Kind != routing.InterServer || d.Target.CallerID != "113998" || d.InLegs.Len() != 0 || d.Origin != routing.FromPhone {
		t.Errorf("ivr transfer of 3998's call: %s shows %q in-legs %s origin %s", d.Kind, d.Target.CallerID, d.InLegs, d.Origin)
	}
	// A trunk call's party: counted on its way in over the trunk.
	d = r.Route(&routing.Request{Server: "srv12", Source: "srv11", Caller: "113999", MarkOrg: "acme", Dialed: "113998",
		Transfer: routing.IVR, TransferOrg: "acme"})
	if d.Kind != routing.InterServer || d.Target.CallerID != "113999" || d.InLegs.String() != "srv12:trunk-in(acme)" {
		t.Errorf("ivr transfer of a trunk call: %s shows %q in-legs %s (%s)", d.Kind, d.Target.CallerID, d.InLegs, d.Reason)
	}
	if k, ok := routing.ParseTransfer("ivr"); !ok || k != routing.IVR || k.String() != "ivr" {
		t.Errorf("ParseTransfer(ivr) = %v %v", k, ok)
	}
}
