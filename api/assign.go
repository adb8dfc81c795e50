package api

import (
	"net/http"
	"time"

	"github.com/callctl/callctl/control"
)

// Assignment is an assignment as its orgs see it (never the tokens' hashes).
type Assignment struct {
	ID          string                          `json:"id"`
	Number      string                          `json:"number"`
	Owner       string                          `json:"owner"`
	To          string                          `json:"to"`
	Destination string                          `json:"destination,omitempty"`
	State       string                          `json:"state"`
	Requested   time.Time                       `json:"requested"`
	RequestedBy string                          `json:"requested_by"`
	Expires     time.Time                       `json:"expires"`
	Confirmed   map[string]control.Confirmation `json:"confirmed"`
	Ended       *time.Time                      `json:"ended,omitempty"`
	EndedBy     string                          `json:"ended_by,omitempty"`
}

func view(a *control.Assignment, now time.Time) *Assignment {
	v := &Assignment{ID: a.ID, Number: a.Number, Owner: a.Owner, To: a.To, Destination: a.Destination, State: a.State,
		Requested: a.Requested, RequestedBy: a.RequestedBy, Expires: a.Expires, Confirmed: a.Confirmed, Ended: a.Ended, EndedBy: a.EndedBy}
	if v.Confirmed == nil {
		v.Confirmed = map[string]control.Confirmation{}
	}
	// A request past its expiry is lapsed, whether or not a node has
	// written it down yet.
	if a.State == control.Requested && !now.Before(a.Expires) {
		v.State = control.Lapsed
	}
	return v
}

// AssignmentRequest asks that the path org's number go into org To's PBX.
type AssignmentRequest struct {
	Number      string `json:"number"`
	To          string `json:"to"`
	Destination string `json:"destination,omitempty"`
	// Expires is how long the request waits for both confirmations (a Go
	// duration; default 168h).
	Expires string `json:"expires,omitempty"`
}

// Confirm is one org's confirmation, with the token sent to its webhook.
type Confirm struct {
	Token       string `json:"token"`
	Destination string `json:"destination,omitempty"`
}

func (s *Server) assignHandlers(h map[string]handler) {
	h["listAssignments"] = func(w http.ResponseWriter, r *request) {
		st, err := s.opt.Plans.Load(r.ctx)
		if err != nil {
			changeError(w, err)
			return
		}
		out := []*Assignment{}
		now := time.Now()
		for i := range st.Assignments {
			if st.Assignments[i].Concerns(r.PathValue("org")) {
				out = append(out, view(&st.Assignments[i], now))
			}
		}
		writeJSON(w, http.StatusOK, out)
	}
	h["getAssignment"] = func(w http.ResponseWriter, r *request) {
		st, err := s.opt.Plans.Load(r.ctx)
		if err != nil {
			changeError(w, err)
			return
		}
		for i := range st.Assignments {
			if a := &st.Assignments[i]; a.ID == r.PathValue("id") && a.Concerns(r.PathValue("org")) {
				writeJSON(w, http.StatusOK, view(a, time.Now()))
				return
			}
		}
		writeError(w, http.StatusNotFound, "no assignment "+r.PathValue("id")+" of org "+r.PathValue("org"))
	}
	h["requestAssignment"] = func(w http.ResponseWriter, r *request) {
		var v AssignmentRequest
		if !decode(w, r, &v) {
			return
		}
		var expiry time.Duration
		if v.Expires != "" {
			var err error
			if expiry, err = time.ParseDuration(v.Expires); err != nil || expiry <= 0 || expiry > 90*24*time.Hour {
				writeError(w, http.StatusUnprocessableEntity, "expires: a duration such as 168h, at most 2160h")
				return
			}
		}
		s.change(w, r, http.StatusCreated, func(d *control.Draft) (any, error) {
			a, err := d.Request(r.PathValue("org"), v.Number, v.To, v.Destination, expiry)
			if err != nil {
				return nil, err
			}
			return view(a, d.Now), nil
		})
	}
	h["confirmAssignment"] = func(w http.ResponseWriter, r *request) {
		if r.tok.Cluster() {
			writeError(w, http.StatusForbidden, "a confirmation is given with the org's own token, not a cluster token")
			return
		}
		var v Confirm
		if !decode(w, r, &v) {
			return
		}
		s.change(w, r, http.StatusOK, func(d *control.Draft) (any, error) {
			a, err := d.Confirm(r.PathValue("id"), r.PathValue("org"), v.Token, v.Destination)
			if err != nil {
				return nil, err
			}
			return view(a, d.Now), nil
		})
	}
	h["resetAssignment"] = func(w http.ResponseWriter, r *request) {
		s.change(w, r, http.StatusOK, func(d *control.Draft) (any, error) {
			// A cluster admin acts on the path's org's behalf.
			a, err := d.ResetAssignment(r.PathValue("id"), r.PathValue("org"))
			if err != nil {
				return nil, err
			}
			return view(a, d.Now), nil
		})
	}
	h["orgAudit"] = func(w http.ResponseWriter, r *request) {
		entries, err := s.opt.Plans.Audit(r.ctx, r.PathValue("org"), limitParam(r, 1000))
		if err != nil {
			changeError(w, err)
			return
		}
		if entries == nil {
			entries = []control.Entry{}
		}
		writeJSON(w, http.StatusOK, entries)
	}
	h["audit"] = func(w http.ResponseWriter, r *request) {
		entries, err := s.opt.Plans.Audit(r.ctx, "", limitParam(r, 1000))
		if err != nil {
			changeError(w, err)
			return
		}
		if entries == nil {
			entries = []control.Entry{}
		}
		writeJSON(w, http.StatusOK, entries)
	}
}
