package node

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/callctl/callctl/adapters/memory"
	"github.com/callctl/callctl/controller/accounting"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/controller/provision/plangen"
)

func plan(t *testing.T, servers int) *provision.Plan {
	t.Helper()
	p, probs := provision.Compile(plangen.Build(plangen.Size{Servers: servers, Extensions: 10}), nil)
	if probs.Errors() > 0 {
		t.Fatalf("plan of %d servers: %v", servers, probs)
	}
	return p
}

// A plan that no longer has a media server releases that server's counted
// legs (nothing can check its channels any more); the others stay.
func TestServerRemovedFromPlanReleasesItsLegs(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := memory.New(memory.Options{Logger: log})
	n, err := Start(context.Background(), plan(t, 3), Options{ID: "n1", Servers: []string{"none-here"}, State: st, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx := context.Background()
	for i, server := range []string{"s1", "s2", "s2"} {
		h := accounting.Hold{ID: "c" + string(rune('0'+i)) + "/in/0", Leg: accounting.Leg{Server: server, Org: "big", Kind: accounting.PSTNIn}}
		if err := st.Acquire(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	n.SetPlan(plan(t, 2)) // s0 and s1 only
	for server, want := range map[string]int{"s1": 1, "s2": 0} {
		if got, _ := st.Count(ctx, "server", server); got != want {
			t.Errorf("%s counts %d after the plan dropped s2, want %d", server, got, want)
		}
	}
	if got, _ := st.Count(ctx, "org", "big"); got != 1 {
		t.Errorf("org counts %d, want 1", got)
	}
}
