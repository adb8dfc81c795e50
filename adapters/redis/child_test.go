package redis

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/accounting"
)

// A child node is this test binary run again with CALLCTL_REDIS_CHILD set:
// a real process that the parent test kills with SIGKILL.

const childEnv = "CALLCTL_REDIS_CHILD"

type child struct {
	cmd  *exec.Cmd
	out  *bufio.Scanner
	done chan struct{}
}

// startChild runs TestChildNode in a new process and waits for its READY.
func startChild(t *testing.T, mode string, env map[string]string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildNode$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child node: %v", err)
	}
	c := &child{cmd: cmd, out: bufio.NewScanner(stdout), done: make(chan struct{})}
	t.Cleanup(c.kill)
	ready := make(chan string, 1)
	go func() {
		for c.out.Scan() {
			line := c.out.Text()
			if strings.HasPrefix(line, "READY") {
				ready <- line
			}
		}
		close(ready)
		_ = cmd.Wait()
		close(c.done)
	}()
	select {
	case _, ok := <-ready:
		if !ok {
			t.Fatalf("child node exited before it was ready")
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("child node not ready")
	}
	return c
}

// kill ends the child with SIGKILL, as a crash would, and reaps it.
func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// TestChildNode is the child process's body; it does nothing in a normal run.
func TestChildNode(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		t.Skip("runs only as a child node of another test")
	}
	cluster := os.Getenv("CHILD_CLUSTER") == "1"
	cfg := fastConfig(strings.Split(os.Getenv("CHILD_ADDRS"), ","), cluster, os.Getenv("CHILD_PREFIX"))
	s, err := New(context.Background(), cfg, os.Getenv("CHILD_NODE"), testLogger())
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	ctx := context.Background()
	switch mode {
	case "hold":
		// A node that serves a media server: it adopts legs of dead nodes
		// and takes back its own earlier run's.
		go func() { _ = s.Run(ctx, "fs1", func(ctx context.Context, _ controller.Term) { <-ctx.Done() }) }()
		n, _ := strconv.Atoi(os.Getenv("CHILD_LEGS"))
		tag := os.Getenv("CHILD_TAG")
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("%s-%d/in/0", tag, i)
			if err := s.Acquire(ctx, accounting.Hold{ID: id, Channel: fmt.Sprintf("%s-ch%d", tag, i),
				Leg: accounting.Leg{Server: "fs1", Org: "acme", Kind: accounting.PSTNIn}}); err != nil {
				fmt.Println("ERROR", err)
				os.Exit(1)
			}
		}
		fmt.Println("READY", s.Lease())
	case "own":
		fmt.Println("READY", s.Lease())
		go func() {
			_ = s.Run(ctx, "ast1", func(ctx context.Context, term controller.Term) { processEvents(ctx, s, term) })
		}()
	default:
		fmt.Println("ERROR unknown mode", mode)
		os.Exit(1)
	}
	select {} // until killed
}
