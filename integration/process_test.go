package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/redis"
	"github.com/callctl/callctl/adapters/redis/redistest"
	"github.com/callctl/callctl/integration/sim"
	"github.com/callctl/callctl/integration/sim/callmodel"
)

// Tests that run callctl as its own process: the binary is built once.
var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func callctlBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "callctl-it-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "callctl")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/callctl").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// nodeProc is a callctl serve process.
type nodeProc struct {
	t    *testing.T
	id   string
	cmd  *exec.Cmd
	out  *lockedBuffer
	http string
	done chan struct{}
}

// clusterNode writes a node config and starts callctl serve with it.
func clusterNode(t *testing.T, dir, id, plan, esl, redisAddr string) *nodeProc {
	t.Helper()
	return startNode(t, dir, id, plan, esl, redisAddr, 5*time.Second)
}

// startNode is clusterNode with its drain_timeout.
func startNode(t *testing.T, dir, id, plan, esl, redisAddr string, drain time.Duration) *nodeProc {
	t.Helper()
	httpAddr, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`node: %s
plan: %s
log: {level: debug, format: text}
listen: {esl: "%s", http: "%s"}
state:
  backend: redis
  redis:
    addrs: ["%s"]
    lease_ttl: 3s
    owner_ttl: 1s
    reconcile_min_age: 1s
drain_timeout: %s
`, id, plan, esl, httpAddr, redisAddr, drain)
	path := filepath.Join(dir, id+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &nodeProc{t: t, id: id, out: &lockedBuffer{}, http: httpAddr, done: make(chan struct{})}
	p.cmd = exec.Command(callctlBinary(t), "serve", "--config", path)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("node %s output:\n%s", id, tail(p.out.String(), 60))
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// kill ends the process with SIGKILL: nothing of it runs afterwards.
func (p *nodeProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// waitReady waits until /readyz lists every media server as want. A node
// whose servers are all owned by another node (standby) is not ready (it
// can serve no call: SPEC §9), so then only the lines count.
func (p *nodeProc) waitReady(servers map[string]string) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	body := ""
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			ok := resp.StatusCode == http.StatusOK
			allStandby := true
			for _, st := range servers {
				allStandby = allStandby && st == "standby"
			}
			if allStandby {
				ok = true
			}
			for name, st := range servers {
				if !strings.Contains(body, name+"="+st+"\n") {
					ok = false
				}
			}
			if ok {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("node not ready (want %v); /readyz said %q", servers, body)
}

// observer reads the cluster's counts from Redis.
func observer(t *testing.T, addr string) *redis.Store {
	t.Helper()
	st, err := redis.New(context.Background(), redis.Config{Addrs: []string{addr}, LeaseTTL: leaseTTL}, "observer", logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	return st
}

func waitCount(t *testing.T, st *redis.Store, scope, name string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	got := -1
	for time.Now().Before(deadline) {
		n, err := st.Count(context.Background(), scope, name)
		if err == nil {
			got = n
			if n == want {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s %s counts %d, want %d (within %s)", scope, name, got, want, within)
}

// processLab starts a simulated lab whose FreeSWITCH servers hand calls to
// controllers, and writes the lab plan pointed at it to a file for callctl
// processes; the lab stops with the test.
func processLab(ctx context.Context, t *testing.T, f Fleet, controllers []string, phones ...sim.PhoneConfig) (*sim.Lab, string) {
	t.Helper()
	cfg := LabConfig(f, controllers)
	cfg.PSTNDefault = &sim.Behaviour{Mode: "answer", RingFor: 50 * time.Millisecond}
	cfg.Phones = phones
	cfg.Logger = logger()
	lab, err := sim.StartLab(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lab.Close)
	doc, err := LabDocument(f, func(name string) (string, string) {
		return lab.Server(name).ESLAddr(), lab.Server(name).ARIURL()
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := DocumentYAML(doc)
	if err != nil {
		t.Fatal(err)
	}
	planPath := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(planPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return lab, planPath
}

// leaseTTL is the nodes' lease_ttl (clusterNode).
const leaseTTL = 3 * time.Second

// up says whether a call's channel is still up.
func up(c *sim.Call) bool {
	return !slices.ContainsFunc(c.Events(), func(e callmodel.Event) bool { return e.Kind == callmodel.ChannelDestroyed })
}

// callctl killed (SIGKILL) while it owns an answered external call: the
// call stays up and counted until it ends, whether the node is restarted
// with the same id at once (it takes its earlier run's legs back) or never
// comes back (another node adopts them). A second call meanwhile counts 2;
// once both end, 0.
func TestControllerKilledMidCall(t *testing.T) {
	for _, f := range []Fleet{FreeSWITCHFleet, AsteriskFleet} {
		for _, restart := range []bool{true, false} {
			name := f.Name + "/another-node-adopts"
			if restart {
				name = f.Name + "/restarted"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				testKilledMidCall(t, f, restart)
			})
		}
	}
}

func testKilledMidCall(t *testing.T, f Fleet, restart bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rs := redistest.Start(t, redistest.Options{})
	esl1, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	esl2, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	lab, planPath := processLab(ctx, t, f, []string{esl1, esl2})
	dir := filepath.Dir(planPath)
	obs := observer(t, rs.Addr)
	count := func(scope, name string) int {
		t.Helper()
		n, err := obs.Count(ctx, scope, name)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	n1 := clusterNode(t, dir, "n1", planPath, esl1, rs.Addr)
	n1.waitReady(map[string]string{"srv11": "connected", "srv12": "connected"})
	var n2 *nodeProc
	if !restart {
		// The other node stands by: for Asterisk, n1 holds the applications.
		n2 = clusterNode(t, dir, "n2", planPath, esl2, rs.Addr)
		standby := "connected"
		if f.Kinds["srv11"] == "asterisk" {
			standby = "standby"
		}
		n2.waitReady(map[string]string{"srv11": standby})
	}
	c, err := lab.Call(ctx, "srv11", "3999", "030123456", sim.CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.WaitBridged(ctx)
	if err != nil {
		t.Fatalf("external call not connected: %v\n%s", err, tail(n1.out.String(), 40))
	}
	waitCount(t, obs, "server", "srv11", 1, 5*time.Second)

	n1.kill()
	killed := time.Now()
	survivor := n2
	if restart {
		survivor = clusterNode(t, dir, "n1", planPath, esl1, rs.Addr)
		survivor.waitReady(map[string]string{"srv11": "connected"})
	}
	// The call is up, so its leg stays counted, through the lease of the
	// dead run and well beyond.
	check := func(at time.Duration, want int, calls ...*sim.Call) {
		t.Helper()
		time.Sleep(time.Until(killed.Add(at)))
		for i, c := range calls {
			if !up(c) {
				t.Fatalf("call %d ended by itself %s after the kill", i+1, at)
			}
		}
		if n := count("server", "srv11"); n != want {
			t.Fatalf("srv11 counts %d %s after the kill, want %d\n%s", n, at, want, tail(survivor.out.String(), 40))
		}
		if n := count("org", "acme"); n != want {
			t.Fatalf("org acme counts %d %s after the kill, want %d", n, at, want)
		}
	}
	check(2*time.Second, 1, c)
	// A second call meanwhile counts on top.
	c2, err := lab.Call(ctx, "srv11", "3999", "030777777", sim.CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.WaitBridged(ctx); err != nil {
		t.Fatalf("external call after the kill not connected: %v\n%s", err, tail(survivor.out.String(), 40))
	}
	check(leaseTTL, 2, c, c2)
	check(2*leaseTTL, 2, c, c2)
	check(2*leaseTTL+time.Second, 2, c, c2) // the survivor's checks of the channels keep it
	if !strings.Contains(survivor.out.String(), "its counted legs adopted") && !strings.Contains(survivor.out.String(), "taken back") {
		t.Fatalf("the surviving node did not adopt the dead run's legs:\n%s", tail(survivor.out.String(), 40))
	}

	// The caller of the first call hangs up: its far end is ended too (on
	// Asterisk by the node now owning the application, which watches the
	// dead run's connected calls), and its leg goes once its channel is
	// gone; the second call stays.
	if err := c.Hangup(); err != nil {
		t.Fatal(err)
	}
	waitCount(t, obs, "server", "srv11", 1, 15*time.Second)
	if !up(c2) {
		t.Fatal("the second call ended with the first")
	}
	if err := c2.Hangup(); err != nil {
		t.Fatal(err)
	}
	waitCount(t, obs, "server", "srv11", 0, 15*time.Second)
	waitCount(t, obs, "org", "acme", 0, 5*time.Second)
}

// Two callctl processes sharing Redis serve a mixed fleet: FreeSWITCH hands
// calls to the first node and falls back to the second; exactly one node
// holds the Asterisk application, and when it is killed the other takes it
// over within seconds. `callctl records` lists the calls of both.
func TestTwoNodeCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rs := redistest.Start(t, redistest.Options{})
	esl1, _ := freePort()
	esl2, _ := freePort()
	f := MixedFleet
	lab, planPath := processLab(ctx, t, f, []string{esl1, esl2},
		sim.PhoneConfig{Server: "srv11", Ext: "3998", Behaviour: answers}, sim.PhoneConfig{Server: "srv12", Ext: "2099", Behaviour: answers})
	dir := filepath.Dir(planPath)

	// Each node has its own copy of the plan file: a change reaches the
	// other node through Redis, not through the file.
	data, err := os.ReadFile(planPath)
	if err != nil {
		t.Fatal(err)
	}
	plan2 := filepath.Join(dir, "plan2.yaml")
	if err := os.WriteFile(plan2, data, 0o600); err != nil {
		t.Fatal(err)
	}
	n1 := clusterNode(t, dir, "n1", planPath, esl1, rs.Addr)
	n1.waitReady(map[string]string{"srv11": "connected"})
	n2 := clusterNode(t, dir, "n2", plan2, esl2, rs.Addr)
	n2.waitReady(map[string]string{"srv11": "connected"})
	owner, other := n1, n2
	deadline := time.Now().Add(15 * time.Second)
	for {
		if readyz(n2.http, "srv12=connected") {
			owner, other = n2, n1
			break
		}
		if readyz(n1.http, "srv12=connected") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no node connected the Asterisk application")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !readyz(other.http, "srv12=standby") {
		t.Fatal("both nodes hold the Asterisk application")
	}

	call := func(server, from, dialed string) {
		t.Helper()
		c, err := lab.Call(ctx, server, from, dialed, sim.CallOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitBridged(ctx); err != nil {
			t.Fatalf("%s -> %s on %s not connected: %v", from, dialed, server, err)
		}
		_ = c.Hangup()
		if _, err := c.WaitEnded(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The records of the cluster as they come, from the surviving node's
	// view of Redis.
	follow := exec.Command(callctlBinary(t), "records", "--config", filepath.Join(dir, other.id+".yaml"), "--follow", "--json")
	followed := &lockedBuffer{}
	follow.Stdout, follow.Stderr = followed, followed
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = follow.Process.Kill(); _ = follow.Wait() }()
	time.Sleep(300 * time.Millisecond) // it reads what comes after it started

	call("srv11", "3999", "3998")   // FreeSWITCH: the first node of its dialplan
	call("srv12", "2099", "113998") // Asterisk: the owner, across to srv11

	// A plan changed on n1 is published and n2 runs it within a second or so
	// (n1 checks its file every second).
	changed := strings.Replace(string(data), "channel_limit: 30", "channel_limit: 29", 1)
	if changed == string(data) {
		t.Fatal("the plan has no channel_limit: 30 to change")
	}
	if err := os.WriteFile(planPath, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	edited := time.Now()
	for !strings.Contains(n2.out.String(), "plan switched") {
		if time.Since(edited) > 5*time.Second {
			t.Fatalf("n2 did not switch to the plan n1 published:\n%s", tail(n2.out.String(), 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("n2 runs the plan edited on n1 %s after the edit", time.Since(edited).Round(time.Millisecond))

	owner.kill()
	killed := time.Now()
	deadline = time.Now().Add(10 * time.Second)
	for !readyz(other.http, "srv12=connected") {
		if time.Now().After(deadline) {
			t.Fatal("the surviving node did not take the Asterisk application over")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("Asterisk application taken over %s after the owner was killed", time.Since(killed).Round(time.Millisecond))
	call("srv12", "2099", "113998")
	call("srv11", "3999", "3998") // FreeSWITCH falls back to whichever node is alive

	out, err := exec.Command(callctlBinary(t), "records", "--config", filepath.Join(dir, other.id+".yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("callctl records: %v\n%s", err, out)
	}
	nodes := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, "answered_by=3998") || strings.Contains(line, "answered_by=2099") {
			nodes[line] = true
		}
	}
	if len(nodes) < 4 {
		t.Errorf("records list %d answered calls, want at least 4:\n%s", len(nodes), out)
	}
	deadline = time.Now().Add(5 * time.Second)
	for strings.Count(followed.String(), `"answered_by":`) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("records --follow printed:\n%s", followed.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readyz(addr, want string) bool {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.Contains(string(b), want+"\n")
}
