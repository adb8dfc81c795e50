package integration

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/redis"
	"github.com/callctl/callctl/adapters/redis/redistest"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/integration/sipp"
	"github.com/callctl/callctl/internal/labtest"
)

// Real-server scenarios with callctl itself as processes (callctl serve,
// state in a real Redis), as an operator runs it: a node killed mid-call,
// and two nodes sharing the servers.

// realCluster is a Redis and the plan file of a process scenario.
type realCluster struct {
	e     *RealEnv
	redis string
	plan  string
	dir   string
	obs   *redis.Store
	cfg   RealConfig
}

func (e *RealEnv) cluster(t *testing.T, cfg RealConfig) *realCluster {
	t.Helper()
	if e.Fleet.SIP == nil || e.sipDir == "" {
		labtest.Missing(t, "real SIP callers: set %s", EnvSIPP)
	}
	rs := redistest.Start(t, redistest.Options{})
	data, err := DocumentYAML(e.Doc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.yaml")
	if err := os.WriteFile(plan, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return &realCluster{e: e, redis: rs.Addr, plan: plan, dir: dir, obs: observer(t, rs.Addr), cfg: cfg}
}

// node starts callctl serve; standby: it listens where the servers' second
// socket line connects.
func (c *realCluster) node(t *testing.T, id string, standby bool) *nodeProc {
	t.Helper()
	esl := c.cfg.ESLListen[0]
	if standby {
		if len(c.cfg.ESLStandby) == 0 {
			labtest.Missing(t, "a second node: set %s (the dialplan's second socket line)", EnvESLStandby)
		}
		esl = c.cfg.ESLStandby[0]
	}
	return clusterNode(t, c.dir, id, c.plan, esl, c.redis)
}

// counts checks the cluster's count of server now.
func (c *realCluster) count(t *testing.T, server string) int {
	t.Helper()
	n, err := c.obs.Count(context.Background(), "server", server)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// sipUp waits until a SIP caller is answered (the node owning the call is
// another process: only the SIP side is looked at).
func sipUp(t *testing.T, cl *sipp.Caller) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cl.Answered() {
		if cl.Ended() || time.Now().After(deadline) {
			t.Fatalf("the SIP caller was not answered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// callctl killed (SIGKILL) while it owns an answered external call, on real
// servers: the call stays up and counted through the dead run's lease and
// beyond, a second call meanwhile counts 2, and once both end the count is
// 0; whether the node comes back with the same id at once or another node
// adopts its legs.
func realControllerKilled(t *testing.T, e *RealEnv) {
	for _, restart := range []bool{true, false} {
		name := "another-node-adopts"
		if restart {
			name = "restarted"
		}
		t.Run(name, func(t *testing.T) {
			c := e.cluster(t, e.cfg)
			n1 := c.node(t, "n1", false)
			n1.waitReady(map[string]string{"srv11": "connected"})
			var n2 *nodeProc
			if !restart {
				n2 = c.node(t, "n2", true)
				standby := "connected"
				if e.Fleet.Kinds["srv11"] == provision.KindAsterisk {
					standby = "standby"
				}
				n2.waitReady(map[string]string{"srv11": standby})
			}
			first := e.sipStart(t, "srv11", sipp.Call{From: "3999", Dialed: "030123456"})
			sipUp(t, first)
			waitCount(t, c.obs, "server", "srv11", 1, 10*time.Second)
			// Answered and connected: on Asterisk the caller hears the
			// answer before callctl's bridge joins the two.
			e.waitBridged(t, "srv11")

			n1.kill()
			killed := time.Now()
			survivor := n2
			if restart {
				survivor = c.node(t, "n1", false)
				survivor.waitReady(map[string]string{"srv11": "connected"})
			} else if e.Fleet.Kinds["srv11"] == provision.KindAsterisk {
				survivor.waitReady(map[string]string{"srv11": "connected"})
			}
			check := func(at time.Duration, want int, calls ...*sipp.Caller) {
				t.Helper()
				time.Sleep(time.Until(killed.Add(at)))
				for i, cl := range calls {
					if cl.Ended() {
						t.Fatalf("call %d ended %s after the node was killed", i+1, at)
					}
				}
				if n := c.count(t, "srv11"); n != want {
					t.Fatalf("srv11 counts %d at +%s, want %d", n, at, want)
				}
			}
			check(2*time.Second, 1, first)
			check(leaseTTL+time.Second, 1, first)
			second := e.sipStart(t, "srv11", sipp.Call{From: "3998", Dialed: "030999999"})
			sipUp(t, second)
			waitCount(t, c.obs, "server", "srv11", 2, 10*time.Second)
			check(2*leaseTTL+time.Second, 2, first, second)

			e.hangupSIP(t, "srv11", "3999", first)
			waitCount(t, c.obs, "server", "srv11", 1, 10*time.Second)
			e.hangupSIP(t, "srv11", "3998", second)
			waitCount(t, c.obs, "server", "srv11", 0, 10*time.Second)
		})
	}
}

// Two nodes share the servers through Redis: exactly one holds each
// Asterisk's application; killed, the other takes over within a few
// seconds and serves new calls, and FreeSWITCH's second socket line reaches
// the other node.
func realTwoNodes(t *testing.T, e *RealEnv) {
	c := e.cluster(t, e.cfg)
	n1 := c.node(t, "n1", false)
	n1.waitReady(map[string]string{"srv11": "connected", "srv12": "connected"})
	n2 := c.node(t, "n2", true)
	want := map[string]string{}
	for _, s := range []string{"srv11", "srv12"} {
		want[s] = "connected"
		if e.Fleet.Kinds[s] == provision.KindAsterisk {
			want[s] = "standby" // n1 holds the application
		}
	}
	n2.waitReady(want)

	across := e.sipStart(t, "srv11", sipp.Call{From: "3999", Dialed: "122099"})
	sipUp(t, across)
	waitCount(t, c.obs, "server", "srv12", 1, 10*time.Second)
	e.hangupSIP(t, "srv11", "3999", across)
	waitCount(t, c.obs, "server", "srv12", 0, 10*time.Second)

	n1.kill()
	killed := time.Now()
	n2.waitReady(map[string]string{"srv11": "connected", "srv12": "connected"})
	t.Logf("n2 serves every server %s after n1 was killed", time.Since(killed).Round(time.Millisecond))
	before := len(e.SIPPhones.RingsOf(PhoneNumber(PhoneAnswers, "2099")))
	again := e.sipStart(t, "srv11", sipp.Call{From: "3999", Dialed: "122099"})
	sipUp(t, again)
	// The phone's log is written by its own process: the caller being up
	// does not mean that log has been read yet.
	waitFor(10*time.Second, func() bool { return len(e.SIPPhones.RingsOf(PhoneNumber(PhoneAnswers, "2099"))) > before })
	if rs := e.SIPPhones.RingsOf(PhoneNumber(PhoneAnswers, "2099")); len(rs) != before+1 || rs[len(rs)-1].From.User != "113999" {
		t.Errorf("2099's phone rang %+v after the takeover, want once more showing 113999", rs[before:])
	}
	waitCount(t, c.obs, "server", "srv11", 1, 10*time.Second)
	waitCount(t, c.obs, "server", "srv12", 1, 10*time.Second)
	e.hangupSIP(t, "srv11", "3999", again)
	waitCount(t, c.obs, "server", "srv11", 0, 10*time.Second)
	waitCount(t, c.obs, "server", "srv12", 0, 10*time.Second)
}

// waitBridged waits until server connects a call: on Asterisk a bridge of
// two channels (callctl's), on FreeSWITCH the answer already means it.
func (e *RealEnv) waitBridged(t *testing.T, server string) {
	t.Helper()
	rs := e.Fleet.Servers[server]
	if rs.Kind != provision.KindAsterisk {
		return
	}
	a := ariClient(rs)
	defer a.http.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var bridges []struct {
			Channels []string `json:"channels"`
		}
		if err := a.request(realCtx(t), http.MethodGet, "/bridges", &bridges); err != nil {
			t.Fatal(err)
		}
		for _, b := range bridges {
			if len(b.Channels) == 2 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no call connected on %s", server)
}
