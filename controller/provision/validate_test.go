package provision_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/examples"
)

// base is a small valid plan; each test breaks one thing in it.
const base = `
servers:
  - name: s1
    kind: freeswitch
    prefix: "11"
    freeswitch: {address: "127.0.0.1:8021", password: ClueCon}
    trunks:
      s2: {dial: "sofia/gateway/s2/{dest}", from: ["10.0.0.2"]}
  - name: s2
    kind: asterisk
    prefix: "12"
    asterisk: {url: "http://127.0.0.1:8088/ari", user: ari, password: ari, app: callctl}
orgs:
  - id: a
    country_code: "49"
    national_prefix: "0"
    international_prefix: "00"
    default_outgoing_number: "+4930111111"
    linked_orgs: [b]
    outbound_rules:
      - name: r
        org_connect: [{org: b, prefix: "5"}]
    users:
      - {extension: "100", server: s1, outbound_rule: r}
      - {extension: "101", server: s2}
    sip_numbers:
      - {number: "7001", server: s1, next: "7002"}
      - {number: "7002", server: s1, next: "0000"}
    service_numbers:
      - {number: "800", start: "7001"}
  - id: b
    country_code: "49"
    national_prefix: "0"
    international_prefix: "00"
    users:
      - {extension: "200", server: s1}
numbers:
  - {number: "+4930111111", owner: a, destination: "100"}
  - {number: "+4930222222", owner: b}
`

func load(t *testing.T, doc string) (*provision.Plan, provision.Problems, error) {
	t.Helper()
	return provision.Load("plan.yaml", []byte(doc))
}

func TestBaseIsValid(t *testing.T) {
	p, probs, err := load(t, base)
	if err != nil || p == nil {
		t.Fatalf("base plan: %v %v", err, probs)
	}
	if len(probs) != 0 {
		t.Fatalf("base plan has problems: %v", probs)
	}
}

func TestLabIsValid(t *testing.T) {
	p, probs, err := provision.Load(examples.LabName, examples.Lab)
	if err != nil || p == nil {
		t.Fatalf("lab plan: %v", err)
	}
	for _, pr := range probs {
		t.Errorf("lab plan problem: %s", pr)
	}
}

// expect asserts that loading doc fails with a problem on object/field whose
// reason mentions reason, located on a line of the file.
func expect(t *testing.T, doc, object, field, reason string) provision.Problem {
	t.Helper()
	p, probs, err := load(t, doc)
	if p != nil {
		t.Fatalf("plan accepted; want %s %s: %s", object, field, reason)
	}
	var inv *provision.InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("error %v is not an InvalidError", err)
	}
	for _, pr := range probs {
		if pr.Severity == provision.Error && strings.Contains(pr.Object, object) && strings.Contains(pr.Field, field) &&
			strings.Contains(pr.Reason, reason) {
			if pr.Line == 0 || pr.File != "plan.yaml" {
				t.Errorf("problem %q has no file:line", pr)
			}
			if !strings.Contains(pr.String(), field) {
				t.Errorf("message %q does not name the field %q", pr, field)
			}
			return pr
		}
	}
	t.Fatalf("no error on %q %q mentioning %q; got:\n%s", object, field, reason, list(probs))
	return provision.Problem{}
}

func list(ps provision.Problems) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString("  " + p.String() + "\n")
	}
	return b.String()
}

func TestValidationRules(t *testing.T) {
	tests := []struct {
		name                  string
		from, to              string
		object, field, reason string
		line                  int
	}{
		{"duplicate numbers across objects: service number = extension", `{number: "800", start: "7001"}`, `{number: "100", start: "7001"}`,
			"org a service number 100", "number", "already extension 100", 0},
		{"duplicate numbers across objects: sip number = extension", `{number: "7002", server: s1, next: "0000"}`, `{number: "101", server: s1, next: "0000"}`,
			"org a sip number 101", "number", "already extension 101", 0},
		{"duplicate DID", `{number: "+4930222222", owner: b}`, `{number: "+4930111111", owner: b}`,
			"number +4930111111", "number", "listed twice", 0},
		{"server prefix outside the range", `prefix: "12"`, `prefix: "8"`, "server s2", "prefix", "outside the allowed range", 11},
		{"server prefix above 98", `prefix: "12"`, `prefix: "99"`, "server s2", "prefix", "outside the allowed range", 11},
		{"server prefixes not prefix-free", `prefix: "12"`, `prefix: "1"`, "server s1", "prefix", "prefix-free", 0},
		{"next number that does not exist", `next: "7002"`, `next: "7009"`, "org a sip number 7001", "next", "not a sip number of org a", 0},
		{"next number in another org", `next: "7002"`, `next: "7009"}
      - {number: "7003", server: s1, next: "0000"`, "org a sip number 7001", "next", "not a sip number", 0},
		{"more service numbers than members", `{number: "800", start: "7001"}`, `{number: "800", start: "7001"}
      - {number: "801", start: "7002"}
      - {number: "802", start: "7001"}`, "service number 802", "number", "at most as many service numbers", 0},
		{"service number without start number", `{number: "800", start: "7001"}`, `{number: "800"}`, "service number 800", "start", "needs a start number", 0},
		{"start number that is no sip number", `{number: "800", start: "7001"}`, `{number: "800", start: "100"}`, "service number 800", "start", "not a sip number", 0},
		{"ambiguous: org-connect prefix + extension = own extension", `{extension: "101", server: s2}`, `{extension: "5200", server: s2}`,
			"org a outbound rule r", "org_connect", "ambiguous", 0},
		{"ambiguous: server prefix + extension = own extension", `{extension: "101", server: s2}`, `{extension: "11100", server: s2}`,
			"org a", "", "dialing 11100 is ambiguous", 0},
		{"outgoing number the org may not use", `{extension: "100", server: s1, outbound_rule: r}`, `{extension: "100", server: s1, outbound_rule: r, outgoing_number: "+4930222222"}`,
			"org a user 100", "outgoing_number", "belongs to org b", 0},
		{"default number the org may not use", `default_outgoing_number: "+4930111111"`, `default_outgoing_number: "+4930999999"`,
			"org a", "default_outgoing_number", "not one of the plan's numbers", 0},
		{"org-connect prefixes that collide", `org_connect: [{org: b, prefix: "5"}]`, `org_connect: [{org: b, prefix: "5"}, {org: b, prefix: "55"}]`,
			"org a outbound rule r", "prefix", "prefix-free", 0},
		{"org-connect to an org that is not linked", `linked_orgs: [b]`, `linked_orgs: []`, "org a outbound rule r", "org", "not linked", 0},
		{"org-connect prefix starting with the national prefix", `prefix: "5"}]`, `prefix: "05"}]`, "org a outbound rule r", "prefix", "national prefix", 0},
		{"malformed extension", `{extension: "100", server: s1, outbound_rule: r}`, `{extension: "10a", server: s1, outbound_rule: r}`, "org a user 10a", "extension", "digits", 0},
		{"malformed DID", `{number: "+4930222222", owner: b}`, `{number: "4930222222", owner: b}`, "number 4930222222", "number", "E.164", 0},
		{"malformed default number", `default_outgoing_number: "+4930111111"`, `default_outgoing_number: "030111111"`, "org a", "default_outgoing_number", "E.164", 0},
		{"malformed caller-id rule prefix", `default_outgoing_number: "+4930111111"`, `default_outgoing_number: "+4930111111"
    caller_id: {rules: [{prefix: "44x", number: "+4930111111"}]}`, "caller-id rule 1", "prefix", "destination prefix", 0},
		{"caller-id rule number the org may not use", `default_outgoing_number: "+4930111111"`, `default_outgoing_number: "+4930111111"
    caller_id: {rules: [{prefix: "0044", number: "+4930222222"}]}`, "caller-id rule 1", "number", "belongs to org b", 0},
		{"unknown server", `{extension: "101", server: s2}`, `{extension: "101", server: s9}`, "org a user 101", "server", "no server named", 0},
		{"unknown outbound rule", `{extension: "100", server: s1, outbound_rule: r}`, `{extension: "100", server: s1, outbound_rule: x}`, "org a user 100", "outbound_rule", "no outbound rule", 0},
		{"hostile endpoint", `{extension: "101", server: s2}`, `{extension: "101", server: s2, endpoint: "PJSIP/x&PJSIP/y"}`, "org a user 101", "endpoint", "only letters", 0},
		{"trunk template without dest", `dial: "sofia/gateway/s2/{dest}"`, `dial: "sofia/gateway/s2/1000"`, "server s1", "dial", "{dest}", 0},
		{"unknown media server kind", `kind: asterisk`, `kind: yate`, "server s2", "kind", "not a media server kind", 0},
		{"duplicate server name", `  - name: s2
    kind: asterisk`, `  - name: s1
    kind: asterisk`, "server s1", "name", "duplicate server name", 0},
		{"org without id", `  - id: b
`, `  - id: ""
`, "org #2", "id", "is required", 0},
		{"number destination elsewhere", `{number: "+4930111111", owner: a, destination: "100"}`, `{number: "+4930111111", owner: a, destination: "200"}`,
			"number +4930111111", "destination", "not an extension", 0},
		{"assignment without assignee", `{number: "+4930222222", owner: b}`, `{number: "+4930222222", owner: b, assignment: active}`,
			"number +4930222222", "assignment", "needs assigned_to", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(base, tc.from) {
				t.Fatalf("base does not contain %q", tc.from)
			}
			doc := strings.Replace(base, tc.from, tc.to, 1)
			p := expect(t, doc, tc.object, tc.field, tc.reason)
			if tc.line != 0 && p.Line != tc.line {
				t.Errorf("line = %d, want %d", p.Line, tc.line)
			}
		})
	}
}

func TestEveryProblemAtOnce(t *testing.T) {
	doc := strings.NewReplacer(
		`prefix: "12"`, `prefix: "8"`,
		`next: "7002"`, `next: "7009"`,
		`{number: "800", start: "7001"}`, `{number: "800"}`,
		`{number: "+4930222222", owner: b}`, `{number: "4930222222", owner: b}`,
	).Replace(base)
	_, probs, err := load(t, doc)
	if err == nil {
		t.Fatal("plan accepted")
	}
	if n := probs.Errors(); n < 4 {
		t.Fatalf("got %d errors, want all 4 at once:\n%s", n, list(probs))
	}
	for _, want := range []string{"prefix", "next", "start", "number"} {
		found := false
		for _, p := range probs {
			if p.Field == want {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem on field %s:\n%s", want, list(probs))
		}
	}
}

func TestLoopIsAWarning(t *testing.T) {
	doc := strings.Replace(base, `next: "0000"`, `next: "7001"`, 1)
	p, probs, err := load(t, doc)
	if err != nil || p == nil {
		t.Fatalf("a looping chain must load: %v\n%s", err, list(probs))
	}
	var w *provision.Problem
	for i := range probs {
		if probs[i].Severity == provision.Warning && strings.Contains(probs[i].Reason, "loops") {
			w = &probs[i]
		}
	}
	if w == nil {
		t.Fatalf("no loop warning:\n%s", list(probs))
	}
	if w.Field != "next" || w.Line == 0 {
		t.Errorf("loop warning %q should name next with a line", w)
	}
	// The cycle guard: each member at most once.
	if m := p.Org("a").SIPNumbers["7002"]; m.Walk != 2 {
		t.Errorf("walk from 7002 = %d, want 2", m.Walk)
	}
}

func TestUnknownKeysAndTypes(t *testing.T) {
	doc := strings.Replace(base, `channel_limit`, `x`, 1)
	doc = strings.Replace(doc, "    kind: freeswitch\n", "    kind: freeswitch\n    colour: blue\n", 1)
	doc = strings.Replace(doc, "  - id: b\n", "  - id: b\n    channel_limit: many\n", 1)
	_, probs, err := load(t, doc)
	if err == nil {
		t.Fatal("unknown key accepted")
	}
	var sawKey, sawType bool
	for _, p := range probs {
		if strings.Contains(p.Reason, "colour") && p.Line == 5 && p.Object == "server s1" && p.Field == "colour" {
			sawKey = true
		}
		if strings.Contains(p.Reason, "many") && p.Line > 0 && p.Field == "channel_limit" {
			sawType = true
		}
	}
	if !sawKey || !sawType {
		t.Errorf("want the unknown key (line 5) and the bad type, both with lines:\n%s", list(probs))
	}
}

func TestSyntaxError(t *testing.T) {
	_, probs, err := load(t, "servers: [\n  - name: x\n")
	if err == nil || len(probs) != 1 || probs[0].Line == 0 {
		t.Fatalf("syntax error: %v %v", err, probs)
	}
}

func TestShadowingExternalIsAWarning(t *testing.T) {
	doc := strings.Replace(base, `{number: "800", start: "7001"}`, `{number: "02785643", start: "7001"}`, 1)
	p, probs, err := load(t, doc)
	if err != nil || p == nil {
		t.Fatalf("plan rejected: %v\n%s", err, list(probs))
	}
	if len(probs) != 1 || !strings.Contains(probs[0].Reason, "shadows the external number +492785643") {
		t.Errorf("want one shadowing warning, got:\n%s", list(probs))
	}
}

// A file that is empty, only comments, or cut off is never a plan: each is
// an error, so it cannot replace a plan that runs calls.
func TestEmptyAndTruncatedPlans(t *testing.T) {
	lab := string(examples.Lab)
	cut := strings.Index(lab, "orgs:")
	cases := map[string]string{
		"empty":         "",
		"blank lines":   "\n\n  \n",
		"comments only": "# plan for the Berlin site\n# servers come later\n",
		"settings only": "settings: {ring_timeout: 20s}\n",
		"zero servers":  "servers: []\norgs: []\n",
		// Cut in the middle of a flow mapping: a YAML syntax error.
		"cut mid-line": lab[:strings.Index(lab, `name: "Aiko Sato"`)+12],
		// Cut where the rest still parses: the objects left refer to nothing.
		"cut before users": lab[:cut] + "orgs:\n  - id: acme\n    country_code: \"49\"\n    users:\n      - {extension: \"3999\", server: srv11, outbound_rule: world}\n",
	}
	for name, doc := range cases {
		t.Run(name, func(t *testing.T) {
			p, probs, err := load(t, doc)
			var inv *provision.InvalidError
			if p != nil || !errors.As(err, &inv) || probs.Errors() == 0 {
				t.Fatalf("plan %v, err %v: want an invalid plan", p != nil, err)
			}
		})
	}
	_, probs, _ := load(t, "# nothing\n")
	if len(probs) != 1 || !strings.Contains(probs[0].Reason, "no servers") {
		t.Errorf("comment-only file: %v, want one problem saying the plan has no servers", probs)
	}
}

// A misspelt key does not hide the other problems, and the report speaks
// of the plan, not of Go types; a duplicate number points to its first
// listing.
func TestUnknownKeysWithEveryOtherProblem(t *testing.T) {
	doc := strings.Replace(base, "    kind: asterisk\n", "    kind: asterix\n    chanel_limit: 5\n", 1)
	doc = strings.Replace(doc, `default_outgoing_number: "+4930111111"`, "default_outgoing_number: \"+4930111111\"\n    channel_limit: many", 1)
	doc += `  - {number: "+4930222222", owner: b}` + "\n"
	_, probs, err := load(t, doc)
	if err == nil {
		t.Fatal("invalid plan loaded")
	}
	text := fmt.Sprint(probs)
	for _, want := range []string{
		"server s2 chanel_limit: unknown key chanel_limit: a server has name, kind, prefix, channel_limit",
		`server s2 kind: "asterix" is not a media server kind`,
		"many is not a whole number",
		"number +4930222222 is listed twice (first at line 41)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("problems lack %q:\n%s", want, strings.ReplaceAll(text, "} {", "}\n{"))
		}
	}
	if strings.Contains(text, "provision.") || strings.Contains(text, "!!") {
		t.Errorf("problems name Go or YAML types:\n%s", text)
	}
}

// TestWrongShapesInPlanWords: a mapping where a list belongs (and the other
// way round) is told in the plan's words, with its line, never as Go or
// YAML types.
func TestWrongShapesInPlanWords(t *testing.T) {
	doc := strings.Replace(base, "    users:\n      - {extension: \"200\", server: s1}\n", "    users: {extension: \"200\", server: s1}\n", 1)
	doc = strings.Replace(doc, `freeswitch: {address: "127.0.0.1:8021", password: ClueCon}`, `freeswitch: ["127.0.0.1:8021"]`, 1)
	doc = strings.Replace(doc, "  - name: s2\n", "  - name: [s2]\n", 1)
	_, probs, err := load(t, doc)
	if err == nil {
		t.Fatal("invalid plan loaded")
	}
	text := fmt.Sprint(probs)
	for _, want := range []string{"a list is expected, not a mapping", "a mapping is expected, not a list", "text is expected, not a list"} {
		found := false
		for _, p := range probs {
			if strings.Contains(p.Reason, want) && p.Line > 0 {
				found = true
			}
		}
		if !found {
			t.Errorf("problems lack %q with a line:\n%s", want, strings.ReplaceAll(text, "} {", "}\n{"))
		}
	}
	if strings.Contains(text, "provision.") || strings.Contains(text, "!!") || strings.Contains(text, "unmarshal") {
		t.Errorf("problems name Go or YAML types:\n%s", strings.ReplaceAll(text, "} {", "}\n{"))
	}
}
