package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// What the cluster state gives a node besides the Limiter and the RecordSink: releasing the counted legs of channels that a media server
// no longer has, and one owner at a time per media server.

// Reconciler releases counted legs whose channels are gone: the cure for
// counts that drifted (a node that died, a release that never arrived).
type Reconciler interface {
	// Reconcile releases the holds on server whose channel is not in live.
	// Holds acquired moments ago are kept: their channel may not exist yet
	// (a leg is counted before it is dialed). It returns how many it released.
	Reconcile(ctx context.Context, server string, live []string) (int, error)
	// ReleaseServer releases every counted leg of server, whichever node
	// holds it: for a media server that will not come back (its channels
	// cannot be checked), and a server removed from the plan. It returns
	// how many it released.
	ReleaseServer(ctx context.Context, server string) (int, error)
}

// Term is one node's tenure as the owner of a media server's exclusive
// connections (the ARI application's WebSocket, the event subscription).
// Tokens grow with every new term of a server: a write carrying an older
// token than the current one comes from a deposed owner and is refused.
type Term struct {
	Server string
	Node   string
	Token  uint64
}

// ErrNotOwner is returned for a write fenced by a term that is over.
var ErrNotOwner = errors.New("not the owner of the media server any more")

// Owners elects exactly one node at a time per media server.
type Owners interface {
	// Run campaigns for server until ctx ends. Each time this node becomes
	// the owner it calls lead with the term; lead's context is cancelled
	// before the ownership can pass to another node (the lease is about to
	// lapse, or ctx ended), and Run waits for lead to return before it lets
	// the ownership go. Run returns ctx's error.
	Run(ctx context.Context, server string, lead func(ctx context.Context, t Term)) error
	// Claim records that the owner in term t handles event: true the first
	// time, false when it was handled already (by this owner or an earlier
	// one). ErrNotOwner when a newer term has begun: the caller must drop
	// the event, the new owner handles it.
	Claim(ctx context.Context, t Term, event string) (bool, error)
}

// ReconcileServer asks ms which channels it has and releases the counted legs
// of every other channel on it. Owners call it when they take a server over,
// on startup, and periodically.
func ReconcileServer(ctx context.Context, ms MediaServer, r Reconciler, log *slog.Logger) (int, error) {
	live, err := ms.LiveChannels(ctx)
	if err != nil {
		return 0, fmt.Errorf("reconcile %s: live channels: %w", ms.Name(), err)
	}
	n, err := r.Reconcile(ctx, ms.Name(), live)
	if err != nil {
		return n, fmt.Errorf("reconcile %s: %w", ms.Name(), err)
	}
	if log != nil && n > 0 {
		log.Info("released counted legs of channels the media server no longer has",
			"server", ms.Name(), "released", n, "live", len(live))
	}
	return n, nil
}
