package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/callctl/callctl/auth"
)

// loopback says whether the request comes from this machine.
func loopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// local serves h to requests from this machine, and to others only with a
// cluster token: metrics name every org and server.
func (n *runningNode) local(tokens auth.Store, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopback(r) {
			presented, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			tok, err := auth.Verify(ctx, tokens, presented)
			cancel()
			if err != nil || !tok.Cluster() {
				w.Header().Set("WWW-Authenticate", `Bearer realm="callctl"`)
				http.Error(w, "a cluster token is needed from another machine", http.StatusUnauthorized)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// readyz answers 200 when the node can serve (SPEC §9): its plan loaded,
// its state backend reachable (Redis), and at least one of its media
// servers connected; else 503. On loopback it lists why, one line per
// media server; from elsewhere only the verdict.
func (n *runningNode) readyz(w http.ResponseWriter, r *http.Request) {
	var lines, why []string
	select {
	case <-n.ready:
	default:
		http.Error(w, "not ready: starting", http.StatusServiceUnavailable)
		return
	}
	st := n.plans.Status()
	lines = append(lines, fmt.Sprintf("plan=%s revision=%d", st.Version, st.Revision))
	if st.FileBehind != "" {
		lines = append(lines, "plan_file=not applied: "+st.FileBehind)
	}
	if up := n.backend.up; up != nil {
		if up() {
			lines = append(lines, "state=redis up")
		} else {
			lines = append(lines, "state=redis unreachable")
			why = append(why, "the state backend (Redis) is unreachable")
		}
	}
	status := n.node.Status()
	names := make([]string, 0, len(status))
	connected := 0
	for name, s := range status {
		names = append(names, name)
		if s == "connected" {
			connected++
		}
	}
	sort.Strings(names)
	if connected == 0 {
		why = append(why, "no media server connected")
	}
	code, verdict := http.StatusOK, "ready"
	if len(why) > 0 {
		code, verdict = http.StatusServiceUnavailable, "not ready: "+strings.Join(why, "; ")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, "%s active=%d\n", verdict, n.node.Engine().Active())
	if !loopback(r) {
		return
	}
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	for _, name := range names {
		fmt.Fprintf(w, "%s=%s\n", name, status[name])
	}
}
