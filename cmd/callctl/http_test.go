package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/file"
	"github.com/callctl/callctl/auth"
)

// TestMetricsOnlyOnLoopbackWithoutAToken: /metrics names every org and
// server, so from another machine it needs a cluster token (an org's token
// is not enough); from this machine it needs none.
func TestMetricsOnlyOnLoopbackWithoutAToken(t *testing.T) {
	ts, err := file.NewTokens(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, cluster, err := auth.Create(ctx, ts, "prometheus", "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, org, err := auth.Create(ctx, ts, "kundeA admin", "kundeA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h := (&runningNode{}).local(ts, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("callctl_channels_in_use{server=\"srv11\"} 0\n"))
	}))
	for _, c := range []struct {
		name, remote, token string
		want                int
	}{
		{"loopback", "127.0.0.1:40000", "", 200},
		{"loopback v6", "[::1]:40000", "", 200},
		{"elsewhere", "192.0.2.7:40000", "", 401},
		{"elsewhere, wrong token", "192.0.2.7:40000", "callctl_0123456789abcdef_" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 401},
		{"elsewhere, org token", "192.0.2.7:40000", org, 401},
		{"elsewhere, cluster token", "192.0.2.7:40000", cluster, 200},
		{"no address", "", "", 401},
	} {
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.RemoteAddr = c.remote
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s: %d, want %d: %s", c.name, rec.Code, c.want, rec.Body)
		}
		if rec.Code != 200 && (rec.Header().Get("WWW-Authenticate") == "" || strings.Contains(rec.Body.String(), "callctl_channels_in_use")) {
			t.Errorf("%s: refused without WWW-Authenticate, or with the metrics: %s", c.name, rec.Body)
		}
	}
}
