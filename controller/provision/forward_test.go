package provision_test

import (
	"strings"
	"testing"
	"time"
)

// forwarding is base with forwards everywhere (SPEC §4).
var forwarding = strings.NewReplacer(
	`{extension: "100", server: s1, outbound_rule: r}`,
	`{extension: "100", server: s1, outbound_rule: r, forward: {no_answer: "12101", after: 4s, busy: "5200"}}`,
	`{extension: "101", server: s2}`,
	`{extension: "101", server: s2, forward: {busy: "800"}}`,
	`    trunks:
      s2:`, `    channel_limit: 10
    limit_forward: {org: a, target: "101"}
    trunks:
      s2:`,
	`    linked_orgs: [b]`, `    linked_orgs: [b]
    feature_codes: ["*98"]
    channel_limit: 4
    limit_forward: {target: "7002T"}`,
).Replace(base)

func TestForwardsCompile(t *testing.T) {
	p, probs, err := load(t, forwarding)
	if err != nil {
		t.Fatalf("plan with forwards: %v\n%s", err, list(probs))
	}
	if p.MaxForwards != 5 {
		t.Errorf("max forwards %d, want the default 5", p.MaxForwards)
	}
	a := p.Org("a")
	f := a.Users["100"].Forward
	if f.NoAnswer != "12101" || f.After != 4*time.Second || f.Busy != "5200" {
		t.Errorf("user 100 forward %+v", f)
	}
	if f := a.Users["101"].Forward; f.Busy != "800" || f.NoAnswer != "" || f.After != 0 {
		t.Errorf("user 101 forward %+v", f)
	}
	if lf := p.Server("s1").LimitForward; lf == nil || lf.Org != a || lf.Target != "101" {
		t.Errorf("server s1 limit forward %+v", lf)
	}
	if lf := a.LimitForward; lf == nil || lf.Org != a || lf.Target != "7002T" {
		t.Errorf("org a limit forward %+v", lf)
	}
	// A no-answer forward without its wait waits the org's ring time.
	p, _, err = load(t, strings.Replace(forwarding, `after: 4s, `, ``, 1))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Org("a").Users["100"].Forward.After; got != 20*time.Second {
		t.Errorf("default wait %s, want the ring timeout 20s", got)
	}
}

func TestForwardValidation(t *testing.T) {
	tests := []struct {
		name, from, to, object, field, reason string
	}{
		{"max_forwards above 20", `servers:`, "settings: {max_forwards: 21}\nservers:", "settings", "max_forwards", "1-20"},
		{"after below 1s", `after: 4s`, `after: 500ms`, "org a user 100", "after", "between 1s and 5m"},
		{"after above 5 minutes", `after: 4s`, `after: 6m`, "org a user 100", "after", "between 1s and 5m"},
		{"after without a no-answer target", `no_answer: "12101", after: 4s, `, `after: 4s, `, "org a user 100", "after", "no_answer"},
		{"target nobody answers to", `no_answer: "12101"`, `no_answer: "999"`, "org a user 100", "no_answer", "nothing in org a answers"},
		{"extension of another org without org-connect", `{busy: "800"}`, `{busy: "5200"}`, "org a user 101", "busy", "nothing in org a"},
		{"another server's prefix with an extension not there", `no_answer: "12101"`, `no_answer: "11101"`, "org a user 100", "no_answer", "nothing in org a"},
		{"external without an outbound rule", `{busy: "800"}`, `{busy: "030123456"}`, "org a user 101", "busy", "no outbound rule"},
		{"feature code", `{busy: "800"}`, `{busy: "*98"}`, "org a user 101", "busy", "feature code is not a forward target: it hands the call to the media server's own dialplan"},
		{"feature code behind a server prefix", `{busy: "800"}`, `{busy: "12*98"}`, "org a user 101", "busy", "feature code is not a forward target"},
		{"feature code as a limit forward", `{target: "7002T"}`, `{target: "*98"}`, "org a", "target", "media server's own dialplan"},
		{"emergency number", `{busy: "800"}`, `{busy: "112"}`, "org a user 101", "busy", "emergency"},
		{"forward to oneself", `{busy: "800"}`, `{busy: "101"}`, "org a user 101", "busy", "themselves"},
		{"hostile target", `no_answer: "12101"`, `no_answer: "101,user/x"`, "org a user 100", "no_answer", "0-9"},
		{"server limit forward without org", `{org: a, target: "101"}`, `{target: "101"}`, "server s1", "org", "required"},
		{"server limit forward to an unknown org", `{org: a, target: "101"}`, `{org: z, target: "101"}`, "server s1", "org", "no org"},
		{"server limit forward without target", `{org: a, target: "101"}`, `{org: a}`, "server s1", "target", "required"},
		{"server limit forward to the PSTN", `{org: a, target: "101"}`, `{org: a, target: "030123456"}`, "server s1", "target", "own numbers"},
		{"org limit forward in another org", `{target: "7002T"}`, `{org: b, target: "200"}`, "org a", "org", "dialed in the org itself"},
		{"org limit forward to a member that is not", `{target: "7002T"}`, `{target: "7009T"}`, "org a", "target", "not a sip number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(forwarding, tc.from) {
				t.Fatalf("plan does not contain %q", tc.from)
			}
			expect(t, strings.Replace(forwarding, tc.from, tc.to, 1), tc.object, tc.field, tc.reason)
		})
	}
}

// An org-connect forward is dialable for the user whose rule has the
// prefix, and for nobody else.
func TestForwardFollowsTheOwnersRule(t *testing.T) {
	doc := strings.Replace(forwarding, `{busy: "800"}`, `{busy: "11100"}`, 1)
	if _, probs, err := load(t, doc); err != nil {
		t.Fatalf("101 forwarding to 100 over its server prefix: %v\n%s", err, list(probs))
	}
	expect(t, strings.Replace(forwarding, `{busy: "800"}`, `{busy: "5200"}`, 1), "org a user 101", "busy", "nothing in org a")
}
