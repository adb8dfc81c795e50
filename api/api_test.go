package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callctl/callctl/api"
	"github.com/callctl/callctl/control"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
)

// op is one operation of the document.
type op struct {
	method, path, id, scope string
}

func ops(t *testing.T, e *env) []op {
	var out []op
	for path, item := range e.doc.Paths.Map() {
		for method, o := range item.Operations() {
			scope, _ := o.Extensions["x-callctl-scope"].(string)
			out = append(out, op{method: method, path: path, id: o.OperationID, scope: scope})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path+out[i].method < out[j].path+out[j].method })
	if len(out) < 40 {
		t.Fatalf("the document lists %d operations", len(out))
	}
	return out
}

// fill puts the matrix's objects into a path: org kundeA's.
func fill(path string) string {
	return strings.NewReplacer("{org}", orgA, "{ext}", "100", "{number}", "+4930555002", "{rule}", "r1",
		"{server}", "srv11", "{id}", "0123456789abcdef").Replace(path)
}

// bodies are well-formed bodies per operation, so that an allowed request
// goes as far as the plan's validation.
var bodies = map[string]any{
	"putPlan":             api.PlanPut{YAML: "servers: []\n"},
	"putSettings":         provision.Settings{RingTimeout: provision.Duration(15 * time.Second)},
	"createServer":        provision.Server{Name: "srv13", Kind: "freeswitch", Prefix: "13"},
	"putServer":           provision.Server{Name: "srv11", Kind: "freeswitch", Prefix: "11"},
	"createNumber":        provision.Number{Number: "+4930555009", Owner: orgA},
	"putNumber":           provision.Number{Number: "+4930555002", Owner: orgA},
	"createOrg":           provision.Org{ID: "neworg", CountryCode: "49"},
	"putOrg":              api.OrgSettings{ID: orgA, CountryCode: "49"},
	"createUser":          provision.User{Extension: "199", Server: "srv11"},
	"putUser":             provision.User{Extension: "100", Name: "Anna K", Server: "srv11"},
	"createSIPNumber":     provision.SIPNumber{Number: "7001", Server: "srv11", Next: "0000"},
	"putSIPNumber":        provision.SIPNumber{Number: "+4930555002", Server: "srv11", Next: "0000"},
	"createServiceNumber": provision.ServiceNumber{Number: "800", Start: "7001"},
	"putServiceNumber":    provision.ServiceNumber{Number: "+4930555002", Start: "7001"},
	"createOutboundRule":  provision.OutboundRule{Name: "r1"},
	"putOutboundRule":     provision.OutboundRule{Name: "r1"},
	"putCallerID":         provision.CallerIDRules{},
	"putHunt":             provision.HuntSettings{},
	"putOrgNumber":        api.NumberDestination{Destination: "100"},
	"requestAssignment":   api.AssignmentRequest{Number: "+4930555002", To: orgB},
	"confirmAssignment":   api.Confirm{Token: "x"},
}

// leaks are strings only the plan's data holds: an answer refusing a token
// must hold none of them.
var leaks = []string{"+49", "ClueCon", "Kunde", "password", "Anna", "rec-", "call-", "srv1"}

// TestSecurityMatrix: every operation of the document, as every role: the
// status, that a refusal holds nothing of the plan, that a refused change
// changes nothing, and that an org's admin never sees another org's data.
func TestSecurityMatrix(t *testing.T) {
	e0 := newEnv(t)
	for _, o := range ops(t, e0) {
		t.Run(o.id, func(t *testing.T) {
			e := newEnv(t)
			path := fill(o.path)
			for _, role := range roles {
				before := e.revision()
				var body any
				if b, ok := bodies[o.id]; ok {
					body = b
				}
				a := e.do(role, o.method, path, body, "If-Match", "*")
				denied := a.status == http.StatusUnauthorized || a.status == http.StatusForbidden
				var want string
				switch {
				case o.scope == "public":
					want = "200"
				case role == roleNone || role == roleWrong || role == roleRevoked:
					want = "401"
				case role == roleOtherOrg && o.scope != "any", role == roleOrg && o.scope == "cluster":
					want = "403"
				case role == roleCluster && o.id == "confirmAssignment":
					want = "403" // confirmations need the org's own token
				default:
					want = "allowed"
				}
				switch want {
				case "allowed":
					if denied {
						t.Errorf("%s: %d, want it allowed: %s", role, a.status, a.body)
					}
				default:
					if fmt.Sprint(a.status) != want {
						t.Errorf("%s: %d, want %s: %s", role, a.status, want, a.body)
					}
				}
				if want == "401" && a.header.Get("WWW-Authenticate") == "" {
					t.Errorf("%s: 401 without WWW-Authenticate", role)
				}
				if denied {
					var eb struct {
						Error string `json:"error"`
					}
					if err := json.Unmarshal(a.body, &eb); err != nil || eb.Error == "" {
						t.Errorf("%s: refusal body %s", role, a.body)
					}
					for _, l := range leaks {
						if strings.Contains(string(a.body), l) {
							t.Errorf("%s: the refusal holds %q: %s", role, l, a.body)
						}
					}
					if after := e.revision(); after != before {
						t.Errorf("%s: a refused request changed the plan (revision %d -> %d)", role, before, after)
					}
				}
				// An org's admin sees its own org's data only. The extension is
				// looked for as a JSON string: a random port such as 39999 in
				// the org's webhook is not another org's data.
				if (role == roleOrg || role == roleOtherOrg) && !denied && o.scope != "public" {
					for _, l := range []string{"acme", "ACME", "grp1", "orgA", `"3999"`} {
						if strings.Contains(string(a.body), l) {
							t.Errorf("%s %s as %s: the answer holds another org's %q: %s", o.method, path, role, l, a.body)
						}
					}
				}
			}
			// No presented token reaches the log, valid or not: only ids.
			logs := e.logs.String()
			for role, tok := range e.tokens {
				_, secret, _ := strings.Cut(strings.TrimPrefix(tok, "callctl_"), "_")
				if strings.Contains(logs, tok) || secret != "" && strings.Contains(logs, secret) {
					t.Errorf("the token of role %q is in the log:\n%s", role, logs)
				}
			}
		})
	}
}

// TestDocumentAndRoutes: the document is valid OpenAPI, is what the API
// serves, and the API answers nothing outside it.
func TestDocumentAndRoutes(t *testing.T) {
	e := newEnv(t)
	a := e.do(roleNone, "GET", "/api/v1/openapi.json", nil)
	spec, _ := api.Spec()
	if a.status != 200 || string(a.body) != string(spec) {
		t.Fatalf("openapi.json: %d", a.status)
	}
	for _, p := range []string{"/api/v1/nothing", "/api/v2/plan", "/api/v1/orgs/kundeA/users/100/extra"} {
		if a := e.do(roleCluster, "GET", p, nil); a.status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, a.status)
		}
	}
	if a := e.do(roleCluster, "PATCH", "/api/v1/plan", nil); a.status != http.StatusMethodNotAllowed {
		t.Errorf("PATCH /api/v1/plan: %d, want 405", a.status)
	}
}

// TestHostileInput: bodies that are not JSON, have the wrong types or
// unknown fields, are too large, or carry hostile strings: a clear 4xx,
// nothing changes, nothing panics.
func TestHostileInput(t *testing.T) {
	e := newEnv(t)
	users := "/api/v1/orgs/kundeA/users"
	before := e.revision()
	cases := []struct {
		name string
		body any
		want int
	}{
		{"not json", "{extension: 1", 400},
		{"two values", `{"extension":"150","server":"srv11"} {}`, 400},
		{"empty", "", 400},
		{"wrong type", `{"extension": 150, "server": "srv11"}`, 400},
		{"array", `[{"extension":"150"}]`, 400},
		{"unknown field", `{"extension":"150","server":"srv11","admin":true}`, 400},
		{"too large", `{"extension":"150","name":"` + strings.Repeat("x", api.MaxBody) + `"}`, 413},
		{"extension with shell", map[string]string{"extension": "150;rm -rf /", "server": "srv11"}, 422},
		{"extension with dial string", map[string]string{"extension": "150,user/evil", "server": "srv11"}, 422},
		{"name with newline", map[string]string{"extension": "150", "server": "srv11", "name": "Eve\r\nX-Callctl-Org: acme"}, 422},
		{"name with control", map[string]string{"extension": "150", "server": "srv11", "name": "Eve\x00"}, 422},
		{"unknown server", map[string]string{"extension": "150", "server": "srv99"}, 422},
		{"number not e164", map[string]string{"extension": "150", "server": "srv11", "outgoing_number": "+49<script>"}, 422},
		{"endpoint by an org admin", map[string]string{"extension": "150", "server": "srv11", "endpoint": "sofia/gateway/pstn/0049900123"}, 403},
	}
	for _, c := range cases {
		a := e.do(roleOrg, "POST", users, c.body)
		if a.status != c.want {
			t.Errorf("%s: %d, want %d: %.300s", c.name, a.status, c.want, a.body)
		}
	}
	if a := e.do(roleCluster, "POST", "/api/v1/numbers", map[string]string{"number": "+49 30 555", "owner": orgA}); a.status != 422 {
		t.Errorf("number with spaces: %d", a.status)
	}
	if a := e.do(roleCluster, "GET", "/api/v1/records?since=yesterday", nil); a.status != 400 {
		t.Errorf("since=yesterday: %d", a.status)
	}
	if after := e.revision(); after != before {
		t.Fatalf("hostile input changed the plan (revision %d -> %d)", before, after)
	}
	// The invalid-plan answer lists the problem in the plan's words.
	a := e.do(roleOrg, "POST", users, map[string]string{"extension": "150", "server": "srv99"})
	var eb struct {
		Problems []provision.Problem `json:"problems"`
	}
	a.decode(t, &eb)
	if len(eb.Problems) == 0 || eb.Problems[0].Field != "server" || !strings.Contains(eb.Problems[0].Reason, "srv99") {
		t.Errorf("problems %+v", eb.Problems)
	}
}

// TestConcurrentChanges: admins changing one object from the same version:
// one wins, the others get 409; a change without If-Match gets 428.
func TestConcurrentChanges(t *testing.T) {
	e := newEnv(t)
	path := "/api/v1/orgs/kundeA/users/100"
	a := e.do(roleOrg, "GET", path, nil)
	tag := a.header.Get("ETag")
	if a.status != 200 || tag == "" {
		t.Fatalf("GET: %d etag %q", a.status, tag)
	}
	var u provision.User
	a.decode(t, &u)
	if a := e.do(roleOrg, "PUT", path, u); a.status != http.StatusPreconditionRequired {
		t.Fatalf("PUT without If-Match: %d", a.status)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[int]int{}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			v := u
			v.Name = fmt.Sprint("Anna ", i)
			a := e.do(roleOrg, "PUT", path, v, "If-Match", tag)
			mu.Lock()
			got[a.status]++
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	if got[200] != 1 || got[409] != 7 {
		t.Fatalf("8 changes from one version: %v, want one 200 and seven 409", got)
	}
	// A change of another object meanwhile does not make this one stale.
	a = e.do(roleOrg, "GET", path, nil)
	tag = a.header.Get("ETag")
	if a := e.do(roleCluster, "POST", "/api/v1/orgs/acme/users", provision.User{Extension: "3005", Server: "srv11"}); a.status != 201 {
		t.Fatalf("acme user: %d %s", a.status, a.body)
	}
	u.Name = "Anna L"
	if a := e.do(roleOrg, "PUT", path, u, "If-Match", tag); a.status != 200 {
		t.Fatalf("PUT after an unrelated change: %d %s", a.status, a.body)
	}
	// The whole plan: If-Match is its revision.
	a = e.do(roleCluster, "GET", "/api/v1/plan", nil)
	var p api.PlanInfo
	a.decode(t, &p)
	old := a.header.Get("ETag")
	if a := e.do(roleCluster, "PUT", "/api/v1/plan", api.PlanPut{YAML: p.YAML}, "If-Match", old); a.status != 200 {
		t.Fatalf("PUT plan: %d %s", a.status, a.body)
	}
	if a := e.do(roleCluster, "PUT", "/api/v1/plan", api.PlanPut{YAML: p.YAML}, "If-Match", old); a.status != 409 {
		t.Fatalf("PUT plan on an old revision: %d %s", a.status, a.body)
	}
}

// TestAssignmentWorkflow is seed 001 through the API: A's admin requests,
// each org gets its token at its webhook, neither can confirm for the
// other, the number moves to B's PBX only when both confirmed, either side
// resets, and every step is in the audit log of both.
func TestAssignmentWorkflow(t *testing.T) {
	e := newEnv(t)
	const num = "+4930555002"
	a := e.do(roleOrg, "POST", "/api/v1/orgs/kundeA/assignments", api.AssignmentRequest{Number: num, To: orgB})
	if a.status != 201 {
		t.Fatalf("request: %d %s", a.status, a.body)
	}
	var as api.Assignment
	a.decode(t, &as)
	na := e.hooks[orgA].wait(t, "assignment.requested", as.ID)
	nb := e.hooks[orgB].wait(t, "assignment.requested", as.ID)
	if na.Token == "" || nb.Token == "" || na.Token == nb.Token || !strings.Contains(nb.ConfirmURL, "/orgs/kundeB/assignments/"+as.ID+"/confirm") {
		t.Fatalf("notices %+v %+v", na, nb)
	}
	e.secrets = append(e.secrets, na.Token, nb.Token)
	usedBy := func(org string) string {
		t.Helper()
		a := e.do(roleCluster, "GET", "/api/v1/orgs/"+org+"/numbers/"+num, nil)
		var n api.OrgNumber
		if a.status == 404 {
			return ""
		}
		a.decode(t, &n)
		return n.UsedBy
	}
	confirm := func(role, org, token string) answer {
		return e.do(role, "POST", "/api/v1/orgs/"+org+"/assignments/"+as.ID+"/confirm", api.Confirm{Token: token, Destination: "301"})
	}
	// B's admin with A's confirmation token, on B's side: refused.
	if a := confirm(roleOtherOrg, orgB, na.Token); a.status != 403 {
		t.Fatalf("B confirming with A's token: %d %s", a.status, a.body)
	}
	// B's admin confirming on A's side: refused by scope.
	if a := confirm(roleOtherOrg, orgA, na.Token); a.status != 403 {
		t.Fatalf("B confirming for A: %d", a.status)
	}
	// A cluster admin cannot confirm for an org.
	if a := confirm(roleCluster, orgA, na.Token); a.status != 403 {
		t.Fatalf("cluster admin confirming for A: %d", a.status)
	}
	// A confirms (A's destination is B's to choose: refused, then without).
	if a := confirm(roleOrg, orgA, na.Token); a.status != 422 {
		t.Fatalf("A setting B's destination: %d %s", a.status, a.body)
	}
	a = e.do(roleOrg, "POST", "/api/v1/orgs/kundeA/assignments/"+as.ID+"/confirm", api.Confirm{Token: na.Token})
	if a.status != 200 {
		t.Fatalf("A confirms: %d %s", a.status, a.body)
	}
	a.decode(t, &as)
	if as.State != control.Requested || usedBy(orgA) != orgA {
		t.Fatalf("after one confirmation: %s, number used by %s", as.State, usedBy(orgA))
	}
	if a := confirm(roleOtherOrg, orgB, nb.Token); a.status != 200 {
		t.Fatalf("B confirms: %d %s", a.status, a.body)
	} else {
		a.decode(t, &as)
	}
	if as.State != control.Active || usedBy(orgB) != orgB {
		t.Fatalf("after both: %s, number used by %s", as.State, usedBy(orgB))
	}
	plan, _ := e.plans.Running()
	if n := plan.Number(num); n.User.ID != orgB || n.Owner.ID != orgA || n.Destination == nil || n.Destination.User.Ext != "301" {
		t.Fatalf("running plan: number used by %s owned by %s", n.User.ID, n.Owner.ID)
	}
	e.hooks[orgA].wait(t, "assignment.active", as.ID)
	// A second confirmation changes nothing; a reset by B takes it back.
	if a := e.do(roleOtherOrg, "POST", "/api/v1/orgs/kundeB/assignments/"+as.ID+"/reset", nil); a.status != 200 {
		t.Fatalf("reset: %d %s", a.status, a.body)
	}
	plan, _ = e.plans.Running()
	if n := plan.Number(num); n.User.ID != orgA || n.Destination == nil || n.Destination.User.Ext != "100" {
		t.Fatalf("after reset: used by %s", n.User.ID)
	}
	if a := e.do(roleOtherOrg, "GET", "/api/v1/orgs/kundeB/numbers/"+num, nil); a.status != 404 {
		t.Fatalf("B still sees the number: %d %s", a.status, a.body)
	}
	// The audit log of each side has every step; another org reads none.
	for _, role := range []string{roleOrg, roleOtherOrg} {
		org := map[string]string{roleOrg: orgA, roleOtherOrg: orgB}[role]
		a := e.do(role, "GET", "/api/v1/orgs/"+org+"/audit", nil)
		var es []control.Entry
		a.decode(t, &es)
		var steps []string
		for _, x := range es {
			if strings.HasPrefix(x.Action, "assignment.") {
				steps = append(steps, x.Action)
			}
		}
		if fmt.Sprint(steps) != "[assignment.requested assignment.confirmed assignment.confirmed assignment.active assignment.reset]" {
			t.Errorf("%s audit: %v", org, steps)
		}
	}
	if a := e.do("acme", "GET", "/api/v1/orgs/kundeA/audit", nil); a.status != 403 {
		t.Errorf("acme reading kundeA's audit: %d", a.status)
	}
	// A request lapses after its expiry: confirming then is refused.
	a = e.do(roleOrg, "POST", "/api/v1/orgs/kundeA/assignments", api.AssignmentRequest{Number: num, To: orgB, Expires: "50ms"})
	if a.status != 201 {
		t.Fatalf("second request: %d %s", a.status, a.body)
	}
	a.decode(t, &as)
	nb = e.hooks[orgB].wait(t, "assignment.requested", as.ID)
	e.secrets = append(e.secrets, nb.Token)
	for time.Until(as.Expires) > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if a := confirm(roleOtherOrg, orgB, nb.Token); a.status != 409 || !strings.Contains(string(a.body), "expired") {
		t.Fatalf("confirming a lapsed request: %d %s", a.status, a.body)
	}
	a = e.do(roleOtherOrg, "GET", "/api/v1/orgs/kundeB/assignments/"+as.ID, nil)
	a.decode(t, &as)
	if as.State != control.Lapsed {
		t.Fatalf("state %s", as.State)
	}
	// No secret ever reached the log.
	for _, s := range e.secrets {
		if strings.Contains(e.logs.String(), s) {
			t.Fatalf("a token is in the log:\n%s", e.logs.String())
		}
	}
}

// TestViewsKeepOrgsApart: calls, counts and records as an org's admin hold
// that org's only; a cluster admin sees all.
func TestViewsKeepOrgsApart(t *testing.T) {
	e := newEnv(t)
	var calls []controller.CallView
	e.do(roleOrg, "GET", "/api/v1/calls", nil).decode(t, &calls)
	if len(calls) != 1 || calls[0].ID != "call-kundeA" {
		t.Errorf("kundeA's calls: %+v", calls)
	}
	e.do(roleCluster, "GET", "/api/v1/calls", nil).decode(t, &calls)
	if len(calls) != 2 {
		t.Errorf("cluster calls: %+v", calls)
	}
	var cs api.Counts
	e.do(roleOrg, "GET", "/api/v1/counts", nil).decode(t, &cs)
	if len(cs.Servers) != 0 || len(cs.Orgs) != 1 || cs.Orgs[0] != (api.Count{Name: orgA, InUse: 1}) {
		t.Errorf("kundeA's counts: %+v", cs)
	}
	e.do(roleCluster, "GET", "/api/v1/counts", nil).decode(t, &cs)
	if len(cs.Servers) != 2 || cs.Servers[0] != (api.Count{Name: "srv11", InUse: 2, Limit: 30}) {
		t.Errorf("cluster counts: %+v", cs)
	}
	var recs []controller.Record
	e.do(roleOrg, "GET", "/api/v1/records", nil).decode(t, &recs)
	if len(recs) != 1 || recs[0].CallID != "rec-kundeA-1" {
		t.Errorf("kundeA's records: %+v", recs)
	}
	if a := e.do(roleOrg, "GET", "/api/v1/records?org=acme", nil); a.status != 403 {
		t.Errorf("kundeA asking for acme's records: %d", a.status)
	}
	e.do(roleCluster, "GET", "/api/v1/records?number=%2B4930555001", nil).decode(t, &recs)
	if len(recs) != 1 || recs[0].CallID != "rec-kundeA-1" {
		t.Errorf("records by number: %+v", recs)
	}
	e.do(roleCluster, "GET", "/api/v1/records?call_id=rec-acme-1", nil).decode(t, &recs)
	if len(recs) != 1 {
		t.Errorf("records by call id: %+v", recs)
	}
	// Releasing a dead server's legs.
	var rel struct{ Released int }
	e.do(roleCluster, "POST", "/api/v1/servers/srv11/release-legs", nil).decode(t, &rel)
	if n, _ := e.store.Count(context.Background(), "server", "srv11"); rel.Released != 2 || n != 0 {
		t.Errorf("released %d, count now %d", rel.Released, n)
	}
}
