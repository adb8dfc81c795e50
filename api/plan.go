package api

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/callctl/callctl/control"
	"github.com/callctl/callctl/controller/provision"
)

// read returns the plan document as stored now.
func (s *Server) read(r *request) (*provision.Document, *control.State, error) {
	st, err := s.opt.Plans.Load(r.ctx)
	if err != nil {
		return nil, nil, err
	}
	doc, _, probs := provision.Decode("plan", []byte(st.Plan))
	if probs.Errors() > 0 {
		return nil, nil, &provision.InvalidError{Problems: probs}
	}
	return doc, st, nil
}

// change makes a change of the plan and answers with what fn returns (the
// object as it is now), its ETag and the new revision.
func (s *Server) change(w http.ResponseWriter, r *request, status int, fn func(d *control.Draft) (any, error)) {
	var out any
	res, err := s.opt.Plans.Change(r.ctx, r.actor, func(d *control.Draft) error {
		var err error
		out, err = fn(d)
		return err
	})
	if err != nil {
		changeError(w, err)
		return
	}
	s.log.Info("plan changed through the API", "revision", res.State.Revision, "version", res.State.Version,
		"token_id", r.tok.ID, "method", r.Method, "path", r.URL.Path)
	if s.opt.Notifier != nil && len(res.Notices) > 0 {
		s.opt.Notifier.Send(s.opt.Context, res.Notices)
	}
	w.Header().Set("X-Plan-Revision", strconv.FormatInt(res.State.Revision, 10))
	if out == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("ETag", etag(out))
	writeJSON(w, status, out)
}

// collection is a list of named objects of the plan (servers, an org's
// users, ...), served as a REST collection.
type collection[T any] struct {
	kind  string // "user": for messages
	param string // the path parameter naming one object
	key   func(*T) string
	// list returns the list in the document for the request (an org's).
	list func(d *provision.Document, r *request) (*[]T, error)
	// check refuses what the token may not do to an object (old is nil
	// when it is created, new when it is removed).
	check func(r *request, old, new *T) error
}

func (c collection[T]) find(l []T, k string) int {
	for i := range l {
		if c.key(&l[i]) == k {
			return i
		}
	}
	return -1
}

func (c collection[T]) allowed(r *request, old, new *T) error {
	if c.check == nil {
		return nil
	}
	return c.check(r, old, new)
}

func list[T any](s *Server, c collection[T]) handler {
	return func(w http.ResponseWriter, r *request) {
		doc, st, err := s.read(r)
		if err != nil {
			changeError(w, err)
			return
		}
		l, err := c.list(doc, r)
		if err != nil {
			changeError(w, err)
			return
		}
		out := *l
		if out == nil {
			out = []T{}
		}
		w.Header().Set("X-Plan-Revision", strconv.FormatInt(st.Revision, 10))
		writeJSON(w, http.StatusOK, out)
	}
}

func get[T any](s *Server, c collection[T]) handler {
	return func(w http.ResponseWriter, r *request) {
		doc, st, err := s.read(r)
		if err != nil {
			changeError(w, err)
			return
		}
		l, err := c.list(doc, r)
		if err != nil {
			changeError(w, err)
			return
		}
		i := c.find(*l, r.PathValue(c.param))
		if i < 0 {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no %s %q", c.kind, r.PathValue(c.param)))
			return
		}
		w.Header().Set("X-Plan-Revision", strconv.FormatInt(st.Revision, 10))
		w.Header().Set("ETag", etag(&(*l)[i]))
		writeJSON(w, http.StatusOK, &(*l)[i])
	}
}

func create[T any](s *Server, c collection[T]) handler {
	return func(w http.ResponseWriter, r *request) {
		var v T
		if !decode(w, r, &v) {
			return
		}
		k := c.key(&v)
		if k == "" {
			writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("the %s needs its %s", c.kind, c.param))
			return
		}
		s.change(w, r, http.StatusCreated, func(d *control.Draft) (any, error) {
			l, err := c.list(d.Doc, r)
			if err != nil {
				return nil, err
			}
			if c.find(*l, k) >= 0 {
				return nil, &control.ConflictError{Reason: fmt.Sprintf("%s %q exists already", c.kind, k)}
			}
			if err := c.allowed(r, nil, &v); err != nil {
				return nil, err
			}
			*l = append(*l, v)
			d.Audit(c.kind+".created", c.kind+" "+k, "", r.PathValue("org"))
			return &v, nil
		})
	}
}

func put[T any](s *Server, c collection[T]) handler {
	return func(w http.ResponseWriter, r *request) {
		var v T
		if !decode(w, r, &v) {
			return
		}
		k := r.PathValue(c.param)
		if got := c.key(&v); got != k {
			writeError(w, http.StatusUnprocessableEntity, fmt.Sprintf("the body names %s %q, the path %q", c.kind, got, k))
			return
		}
		s.change(w, r, http.StatusOK, func(d *control.Draft) (any, error) {
			l, err := c.list(d.Doc, r)
			if err != nil {
				return nil, err
			}
			i := c.find(*l, k)
			if i < 0 {
				return nil, errorf(http.StatusNotFound, "no %s %q", c.kind, k)
			}
			if err := precondition(r, &(*l)[i]); err != nil {
				return nil, err
			}
			if err := c.allowed(r, &(*l)[i], &v); err != nil {
				return nil, err
			}
			(*l)[i] = v
			d.Audit(c.kind+".changed", c.kind+" "+k, "", r.PathValue("org"))
			return &v, nil
		})
	}
}

func remove[T any](s *Server, c collection[T]) handler {
	return func(w http.ResponseWriter, r *request) {
		k := r.PathValue(c.param)
		s.change(w, r, http.StatusOK, func(d *control.Draft) (any, error) {
			l, err := c.list(d.Doc, r)
			if err != nil {
				return nil, err
			}
			i := c.find(*l, k)
			if i < 0 {
				return nil, errorf(http.StatusNotFound, "no %s %q", c.kind, k)
			}
			if err := precondition(r, &(*l)[i]); err != nil {
				return nil, err
			}
			if err := c.allowed(r, &(*l)[i], nil); err != nil {
				return nil, err
			}
			*l = slices.Delete(*l, i, i+1)
			d.Audit(c.kind+".deleted", c.kind+" "+k, "", r.PathValue("org"))
			return nil, nil
		})
	}
}

// precondition checks If-Match against the object as it is in the draft:
// 428 without it, 409 when the object changed since.
func precondition(r *request, current any) error {
	want := r.Header.Get("If-Match")
	now := etag(current)
	switch {
	case want == "":
		return errorf(http.StatusPreconditionRequired, "If-Match is needed: send the ETag of the version you changed")
	case want == "*" || want == now:
		return nil
	}
	return &control.ConflictError{Reason: "it changed since version " + want + " (now " + now + "): read it again"}
}

// singleton is one object of the plan (settings, an org's caller-ID rules).
type singleton[T any] struct {
	kind string
	at   func(d *provision.Document, r *request) (*T, error)
}

func getOne[T any](s *Server, c singleton[T]) handler {
	return func(w http.ResponseWriter, r *request) {
		doc, st, err := s.read(r)
		if err != nil {
			changeError(w, err)
			return
		}
		v, err := c.at(doc, r)
		if err != nil {
			changeError(w, err)
			return
		}
		w.Header().Set("X-Plan-Revision", strconv.FormatInt(st.Revision, 10))
		w.Header().Set("ETag", etag(v))
		writeJSON(w, http.StatusOK, v)
	}
}

func putOne[T any](s *Server, c singleton[T]) handler {
	return func(w http.ResponseWriter, r *request) {
		var v T
		if !decode(w, r, &v) {
			return
		}
		s.change(w, r, http.StatusOK, func(d *control.Draft) (any, error) {
			cur, err := c.at(d.Doc, r)
			if err != nil {
				return nil, err
			}
			if err := precondition(r, cur); err != nil {
				return nil, err
			}
			*cur = v
			d.Audit(c.kind+".changed", c.kind, "", r.PathValue("org"))
			return &v, nil
		})
	}
}

// orgOf finds the path's org in a document.
func orgOf(d *provision.Document, r *request) (*provision.Org, error) {
	id := r.PathValue("org")
	for i := range d.Orgs {
		if d.Orgs[i].ID == id {
			return &d.Orgs[i], nil
		}
	}
	return nil, errorf(http.StatusNotFound, "no org %q", id)
}

// endpointsByClusterAdmins keeps endpoints (dial strings) out of org
// admins' hands: an endpoint can name any gateway of the media server, the
// PSTN's included, and so would bypass the org's outbound rules.
func endpointsByClusterAdmins(r *request, old, new string) error {
	if r.tok.Cluster() || old == new {
		return nil
	}
	return errorf(http.StatusForbidden, "endpoint: only cluster admins set endpoints (an endpoint is a dial string); leave it out to use the server's default")
}

func (s *Server) planHandlers(h map[string]handler) {
	users := collection[provision.User]{kind: "user", param: "ext",
		key: func(u *provision.User) string { return u.Extension },
		list: func(d *provision.Document, r *request) (*[]provision.User, error) {
			o, err := orgOf(d, r)
			if err != nil {
				return nil, err
			}
			return &o.Users, nil
		},
		check: func(r *request, old, new *provision.User) error {
			var o, n string
			if old != nil {
				o = old.Endpoint
			}
			if new != nil {
				n = new.Endpoint
			} else {
				n = o
			}
			return endpointsByClusterAdmins(r, o, n)
		}}
	h["listUsers"], h["createUser"], h["getUser"], h["putUser"], h["deleteUser"] =
		list(s, users), create(s, users), get(s, users), put(s, users), remove(s, users)

	sips := collection[provision.SIPNumber]{kind: "sip number", param: "number",
		key: func(n *provision.SIPNumber) string { return n.Number },
		list: func(d *provision.Document, r *request) (*[]provision.SIPNumber, error) {
			o, err := orgOf(d, r)
			if err != nil {
				return nil, err
			}
			return &o.SIPNumbers, nil
		},
		check: func(r *request, old, new *provision.SIPNumber) error {
			var o, n string
			if old != nil {
				o = old.Endpoint
			}
			if new != nil {
				n = new.Endpoint
			} else {
				n = o
			}
			return endpointsByClusterAdmins(r, o, n)
		}}
	h["listSIPNumbers"], h["createSIPNumber"], h["getSIPNumber"], h["putSIPNumber"], h["deleteSIPNumber"] =
		list(s, sips), create(s, sips), get(s, sips), put(s, sips), remove(s, sips)

	services := collection[provision.ServiceNumber]{kind: "service number", param: "number",
		key: func(n *provision.ServiceNumber) string { return n.Number },
		list: func(d *provision.Document, r *request) (*[]provision.ServiceNumber, error) {
			o, err := orgOf(d, r)
			if err != nil {
				return nil, err
			}
			return &o.ServiceNumbers, nil
		}}
	h["listServiceNumbers"], h["createServiceNumber"], h["getServiceNumber"], h["putServiceNumber"], h["deleteServiceNumber"] =
		list(s, services), create(s, services), get(s, services), put(s, services), remove(s, services)

	rules := collection[provision.OutboundRule]{kind: "outbound rule", param: "rule",
		key: func(n *provision.OutboundRule) string { return n.Name },
		list: func(d *provision.Document, r *request) (*[]provision.OutboundRule, error) {
			o, err := orgOf(d, r)
			if err != nil {
				return nil, err
			}
			return &o.OutboundRules, nil
		}}
	h["listOutboundRules"], h["createOutboundRule"], h["getOutboundRule"], h["putOutboundRule"], h["deleteOutboundRule"] =
		list(s, rules), create(s, rules), get(s, rules), put(s, rules), remove(s, rules)

	callerID := singleton[provision.CallerIDRules]{kind: "caller-id rules",
		at: func(d *provision.Document, r *request) (*provision.CallerIDRules, error) {
			o, err := orgOf(d, r)
			if err != nil {
				return nil, err
			}
			return &o.CallerID, nil
		}}
	h["getCallerID"], h["putCallerID"] = getOne(s, callerID), putOne(s, callerID)
	hunt := singleton[provision.HuntSettings]{kind: "hunt settings",
		at: func(d *provision.Document, r *request) (*provision.HuntSettings, error) {
			o, err := orgOf(d, r)
			if err != nil {
				return nil, err
			}
			return &o.Hunt, nil
		}}
	h["getHunt"], h["putHunt"] = getOne(s, hunt), putOne(s, hunt)
	settings := singleton[provision.Settings]{kind: "settings",
		at: func(d *provision.Document, r *request) (*provision.Settings, error) { return &d.Settings, nil }}
	h["getSettings"], h["putSettings"] = getOne(s, settings), putOne(s, settings)

	servers := collection[provision.Server]{kind: "server", param: "server",
		key:  func(v *provision.Server) string { return v.Name },
		list: func(d *provision.Document, r *request) (*[]provision.Server, error) { return &d.Servers, nil }}
	h["listServers"], h["createServer"], h["getServer"], h["putServer"], h["deleteServer"] =
		list(s, servers), create(s, servers), get(s, servers), put(s, servers), remove(s, servers)

	numbers := collection[provision.Number]{kind: "number", param: "number",
		key:  func(v *provision.Number) string { return v.Number },
		list: func(d *provision.Document, r *request) (*[]provision.Number, error) { return &d.Numbers, nil }}
	h["listNumbers"], h["createNumber"], h["getNumber"], h["putNumber"], h["deleteNumber"] =
		list(s, numbers), create(s, numbers), get(s, numbers), put(s, numbers), remove(s, numbers)

	s.orgHandlers(h)
	s.wholePlanHandlers(h)
}
