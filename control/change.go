package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/callctl/callctl/controller/provision"
)

// Actor is who makes a change: an API token, scoped to one org or (Org
// empty) to the cluster.
type Actor struct {
	// ID and Name identify the token (never its secret).
	ID   string
	Name string
	Org  string
}

func (a Actor) String() string {
	scope := "cluster"
	if a.Org != "" {
		scope = "org " + a.Org
	}
	return fmt.Sprintf("token %s (%s, %s)", a.Name, a.ID, scope)
}

// Draft is a change being made: copies of the plan document and of the
// assignments at revision Base, which the change edits.
type Draft struct {
	Base        int64
	Doc         *provision.Document
	Assignments []Assignment
	Now         time.Time
	actor       Actor
	audit       []Entry
	notices     []Notice
}

// Audit records a step of the change in the audit log, readable by the
// actor's org and the orgs named.
func (d *Draft) Audit(action, object, detail string, orgs ...string) {
	d.audit = append(d.audit, Entry{Time: d.Now, Actor: d.actor.String(), ActorOrg: d.actor.Org, Orgs: orgs,
		Action: action, Object: object, Detail: detail})
}

// Notify sends n once the change is committed.
func (d *Draft) Notify(n Notice) { d.notices = append(d.notices, n) }

// ConflictError refuses a change whose precondition no longer holds (what
// it was based on changed): the client reads again and retries.
type ConflictError struct{ Reason string }

func (e *ConflictError) Error() string { return e.Reason }

// Result is a committed change.
type Result struct {
	State    *State
	Plan     *provision.Plan
	Warnings provision.Problems
	Notices  []Notice
}

// maxTries bounds how often a change is made again on a store that moved
// meanwhile (another admin, another node).
const maxTries = 8

// Change makes a change: fn edits a draft of the current state; the plan is
// validated whole (an *provision.InvalidError when it is not valid) and
// committed if the store is still where the draft was read from. When it
// moved, fn runs again on the new state (fn checks its own preconditions and
// returns a *ConflictError when they fail). The node switches to the new
// plan at once; the others within a second.
func (s *Service) Change(ctx context.Context, who Actor, fn func(*Draft) error) (*Result, error) {
	for try := 0; try < maxTries; try++ {
		st, err := s.opt.Store.Load(ctx)
		if err != nil {
			return nil, fmt.Errorf("read the plan: %w", err)
		}
		if st.Revision == 0 {
			return nil, errors.New("the store holds no plan yet")
		}
		doc, _, probs := provision.Decode(fmt.Sprintf("plan revision %d", st.Revision), []byte(st.Plan))
		if probs.Errors() > 0 {
			return nil, &provision.InvalidError{Problems: probs}
		}
		d := &Draft{Base: st.Revision, Doc: doc, Now: s.opt.Now().UTC(), actor: who}
		for _, a := range st.Assignments {
			d.Assignments = append(d.Assignments, a.clone())
		}
		if err := fn(d); err != nil {
			return nil, err
		}
		data, err := d.Doc.YAML()
		if err != nil {
			return nil, err
		}
		plan, probs, err := provision.Load("plan", data)
		if err != nil {
			return nil, err
		}
		next := st.Clone()
		next.Revision = st.Revision + 1
		next.Assignments = d.Assignments
		next.Changed, next.ChangedBy = d.Now, who.String()
		if plan.Version != st.Version {
			next.Plan, next.Version = string(data), plan.Version
		}
		for i := range d.audit {
			d.audit[i].Revision = next.Revision
		}
		err = s.opt.Store.Commit(ctx, st.Revision, next, d.audit)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("commit the change: %w", err)
		}
		s.mu.Lock()
		s.adoptCompiled(next, plan, "api")
		s.mu.Unlock()
		return &Result{State: next, Plan: plan, Warnings: probs, Notices: d.notices}, nil
	}
	return nil, &ConflictError{Reason: "the plan kept changing while this change was made: try again"}
}

// Load reads the current state.
func (s *Service) Load(ctx context.Context) (*State, error) { return s.opt.Store.Load(ctx) }

// Audit reads the audit log (every entry when org is empty).
func (s *Service) Audit(ctx context.Context, org string, limit int) ([]Entry, error) {
	return s.opt.Store.Audit(ctx, org, limit)
}

// Append writes audit entries of an action that changes no plan (legs
// released by an operator), as who.
func (s *Service) Append(ctx context.Context, who Actor, action, object, detail string) error {
	return s.opt.Store.Append(ctx, []Entry{{Time: s.opt.Now().UTC(), Actor: who.String(), ActorOrg: who.Org,
		Action: action, Object: object, Detail: detail}})
}
