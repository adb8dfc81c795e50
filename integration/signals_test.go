package integration

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/redis/redistest"
	"github.com/callctl/callctl/integration/sim"
)

// How a node stops, with an answered call up and a drain_timeout far longer
// than the test: SIGTERM drains (the node waits for the call, which ends when
// its caller hangs up, then exits); SIGINT, or a second SIGTERM during the
// drain, ends the call at once and exits.
func TestSignalsStopANode(t *testing.T) {
	for _, f := range []Fleet{FreeSWITCHFleet, AsteriskFleet} {
		for _, how := range []string{"SIGTERM drains", "SIGINT ends calls now", "second SIGTERM ends calls now"} {
			t.Run(f.Name+"/"+how, func(t *testing.T) {
				t.Parallel()
				testSignal(t, f, how)
			})
		}
	}
}

func testSignal(t *testing.T, f Fleet, how string) {
	const drain = 10 * time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rs := redistest.Start(t, redistest.Options{})
	esl, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	lab, planPath := processLab(ctx, t, f, []string{esl})
	n := startNode(t, t.TempDir(), "n1", planPath, esl, rs.Addr, drain)
	n.waitReady(map[string]string{"srv11": "connected", "srv12": "connected"})
	c, err := lab.Call(ctx, "srv11", "3999", "030123456", sim.CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitBridged(ctx); err != nil {
		t.Fatalf("call not connected: %v\n%s", err, tail(n.out.String(), 40))
	}
	// The node has the call as connected before it is told to stop.
	waitLine(ctx, t, n, "answered: connected")

	exited := func(within time.Duration) {
		t.Helper()
		select {
		case <-n.done:
		case <-time.After(within):
			t.Fatalf("node still running %s after the call ended\n%s", within, tail(n.out.String(), 40))
		}
		if !strings.Contains(n.out.String(), "callctl node stopped") {
			t.Fatalf("no clean stop:\n%s", tail(n.out.String(), 40))
		}
	}
	signal := func(s syscall.Signal) {
		t.Helper()
		if err := n.cmd.Process.Signal(s); err != nil {
			t.Fatal(err)
		}
	}
	switch how {
	case "SIGTERM drains":
		signal(syscall.SIGTERM)
		waitLine(ctx, t, n, "shutting down: draining calls", "active=1")
		// The drain waits for the call: the node is still up and the call
		// too, until its caller hangs up; then the node exits by itself.
		select {
		case <-n.done:
			t.Fatalf("node exited during the drain with a call up:\n%s", tail(n.out.String(), 40))
		default:
		}
		if !up(c) {
			t.Fatal("the drain ended the call")
		}
		if err := c.Hangup(); err != nil {
			t.Fatal(err)
		}
		exited(20 * time.Second)
		if strings.Contains(n.out.String(), "drain ended early") {
			t.Fatalf("the call was ended by the shutdown, not by its caller:\n%s", tail(n.out.String(), 40))
		}
	case "SIGINT ends calls now", "second SIGTERM ends calls now":
		if how == "SIGINT ends calls now" {
			signal(syscall.SIGINT)
			waitLine(ctx, t, n, "shutting down: ending calls now (SIGINT)", "active=1")
		} else {
			signal(syscall.SIGTERM)
			waitLine(ctx, t, n, "shutting down: draining calls", "active=1")
			signal(syscall.SIGTERM)
			waitLine(ctx, t, n, "second signal: ending calls now")
		}
		// Nobody hangs up: the node ends the call, then exits, long before
		// drain_timeout.
		if _, err := c.WaitEnded(ctx); err != nil {
			t.Fatalf("the call was not ended: %v\n%s", err, tail(n.out.String(), 40))
		}
		exited(20 * time.Second)
		if !strings.Contains(n.out.String(), "1 calls ended by shutdown") {
			t.Fatalf("the node does not say it ended the call:\n%s", tail(n.out.String(), 40))
		}
	}
}

// waitLine waits until the node has logged a line containing each of parts.
func waitLine(ctx context.Context, t *testing.T, n *nodeProc, parts ...string) {
	t.Helper()
	logged := func() bool {
		for _, line := range strings.Split(n.out.String(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return true
			}
		}
		return false
	}
	for !logged() {
		select {
		case <-ctx.Done():
			t.Fatalf("node never logged %q:\n%s", parts, tail(n.out.String(), 40))
		case <-n.done:
			if logged() {
				return
			}
			t.Fatalf("node exited without logging %q:\n%s", parts, tail(n.out.String(), 40))
		case <-time.After(20 * time.Millisecond):
		}
	}
}
