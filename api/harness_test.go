package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/callctl/callctl/adapters/file"
	"github.com/callctl/callctl/adapters/memory"
	"github.com/callctl/callctl/api"
	"github.com/callctl/callctl/auth"
	"github.com/callctl/callctl/control"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/accounting"
	"github.com/callctl/callctl/controller/hunt"
	"github.com/callctl/callctl/examples"
)

// syncBuf is a log sink for the server's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// receiver is an org's webhook: it keeps the notices it got.
type receiver struct {
	mu      sync.Mutex
	notices []control.Notice
	srv     *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var n control.Notice
		if err := json.NewDecoder(req.Body).Decode(&n); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		r.mu.Lock()
		r.notices = append(r.notices, n)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// wait returns the first notice of event for assignment id.
func (r *receiver) wait(t *testing.T, event, id string) control.Notice {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for _, n := range r.notices {
			if n.Event == event && n.Assignment == id {
				r.mu.Unlock()
				return n
			}
		}
		r.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("webhook got no %s for %s", event, id)
	return control.Notice{}
}

// env is an API over a node's real stores (local files, in-memory counts
// and records), with a token per role.
type env struct {
	t       *testing.T
	srv     *api.Server
	plans   *control.Service
	store   *memory.Store
	logs    *syncBuf
	tokens  map[string]string // role -> presented token
	secrets []string          // every secret handed out, to check logs
	hooks   map[string]*receiver
	doc     *openapi3.T
	router  routers.Router
}

// roles of the security matrix.
const (
	roleNone     = "none"
	roleWrong    = "wrong token"
	roleRevoked  = "revoked token"
	roleOtherOrg = "other org"
	roleOrg      = "org admin"
	roleCluster  = "cluster admin"
)

var roles = []string{roleNone, roleWrong, roleRevoked, roleOtherOrg, roleOrg, roleCluster}

// The org the matrix acts on, and the other org whose token tries it.
const (
	orgA = "kundeA"
	orgB = "kundeB"
)

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, logs: &syncBuf{}, tokens: map[string]string{}, hooks: map[string]*receiver{orgA: newReceiver(t), orgB: newReceiver(t)}}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := t.TempDir()
	cs, err := file.NewControl(dir)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := file.NewTokens(dir)
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Replace(string(examples.Lab), "  - id: kundeA\n", "  - id: kundeA\n    webhook: "+e.hooks[orgA].srv.URL+"/a\n", 1)
	plan = strings.Replace(plan, "  - id: kundeB\n", "  - id: kundeB\n    webhook: "+e.hooks[orgB].srv.URL+"/b\n", 1)
	plan += `  - {number: "+4930555002", owner: kundeA, destination: "100"}` + "\n"
	e.plans = control.New(control.Options{Node: "n1", Store: cs, SeedName: "test plan", Seed: []byte(plan), Logger: log})
	if _, err := e.plans.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.store = memory.New(memory.Options{Logger: log})
	ctx := context.Background()
	for i, l := range []accounting.Leg{{Server: "srv11", Org: orgA, Kind: accounting.PSTNIn}, {Server: "srv11", Org: "acme", Kind: accounting.PSTNIn}} {
		if err := e.store.Acquire(ctx, accounting.Hold{ID: "call" + string(rune('0'+i)) + "/in/0", Leg: l, Channel: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	for _, r := range []controller.Record{
		{CallID: "rec-kundeA-1", Server: "srv11", Caller: "+4930999", Dialed: "+4930555001", Route: "local", Org: orgB, Billing: orgA, Start: now, End: now, PlanVersion: "x", HangupCause: "NORMAL_CLEARING", Attempts: []hunt.Attempt{}, Legs: []accounting.Leg{}},
		{ID: "r-acme-1", CallID: "rec-acme-1", Server: "srv11", Caller: "3999", Dialed: "122099", Route: "inter-server", Org: "acme", CallerOrg: "acme", Billing: "acme", Start: now, End: now, PlanVersion: "x", HangupCause: "NORMAL_CLEARING", Attempts: []hunt.Attempt{}, Legs: []accounting.Leg{},
			Transfer: "blind", TransferFrom: "r-acme-0", TransferBy: "3998"},
		{ID: "r-acme-2", CallID: "rec-acme-2", Server: "srv11", Caller: "anonymous", Withheld: true, Dialed: "+4930100100", Route: "local", Org: "acme", Billing: "acme", Start: now, End: now, PlanVersion: "x", HangupCause: "NORMAL_CLEARING", Attempts: []hunt.Attempt{}, Legs: []accounting.Leg{}},
	} {
		r := r
		if err := e.store.Write(ctx, &r); err != nil {
			t.Fatal(err)
		}
	}
	calls := []controller.CallView{
		{ID: "call-kundeA", Server: "srv11", Caller: "300", Dialed: "030111", Route: "external", Start: now, Org: orgB, CallerOrg: orgB, Billing: orgA},
		{ID: "call-acme", Server: "srv11", Caller: "3999", Dialed: "2099", Route: "local", Start: now, Org: "acme", CallerOrg: "acme", Billing: "acme"},
	}
	mk := func(name, org string) string {
		_, secret, err := auth.Create(ctx, ts, name, org, now)
		if err != nil {
			t.Fatal(err)
		}
		e.secrets = append(e.secrets, secret)
		return secret
	}
	e.tokens[roleCluster] = mk("ops", "")
	e.tokens[roleOrg] = mk("kundeA admin", orgA)
	e.tokens[roleOtherOrg] = mk("kundeB admin", orgB)
	e.tokens["acme"] = mk("acme admin", "acme")
	revoked := mk("gone", orgA)
	if _, err := auth.Revoke(ctx, ts, auth.ID(revoked), now); err != nil {
		t.Fatal(err)
	}
	e.tokens[roleRevoked] = revoked
	e.tokens[roleWrong] = "callctl_" + auth.ID(e.tokens[roleOrg]) + "_" + strings.Repeat("A", 43)
	notifier := &control.Notifier{BaseURL: "http://127.0.0.1:9464", Store: cs, Logger: log, Tries: 2, Backoff: 10 * time.Millisecond}
	nctx, stop := context.WithCancel(context.Background())
	t.Cleanup(func() { stop(); notifier.Wait() })
	e.srv, err = api.New(api.Options{Plans: e.plans, Tokens: ts, Calls: func() []controller.CallView { return calls },
		Counts: e.store, Records: records{e.store}, Release: e.store, Notifier: notifier, Logger: log, Context: nctx})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := api.Spec()
	if err != nil {
		t.Fatal(err)
	}
	loader := openapi3.NewLoader()
	if e.doc, err = loader.LoadFromData(spec); err != nil {
		t.Fatal(err)
	}
	if err := e.doc.Validate(loader.Context); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	if e.router, err = legacy.NewRouter(e.doc); err != nil {
		t.Fatal(err)
	}
	return e
}

type records struct{ s *memory.Store }

func (r records) Query(ctx context.Context, q api.RecordQuery) ([]controller.Record, error) {
	return r.s.Query(ctx, q.Since, q.Until, q.Match, q.Limit)
}

// answer is a response with what the schema check found.
type answer struct {
	status int
	header http.Header
	body   []byte
	// requestValid says whether the request fits the document.
	requestValid bool
}

func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.body, v); err != nil {
		t.Fatalf("answer %d does not decode: %v: %s", a.status, err, a.body)
	}
}

// do sends a request as role and holds it and its answer to the document:
// an answer must fit it always; a request that does not fit it must be
// refused (4xx).
func (e *env) do(role, method, path string, body any, header ...string) answer {
	e.t.Helper()
	var rd io.Reader
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	case string:
		raw = []byte(b)
	default:
		raw, _ = json.Marshal(b)
	}
	if raw != nil {
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, rd)
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok := e.tokens[role]; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	a := answer{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}

	// The schema check, on a copy of the request.
	check := httptest.NewRequest(method, path, bytes.NewReader(raw))
	check.Header = req.Header.Clone()
	route, params, err := e.router.FindRoute(check)
	if err != nil {
		if a.status != http.StatusNotFound && a.status != http.StatusMethodNotAllowed {
			e.t.Errorf("%s %s: not in the document, yet answered %d", method, path, a.status)
		}
		return a
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: check, PathParams: params, Route: route, Options: opts}
	a.requestValid = openapi3filter.ValidateRequest(context.Background(), in) == nil
	if !a.requestValid && a.status < 400 {
		e.t.Errorf("%s %s as %s: the request does not fit the document, yet answered %d", method, path, role, a.status)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: a.status, Header: a.header, Options: opts}
	out.SetBodyBytes(a.body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		e.t.Errorf("%s %s as %s: answer %d does not fit the document: %v\n%s", method, path, role, a.status, err, a.body)
	}
	return a
}

func (e *env) revision() int64 {
	st, err := e.plans.Load(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return st.Revision
}
