package api

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/callctl/callctl/control"
	"github.com/callctl/callctl/controller/provision"
)

// OrgSettings is an org without its collections (users, numbers, rules),
// which have their own resources.
type OrgSettings struct {
	ID                  string   `json:"id"`
	Name                string   `json:"name,omitempty"`
	Domain              string   `json:"domain,omitempty"`
	CountryCode         string   `json:"country_code,omitempty"`
	NationalPrefix      string   `json:"national_prefix,omitempty"`
	InternationalPrefix string   `json:"international_prefix,omitempty"`
	DefaultNumber       string   `json:"default_outgoing_number,omitempty"`
	ChannelLimit        int      `json:"channel_limit,omitempty"`
	FeatureCodes        []string `json:"feature_codes,omitempty"`
	LinkedOrgs          []string `json:"linked_orgs,omitempty"`
	Webhook             string   `json:"webhook,omitempty"`
	// LimitForward takes the calls the org's channel limit refuses.
	LimitForward *provision.LimitForward `json:"limit_forward,omitempty"`
}

func settingsOf(o *provision.Org) *OrgSettings {
	return &OrgSettings{ID: o.ID, Name: o.Name, Domain: o.Domain, CountryCode: o.CountryCode, NationalPrefix: o.NationalPrefix,
		InternationalPrefix: o.InternationalPrefix, DefaultNumber: o.DefaultNumber, ChannelLimit: o.ChannelLimit,
		FeatureCodes: o.FeatureCodes, LinkedOrgs: o.LinkedOrgs, Webhook: o.Webhook, LimitForward: o.LimitForward}
}

func (v *OrgSettings) applyTo(o *provision.Org) {
	o.ID, o.Name, o.Domain, o.CountryCode, o.NationalPrefix = v.ID, v.Name, v.Domain, v.CountryCode, v.NationalPrefix
	o.InternationalPrefix, o.DefaultNumber, o.ChannelLimit = v.InternationalPrefix, v.DefaultNumber, v.ChannelLimit
	o.FeatureCodes, o.LinkedOrgs, o.Webhook = v.FeatureCodes, v.LinkedOrgs, v.Webhook
	o.LimitForward = v.LimitForward
}

// OrgNumber is a number as an org sees it.
type OrgNumber struct {
	Number string `json:"number"`
	Owner  string `json:"owner"`
	// UsedBy is the org whose PBX the number is in now.
	UsedBy      string `json:"used_by"`
	AssignedTo  string `json:"assigned_to,omitempty"`
	Assignment  string `json:"assignment,omitempty"`
	Destination string `json:"destination,omitempty"`
}

func orgNumber(n *provision.Number) *OrgNumber {
	used := n.Owner
	if n.Assignment == provision.AssignActive && n.AssignedTo != "" {
		used = n.AssignedTo
	}
	return &OrgNumber{Number: n.Number, Owner: n.Owner, UsedBy: used, AssignedTo: n.AssignedTo, Assignment: n.Assignment, Destination: n.Destination}
}

// visible says whether org may see number n: it owns it or uses it.
func visible(n *provision.Number, org string) bool {
	return n.Owner == org || orgNumber(n).UsedBy == org
}

// NumberDestination is what an org changes of a number it uses.
type NumberDestination struct {
	Destination string `json:"destination"`
}

func (s *Server) orgHandlers(h map[string]handler) {
	h["listOrgs"] = func(w http.ResponseWriter, r *request) {
		doc, st, err := s.read(r)
		if err != nil {
			changeError(w, err)
			return
		}
		out := []*OrgSettings{}
		for i := range doc.Orgs {
			if r.tok.Cluster() || doc.Orgs[i].ID == r.org() {
				out = append(out, settingsOf(&doc.Orgs[i]))
			}
		}
		w.Header().Set("X-Plan-Revision", strconv.FormatInt(st.Revision, 10))
		writeJSON(w, http.StatusOK, out)
	}
	h["getOrg"] = func(w http.ResponseWriter, r *request) {
		doc, _, err := s.read(r)
		if err != nil {
			changeError(w, err)
			return
		}
		o, err := orgOf(doc, r)
		if err != nil {
			changeError(w, err)
			return
		}
		v := settingsOf(o)
		w.Header().Set("ETag", etag(v))
		writeJSON(w, http.StatusOK, v)
	}
	h["createOrg"] = func(w http.ResponseWriter, r *request) {
		var v provision.Org
		if !decode(w, r, &v) {
			return
		}
		s.change(w, r, http.StatusCreated, func(d *control.Draft) (any, error) {
			for _, o := range d.Doc.Orgs {
				if o.ID == v.ID {
					return nil, &control.ConflictError{Reason: "org " + v.ID + " exists already"}
				}
			}
			d.Doc.Orgs = append(d.Doc.Orgs, v)
			d.Audit("org.created", "org "+v.ID, "", v.ID)
			return settingsOf(&v), nil
		})
	}
	h["putOrg"] = func(w http.ResponseWriter, r *request) {
		var v OrgSettings
		if !decode(w, r, &v) {
			return
		}
		if v.ID != r.PathValue("org") {
			writeError(w, http.StatusUnprocessableEntity, "the body names org "+strconv.Quote(v.ID)+", the path "+strconv.Quote(r.PathValue("org")))
			return
		}
		s.change(w, r, http.StatusOK, func(d *control.Draft) (any, error) {
			o, err := orgOf(d.Doc, r)
			if err != nil {
				return nil, err
			}
			if err := precondition(r, settingsOf(o)); err != nil {
				return nil, err
			}
			v.applyTo(o)
			d.Audit("org.changed", "org "+v.ID, "", v.ID)
			return settingsOf(o), nil
		})
	}
	h["deleteOrg"] = func(w http.ResponseWriter, r *request) {
		s.change(w, r, http.StatusOK, func(d *control.Draft) (any, error) {
			o, err := orgOf(d.Doc, r)
			if err != nil {
				return nil, err
			}
			if err := precondition(r, settingsOf(o)); err != nil {
				return nil, err
			}
			id := o.ID
			d.Doc.Orgs = slices.DeleteFunc(d.Doc.Orgs, func(x provision.Org) bool { return x.ID == id })
			d.Audit("org.deleted", "org "+id, "", id)
			return nil, nil
		})
	}
	h["listOrgNumbers"] = func(w http.ResponseWriter, r *request) {
		doc, st, err := s.read(r)
		if err != nil {
			changeError(w, err)
			return
		}
		if _, err := orgOf(doc, r); err != nil {
			changeError(w, err)
			return
		}
		out := []*OrgNumber{}
		for i := range doc.Numbers {
			if visible(&doc.Numbers[i], r.PathValue("org")) {
				out = append(out, orgNumber(&doc.Numbers[i]))
			}
		}
		w.Header().Set("X-Plan-Revision", strconv.FormatInt(st.Revision, 10))
		writeJSON(w, http.StatusOK, out)
	}
	findOrgNumber := func(d *provision.Document, r *request) (*provision.Number, error) {
		for i := range d.Numbers {
			if n := &d.Numbers[i]; n.Number == r.PathValue("number") && visible(n, r.PathValue("org")) {
				return n, nil
			}
		}
		return nil, errorf(http.StatusNotFound, "org %s has no number %q", r.PathValue("org"), r.PathValue("number"))
	}
	h["getOrgNumber"] = func(w http.ResponseWriter, r *request) {
		doc, _, err := s.read(r)
		if err != nil {
			changeError(w, err)
			return
		}
		n, err := findOrgNumber(doc, r)
		if err != nil {
			changeError(w, err)
			return
		}
		v := orgNumber(n)
		w.Header().Set("ETag", etag(v))
		writeJSON(w, http.StatusOK, v)
	}
	h["putOrgNumber"] = func(w http.ResponseWriter, r *request) {
		var v NumberDestination
		if !decode(w, r, &v) {
			return
		}
		s.change(w, r, http.StatusOK, func(d *control.Draft) (any, error) {
			n, err := findOrgNumber(d.Doc, r)
			if err != nil {
				return nil, err
			}
			if err := precondition(r, orgNumber(n)); err != nil {
				return nil, err
			}
			if user := orgNumber(n).UsedBy; user != r.PathValue("org") {
				return nil, errorf(http.StatusForbidden, "number %s is in org %s's PBX: only that org sets where it rings", n.Number, user)
			}
			n.Destination = v.Destination
			d.Audit("number.destination", "number "+n.Number, "destination "+strconv.Quote(v.Destination), r.PathValue("org"), n.Owner)
			return orgNumber(n), nil
		})
	}
}

// PlanInfo is the whole plan with its revision.
type PlanInfo struct {
	Revision  int64     `json:"revision"`
	Version   string    `json:"version"`
	Changed   time.Time `json:"changed"`
	ChangedBy string    `json:"changed_by"`
	YAML      string    `json:"yaml"`
}

// PlanPut replaces the whole plan.
type PlanPut struct {
	YAML string `json:"yaml"`
}

// PlanResult is a whole-plan change done.
type PlanResult struct {
	Revision int64              `json:"revision"`
	Version  string             `json:"version"`
	Warnings provision.Problems `json:"warnings"`
}

func (s *Server) wholePlanHandlers(h map[string]handler) {
	h["getPlan"] = func(w http.ResponseWriter, r *request) {
		st, err := s.opt.Plans.Load(r.ctx)
		if err != nil {
			changeError(w, err)
			return
		}
		w.Header().Set("ETag", `"`+strconv.FormatInt(st.Revision, 10)+`"`)
		writeJSON(w, http.StatusOK, PlanInfo{Revision: st.Revision, Version: st.Version, Changed: st.Changed, ChangedBy: st.ChangedBy, YAML: st.Plan})
	}
	h["putPlan"] = func(w http.ResponseWriter, r *request) {
		var v PlanPut
		if !decode(w, r, &v) {
			return
		}
		want := r.Header.Get("If-Match")
		if want == "" {
			writeError(w, http.StatusPreconditionRequired, "If-Match is needed: the plan revision (ETag) the new plan is based on")
			return
		}
		doc, _, probs := provision.Decode("plan", []byte(v.YAML))
		if probs.Errors() > 0 {
			changeError(w, &provision.InvalidError{Problems: probs})
			return
		}
		res, err := s.opt.Plans.Change(r.ctx, r.actor, func(d *control.Draft) error {
			if cur := `"` + strconv.FormatInt(d.Base, 10) + `"`; want != cur {
				return &control.ConflictError{Reason: "the plan is at revision " + cur + ", not " + want + ": read it again"}
			}
			d.Doc = doc
			d.Audit("plan.replaced", "plan", "whole plan replaced")
			return nil
		})
		if err != nil {
			changeError(w, err)
			return
		}
		s.log.Info("plan replaced through the API", "revision", res.State.Revision, "version", res.State.Version, "token_id", r.tok.ID)
		w.Header().Set("ETag", `"`+strconv.FormatInt(res.State.Revision, 10)+`"`)
		warn := res.Warnings
		if warn == nil {
			warn = provision.Problems{}
		}
		writeJSON(w, http.StatusOK, PlanResult{Revision: res.State.Revision, Version: res.State.Version, Warnings: warn})
	}
}
