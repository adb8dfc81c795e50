// Package api is callctl's HTTP API, /api/v1 (SPEC §9). Its OpenAPI
// document (openapi.yaml, served as /api/v1/openapi.json) is the one source
// of its routes and of who may call each: the server registers exactly the
// operations the document lists, each with its handler, and refuses to start
// if one lacks the other. Every request but the document itself needs an API
// token (401 without a valid one); each operation is for cluster admins, or
// for an org's admins on their own org (403 outside the token's scope).
package api

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/callctl/callctl/auth"
	"github.com/callctl/callctl/control"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
)

//go:embed openapi.yaml
var specYAML []byte

// Spec returns the OpenAPI document as JSON.
func Spec() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(specYAML, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	return json.MarshalIndent(doc, "", "  ")
}

// MaxBody bounds a request body: plans are large, but not larger.
const MaxBody = 4 << 20

// Counter reads channel counts (accounting.Limiter's).
type Counter interface {
	Count(ctx context.Context, scope, name string) (int, error)
}

// RecordQuery selects call records.
type RecordQuery struct {
	// Org keeps records where the org is the callee's, the caller's or the
	// billing account; empty keeps all.
	Org string
	// Since and Until bound the call's start (zero: open).
	Since, Until time.Time
	// Number keeps records where it is the caller, the dialed number, the
	// external number or the caller ID presented.
	Number string
	CallID string
	// Limit is the most records returned, newest first.
	Limit int
}

// Match says whether r is selected.
func (q *RecordQuery) Match(r *controller.Record) bool {
	if q.Org != "" && r.Org != q.Org && r.CallerOrg != q.Org && r.Billing != q.Org {
		return false
	}
	if !q.Since.IsZero() && r.Start.Before(q.Since) || !q.Until.IsZero() && r.Start.After(q.Until) {
		return false
	}
	if q.CallID != "" && r.CallID != q.CallID {
		return false
	}
	if q.Number != "" && r.Caller != q.Number && r.Dialed != q.Number && r.External != q.Number && r.CallerID != q.Number {
		return false
	}
	return true
}

// Records finds call records (the Redis stream, or a node's journal).
type Records interface {
	Query(ctx context.Context, q RecordQuery) ([]controller.Record, error)
}

// LegReleaser releases every counted leg of a media server that will not
// come back (an operator's decision).
type LegReleaser interface {
	ReleaseServer(ctx context.Context, server string) (int, error)
}

// Options are what the API serves.
type Options struct {
	Plans    *control.Service
	Tokens   auth.Store
	Calls    func() []controller.CallView
	Counts   Counter
	Records  Records
	Release  LegReleaser
	Notifier *control.Notifier
	Logger   *slog.Logger
	// Context is the node's: notices are delivered until it ends.
	Context context.Context
}

// Server is the API's handler.
type Server struct {
	opt  Options
	log  *slog.Logger
	mux  *http.ServeMux
	spec []byte
}

// operation is one route of the document.
type operation struct {
	method, path, id, scope string
}

// scopes of operations (x-callctl-scope in the document).
const (
	scopePublic  = "public"  // no token
	scopeCluster = "cluster" // cluster admins
	scopeOrg     = "org"     // the {org} of the path: its admins and cluster admins
	scopeAny     = "any"     // any valid token; the handler narrows what an org admin sees
)

func operations() ([]operation, error) {
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `yaml:"operationId"`
			Scope       string `yaml:"x-callctl-scope"`
		} `yaml:"paths"`
	}
	if err := yaml.Unmarshal(specYAML, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	var ops []operation
	for path, methods := range doc.Paths {
		for m, op := range methods {
			if m == "parameters" {
				continue
			}
			ops = append(ops, operation{method: strings.ToUpper(m), path: path, id: op.OperationID, scope: op.Scope})
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].path+ops[i].method < ops[j].path+ops[j].method })
	return ops, nil
}

// New builds the API from its document: every documented operation gets its
// handler, and a handler the document does not list is an error.
func New(opt Options) (*Server, error) {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Context == nil {
		opt.Context = context.Background()
	}
	s := &Server{opt: opt, log: opt.Logger, mux: http.NewServeMux()}
	var err error
	if s.spec, err = Spec(); err != nil {
		return nil, err
	}
	ops, err := operations()
	if err != nil {
		return nil, err
	}
	handlers := s.handlers()
	used := map[string]bool{}
	for _, op := range ops {
		h, ok := handlers[op.id]
		if !ok {
			return nil, fmt.Errorf("api: operation %s (%s %s) has no handler", op.id, op.method, op.path)
		}
		switch op.scope {
		case scopePublic, scopeCluster, scopeOrg, scopeAny:
		default:
			return nil, fmt.Errorf("api: operation %s has no x-callctl-scope (public, cluster, org or any)", op.id)
		}
		used[op.id] = true
		s.mux.Handle(op.method+" "+op.path, s.guard(op, h))
	}
	for id := range handlers {
		if !used[id] {
			return nil, fmt.Errorf("api: handler %s is not in the OpenAPI document", id)
		}
	}
	// Anything else under /api/ is a 404 in the API's own form (a wrong
	// method on a known path stays a 405 from the mux).
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{"GET", "PUT", "POST", "DELETE"} {
			r2 := r.Clone(r.Context())
			r2.Method = m
			if _, pat := s.mux.Handler(r2); pat != "/api/" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, "this path takes "+strings.Join(allow, ", "))
			return
		}
		writeError(w, http.StatusNotFound, "no such API path")
	})
	return s, nil
}

func (s *Server) handlers() map[string]handler {
	h := map[string]handler{}
	s.planHandlers(h)
	s.assignHandlers(h)
	s.viewHandlers(h)
	return h
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// request is one authorised request.
type request struct {
	*http.Request
	tok   auth.Token
	actor control.Actor
	ctx   context.Context
}

// org is the token's org ("" for a cluster admin).
func (r *request) org() string { return r.tok.Org }

type handler func(w http.ResponseWriter, r *request)

// guard authenticates and authorises a request before its handler runs.
func (s *Server) guard(op operation, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		req := &request{Request: hr, ctx: hr.Context()}
		if op.scope != scopePublic {
			tok, status, msg := s.authenticate(hr)
			if status != 0 {
				if status == http.StatusUnauthorized {
					w.Header().Set("WWW-Authenticate", `Bearer realm="callctl"`)
				}
				writeError(w, status, msg)
				return
			}
			req.tok = tok
			req.actor = control.Actor{ID: tok.ID, Name: tok.Name, Org: tok.Org}
			switch {
			case tok.Cluster():
			case op.scope == scopeCluster:
				writeError(w, http.StatusForbidden, "this is for cluster admins; the token is org "+tok.Org+"'s")
				return
			case op.scope == scopeOrg && hr.PathValue("org") != tok.Org:
				writeError(w, http.StatusForbidden, "the token is org "+tok.Org+"'s and acts on that org only")
				return
			}
		}
		hr.Body = http.MaxBytesReader(w, hr.Body, MaxBody)
		h(w, req)
	})
}

// authenticate returns the token of the request, or the status and message
// to refuse it with. The token itself is never logged: only its id.
func (s *Server) authenticate(r *http.Request) (auth.Token, int, string) {
	h := r.Header.Get("Authorization")
	presented, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || presented == "" {
		return auth.Token{}, http.StatusUnauthorized, "an API token is needed: Authorization: Bearer <token>"
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	tok, err := auth.Verify(ctx, s.opt.Tokens, strings.TrimSpace(presented))
	switch {
	case errors.Is(err, auth.ErrInvalid):
		s.log.Info("API request with an invalid token", "token_id", auth.ID(presented), "path", r.URL.Path, "remote", r.RemoteAddr)
		return auth.Token{}, http.StatusUnauthorized, "the token is not valid (unknown, revoked or malformed)"
	case err != nil:
		s.log.Error("tokens cannot be checked", "err", err)
		return auth.Token{}, http.StatusServiceUnavailable, "tokens cannot be checked now: the state store is unavailable"
	}
	return tok, 0, ""
}

// apiError is the body of every error.
type apiError struct {
	Error    string             `json:"error"`
	Problems provision.Problems `json:"problems,omitempty"`
	Revision int64              `json:"revision,omitempty"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, apiError{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// decode reads a JSON body strictly: one object, no unknown fields, within
// MaxBody. It writes the error and returns false when the body is not one.
func decode(w http.ResponseWriter, r *request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.More() || dec.Decode(&struct{}{}) != io.EOF {
			err = errors.New("more than one JSON value")
		}
	}
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", MaxBody))
	case errors.As(err, &syn), errors.Is(err, io.ErrUnexpectedEOF):
		writeError(w, http.StatusBadRequest, "the body is not valid JSON: "+err.Error())
	case errors.As(err, &typ):
		writeError(w, http.StatusBadRequest, fmt.Sprintf("field %s: want a %s, not a JSON %s", typ.Field, typ.Type, typ.Value))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "the body is empty: a JSON object is needed")
	default:
		writeError(w, http.StatusBadRequest, "the body does not fit: "+err.Error())
	}
	return false
}

// etag is the version of one object: a hash of its JSON form. A change of
// an object must carry it (If-Match): an admin never overwrites a change he
// has not seen.
func etag(v any) string {
	b, _ := json.Marshal(v)
	h := sha256.Sum256(b)
	return `"` + hex.EncodeToString(h[:8]) + `"`
}

// ifMatch says whether the request's If-Match allows a change of an object
// now at version current; it writes 428 or 409 when not.
func ifMatch(w http.ResponseWriter, r *request, current string) bool {
	want := r.Header.Get("If-Match")
	switch {
	case want == "":
		writeError(w, http.StatusPreconditionRequired, "If-Match is needed: send the ETag of the version you changed")
		return false
	case want == "*" || want == current:
		return true
	}
	writeError(w, http.StatusConflict, "the object changed since version "+want+" (now "+current+"): read it again")
	return false
}

// changeError writes the answer to a change that failed.
func changeError(w http.ResponseWriter, err error) {
	var inv *provision.InvalidError
	var ce *control.ConflictError
	var ie *control.InputError
	var he *httpError
	switch {
	case errors.As(err, &he):
		writeError(w, he.status, he.msg)
	case errors.As(err, &inv):
		writeJSON(w, http.StatusUnprocessableEntity, apiError{Error: "the plan would not be valid: " + inv.Error(), Problems: inv.Problems})
	case errors.As(err, &ce):
		writeError(w, http.StatusConflict, ce.Reason)
	case errors.As(err, &ie):
		writeError(w, http.StatusUnprocessableEntity, ie.Reason)
	case errors.Is(err, control.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, control.ErrBadToken):
		writeError(w, http.StatusForbidden, err.Error())
	default:
		writeError(w, http.StatusServiceUnavailable, "the change was not made: "+err.Error())
	}
}

// httpError ends a change with a given status.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}
