package asterisk

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// When callctl connects, the application lists the channels an earlier
// owner left, and also a call that entered just now and whose StasisStart
// is on its way: only the channel no call claims within the grace is hung
// up.
func TestStraysListedAtStartGetAGrace(t *testing.T) {
	var mu sync.Mutex
	var deleted []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/ari/applications/callctl":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"name":"callctl","channel_ids":["old-1","new-1"],"bridge_ids":[]}`))
		case r.Method == http.MethodGet && r.URL.Path == "/ari/bridges":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`[]`))
		case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/ari/channels/"):
			mu.Lock()
			deleted = append(deleted, strings.TrimPrefix(r.URL.Path, "/ari/channels/"))
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	c, err := New(Config{Server: "ast1", URL: srv.URL + "/ari", User: "u", Password: "p", App: "callctl", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	c.adoptStrays(context.Background())
	// new-1's StasisStart arrives right after the list was read.
	cl := newCall(c, &channelData{ID: "new-1"}, nil, time.Now())
	c.register("new-1", &chanRef{call: cl})
	c.bgWG.Wait()
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(deleted, []string{"old-1"}) {
		t.Errorf("hung up %q, want only the earlier owner's old-1", deleted)
	}
}
