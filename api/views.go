package api

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/callctl/callctl/controller"
)

func limitParam(r *request, def int) int {
	if v := r.URL.Query().Get("limit"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 && n <= 10000 {
			return n
		}
	}
	return def
}

// Count is one server's or org's channels in use against its limit (0 =
// unlimited).
type Count struct {
	Name  string `json:"name"`
	InUse int    `json:"in_use"`
	Limit int    `json:"limit"`
}

// Counts are the channel counts the token may see.
type Counts struct {
	Servers []Count `json:"servers"`
	Orgs    []Count `json:"orgs"`
}

func (s *Server) viewHandlers(h map[string]handler) {
	h["getOpenAPI"] = func(w http.ResponseWriter, r *request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(s.spec)
	}
	h["listCalls"] = func(w http.ResponseWriter, r *request) {
		calls := []controller.CallView{}
		if s.opt.Calls != nil {
			for _, c := range s.opt.Calls() {
				if r.tok.Cluster() || c.Org == r.org() || c.CallerOrg == r.org() || c.Billing == r.org() {
					calls = append(calls, c)
				}
			}
		}
		sort.Slice(calls, func(i, j int) bool { return calls[i].Start.Before(calls[j].Start) })
		writeJSON(w, http.StatusOK, calls)
	}
	h["getCounts"] = func(w http.ResponseWriter, r *request) {
		plan, _ := s.opt.Plans.Running()
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		defer cancel()
		out := Counts{Servers: []Count{}, Orgs: []Count{}}
		count := func(scope, name string, limit int) (Count, bool) {
			n, err := s.opt.Counts.Count(ctx, scope, name)
			if err != nil {
				writeError(w, http.StatusServiceUnavailable, "channel counts are unavailable: "+err.Error())
				return Count{}, false
			}
			return Count{Name: name, InUse: n, Limit: limit}, true
		}
		if r.tok.Cluster() {
			for _, sv := range plan.Servers {
				c, ok := count("server", sv.Name, sv.ChannelLimit)
				if !ok {
					return
				}
				out.Servers = append(out.Servers, c)
			}
		}
		for _, o := range plan.Orgs {
			if !r.tok.Cluster() && o.ID != r.org() {
				continue
			}
			c, ok := count("org", o.ID, o.ChannelLimit)
			if !ok {
				return
			}
			out.Orgs = append(out.Orgs, c)
		}
		writeJSON(w, http.StatusOK, out)
	}
	h["listRecords"] = func(w http.ResponseWriter, r *request) {
		q := RecordQuery{Org: r.URL.Query().Get("org"), Number: r.URL.Query().Get("number"), CallID: r.URL.Query().Get("call_id"),
			Limit: limitParam(r, 100)}
		if q.Number != "" && !strings.HasPrefix(q.Number, "+") && strings.HasPrefix(r.URL.RawQuery, "number=+") {
			q.Number = "+" + q.Number[1:]
		}
		for name, at := range map[string]*time.Time{"since": &q.Since, "until": &q.Until} {
			if v := r.URL.Query().Get(name); v != "" {
				t, err := time.Parse(time.RFC3339, v)
				if err != nil {
					writeError(w, http.StatusBadRequest, name+": an RFC 3339 time such as 2024-05-01T10:00:00Z")
					return
				}
				*at = t
			}
		}
		if !r.tok.Cluster() {
			if q.Org != "" && q.Org != r.org() {
				writeError(w, http.StatusForbidden, "the token is org "+r.org()+"'s and reads that org's records only")
				return
			}
			q.Org = r.org()
		}
		if s.opt.Records == nil {
			writeError(w, http.StatusServiceUnavailable, "this node keeps no call records")
			return
		}
		recs, err := s.opt.Records.Query(r.ctx, q)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "call records are unavailable: "+err.Error())
			return
		}
		if recs == nil {
			recs = []controller.Record{}
		}
		writeJSON(w, http.StatusOK, recs)
	}
	h["releaseServerLegs"] = func(w http.ResponseWriter, r *request) {
		plan, _ := s.opt.Plans.Running()
		name := r.PathValue("server")
		if plan.Server(name) == nil {
			// A server already removed from the plan may still hold legs.
			s.log.Info("releasing the legs of a server not in the plan", "server", name)
		}
		if s.opt.Release == nil {
			writeError(w, http.StatusServiceUnavailable, "this node cannot release legs")
			return
		}
		n, err := s.opt.Release.ReleaseServer(r.ctx, name)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "legs not released: "+err.Error())
			return
		}
		s.log.Warn("counted legs of a media server released by an operator", "server", name, "released", n, "token_id", r.tok.ID)
		if err := s.opt.Plans.Append(r.ctx, r.actor, "server.legs_released", "server "+name, strconv.Itoa(n)+" counted legs released"); err != nil {
			s.log.Warn("audit entry not written", "err", err)
		}
		writeJSON(w, http.StatusOK, map[string]any{"server": name, "released": n})
	}
}
