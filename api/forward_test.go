package api_test

import (
	"strings"
	"testing"

	"github.com/callctl/callctl/controller/provision"
)

// An org's admin sets a user's forward through the API; a target the user
// could not dial is refused with the plan's problem, and nothing changes.
func TestForwardViaAPI(t *testing.T) {
	e := newEnv(t)
	users := "/api/v1/orgs/kundeA/users"
	if a := e.do(roleOrg, "POST", users, provision.User{Extension: "150", Name: "Desk", Server: "srv11"}); a.status != 201 {
		t.Fatalf("add 150: %d %s", a.status, a.body)
	}
	path := users + "/100"
	a := e.do(roleOrg, "GET", path, nil)
	var u provision.User
	a.decode(t, &u)
	bad := u
	bad.Forward = &provision.Forward{Busy: "999"}
	before := e.revision()
	if a := e.do(roleOrg, "PUT", path, bad, "If-Match", a.header.Get("ETag")); a.status != 422 || !strings.Contains(string(a.body), "busy") {
		t.Fatalf("forward to nothing: %d %s, want 422 naming busy", a.status, a.body)
	}
	if e.revision() != before {
		t.Fatal("a refused forward changed the plan")
	}
	a = e.do(roleOrg, "GET", path, nil)
	u.Forward = &provision.Forward{NoAnswer: "150", After: provision.Duration(5e9), Busy: "150"}
	if a := e.do(roleOrg, "PUT", path, u, "If-Match", a.header.Get("ETag")); a.status != 200 {
		t.Fatalf("set forward: %d %s", a.status, a.body)
	}
	var got provision.User
	e.do(roleOrg, "GET", path, nil).decode(t, &got)
	if got.Forward == nil || *got.Forward != *u.Forward {
		t.Errorf("user 100's forward reads back %+v, want %+v", got.Forward, u.Forward)
	}
}
