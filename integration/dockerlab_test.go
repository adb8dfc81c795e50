package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/integration/sipp"
	"github.com/callctl/callctl/internal/labtest"
)

// TestDockerLab brings up the lab in containers the way `make docker-lab`
// does (docker/lab.sh up), checks that nothing listens beyond 127.0.0.1,
// runs its sipp runner, places seed 002's hunt and seed 003's 122099
// through it with real SIP callers and phones, kills the node that holds
// the Asterisk half of a call mid-call and checks the other takes over, and
// brings the lab down leaving nothing running. Without a Docker engine it
// skips, saying why (CI starts one: there it fails instead).
func TestDockerLab(t *testing.T) {
	if testing.Short() {
		t.Skip("the lab in containers takes minutes")
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	labSh := filepath.Join(repo, "docker", "lab.sh")
	if _, err := exec.LookPath("docker"); err != nil {
		labtest.Missing(t, "the lab in containers: docker is not installed (Debian: docker.io docker-compose; .ci/run installs them)")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		labtest.Missing(t, "the lab in containers: no Docker engine answers (%s); .ci/run starts one "+
			"(dockerd --iptables=false --ip6tables=false --bridge=none)", strings.TrimSpace(string(out)))
	}
	if err := sipp.Available(); err != nil {
		labtest.Missing(t, "the lab in containers: %v", err)
	}
	if os.Getenv("CALLCTL_MEDIA_BUILD") != "source" {
		archive := filepath.Join(repo, "..", "shared", "lab", "media-servers.tar.xz")
		if d := os.Getenv("CALLCTL_SHARED_LAB"); d != "" {
			archive = filepath.Join(d, "media-servers.tar.xz")
		}
		if _, err := os.Stat(archive); err != nil {
			labtest.Missing(t, "the lab in containers: no prebuilt media servers (%v); set CALLCTL_MEDIA_BUILD=source to build them", err)
		}
	}
	env, err := ReadEnvFile(filepath.Join(repo, "docker", ".env"))
	if err != nil {
		t.Fatal(err)
	}
	sec, err := DockerSecretsFrom(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if ids := labContainers(t); len(ids) > 0 {
		t.Fatalf("a lab in containers is running already (%d containers): make docker-lab-down first", len(ids))
	}

	lab := NewDockerLab(sec, t.TempDir())
	labCmd := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, labSh, args...).CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		out, err := labCmd(3*time.Minute, "down")
		if err != nil {
			t.Errorf("docker/lab.sh down: %v\n%s", err, out)
		}
		// Nothing of the lab is left: containers, volumes, networks, listeners.
		if ids := labContainers(t); len(ids) > 0 {
			t.Errorf("containers left after down: %v", ids)
		}
		for _, kind := range []string{"volume", "network"} {
			out, err := exec.Command("docker", kind, "ls", "-q", "--filter", "label=com.docker.compose.project=callctl-lab").Output()
			if err != nil || strings.TrimSpace(string(out)) != "" {
				t.Errorf("docker %s ls after down: %q %v", kind, out, err)
			}
		}
		for _, addr := range []string{"127.0.0.1:9021", "127.0.0.1:9088", DockerRedis, DockerNodes[0].HTTP, DockerNodes[1].HTTP} {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Errorf("%s still answers after down", addr)
			}
		}
	})
	start := time.Now()
	out, err := labCmd(20*time.Minute, "up")
	if err != nil {
		t.Fatalf("docker/lab.sh up: %v\n%s", err, out)
	}
	t.Logf("docker/lab.sh up: %s\n%s", time.Since(start).Round(time.Second), firstLines(out, 12))

	t.Run("LoopbackOnly", func(t *testing.T) { checkLabListeners(t) })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n1, n2 := DockerNodes[0], DockerNodes[1]
	// callctl2 starts first and holds the Asterisk application; FreeSWITCH
	// hands calls to callctl1.
	if !lab.Holds(ctx, n2, "srv12") {
		_, body := lab.Ready(ctx, n2)
		t.Fatalf("callctl2 does not hold srv12's application: %s", body)
	}
	if ok, body := lab.Ready(ctx, n1); !ok || !strings.Contains(body, "\nsrv12=standby\n") || !strings.Contains(body, "\nsrv11=connected\n") {
		t.Fatalf("callctl1 is not ready with srv11 connected and srv12 on standby: %s", body)
	}

	t.Run("Runner", func(t *testing.T) {
		out, err := labCmd(3*time.Minute, "examples")
		if err != nil || !strings.Contains(out, "5 examples, 5 as the seeds say, 0 not") {
			t.Fatalf("docker/lab.sh examples: %v\n%s", err, out)
		}
	})

	ph, err := lab.Phones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ph.Close()
	defer func() {
		if t.Failed() {
			t.Logf("the SIP peers' scenarios and message logs: %s", lab.Dir)
			for _, n := range DockerNodes {
				out, _ := labCmd(time.Minute, "compose", "logs", "--no-color", "--tail", "60", n.Name)
				t.Logf("%s's last lines:\n%s", n.Name, out)
			}
		}
	}()
	t.Run("Seed002Hunt", func(t *testing.T) { dockerSeed002(ctx, t, lab, ph) })
	t.Run("Seed003OwnerKilledMidCall", func(t *testing.T) { dockerSeed003Takeover(ctx, t, lab, ph, labCmd) })
}

// Seed 002, example 1 through the containers: 1100 dials 8008003; the
// phones of 03 (busy), 04 (rings 3 s) and 06 (answers) ring in that order
// showing 1100, 05 is not registered and skipped; FreeSWITCH handed the
// call to callctl1, whose record lists the attempts.
func dockerSeed002(ctx context.Context, t *testing.T, lab *DockerLab, ph *sipp.Phones) {
	cl, err := lab.Call(ctx, "srv11", sipp.Call{Port: lab.Fleet.SIP.Callers()[1], From: "1100", Dialed: "8008003", Hold: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r, err := cl.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Final != 200 {
		t.Errorf("the caller got %d (cause %s), want 200", r.Final, r.Reason)
	}
	var last time.Time
	for _, n := range []string{"277721403", "377721404", "577721406"} {
		rs := ph.RingsOf(n)
		if len(rs) != 1 || rs[0].From.User != "1100" {
			t.Errorf("phone %s rang %+v, want once showing 1100", n, rs)
			continue
		}
		if rs[0].At.Before(last) {
			t.Errorf("phone %s rang before the member ahead of it", n)
		}
		last = rs[0].At
	}
	for _, n := range []string{"177721401", "277721402"} {
		if rs := ph.RingsOf(n); len(rs) != 0 {
			t.Errorf("%s rang: %+v", n, rs)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	rec, err := lab.Record(rctx, DockerNodes[0], "srv11", "1100", "8008003", r.Invited)
	if err != nil {
		t.Fatal(err)
	}
	if got := Attempts(rec); got != "77721403:busy 77721404:no-answer 77721405:not-registered 77721406:answered" {
		t.Errorf("record attempts: %s", got)
	}
	if rec.Node != "callctl1" || rec.Route != "hunt" || rec.Answered != "77721406" || rec.Org != "grp1" {
		t.Errorf("record: node %s route %s answered %s org %s", rec.Node, rec.Route, rec.Answered, rec.Org)
	}
	if len(rec.Attempts) == 4 && !ringWithin(rec.Attempts[1].Ring) {
		t.Errorf("77721404 rang %s, want the 3 s ring timeout ±100 ms", rec.Attempts[1].Ring)
	}
}

// Seed 003 through the containers, and a node killed mid-call: 3999 on
// srv11 (FreeSWITCH, served by callctl1) dials 122099; 2099's phone on
// srv12 (Asterisk, whose application callctl2 holds) rings showing 113999;
// one leg counts on each server. callctl2 is killed: callctl1 takes the
// Asterisk application over and adopts callctl2's counted leg, the call
// stays up and counted, a new call through srv12 works, and when the call
// ends nothing stays counted.
func dockerSeed003Takeover(ctx context.Context, t *testing.T, lab *DockerLab, ph *sipp.Phones,
	labCmd func(time.Duration, ...string) (string, error)) {
	n1, n2 := DockerNodes[0], DockerNodes[1]
	cl, err := lab.Call(ctx, "srv11", sipp.Call{Port: lab.Fleet.SIP.Callers()[2], From: "3999", FromName: "Aiko Sato",
		Dialed: "122099", Limit: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "the caller answered and 2099's phone rang", func() bool {
		return cl.Answered() && len(ph.RingsOf("52099")) > 0
	})
	rs := ph.RingsOf("52099")
	if len(rs) != 1 || rs[0].From.User != "113999" {
		t.Fatalf("2099's phone rang %+v, want once showing 113999", rs)
	}
	phoneCall := rs[0].CallID
	waitCounts(ctx, t, lab, n1, 1, 1)
	// Each node owns its half: callctl1 the FreeSWITCH call, callctl2 the
	// call arriving on the Asterisk trunk.
	if cs, err := lab.Calls(ctx, n1); err != nil || !slices.ContainsFunc(cs, func(c controller.CallView) bool {
		return c.Server == "srv11" && c.Caller == "3999" && c.Dialed == "122099"
	}) {
		t.Fatalf("callctl1's calls: %+v %v", cs, err)
	}
	if cs, err := lab.Calls(ctx, n2); err != nil || !slices.ContainsFunc(cs, func(c controller.CallView) bool {
		return c.Server == "srv12" && c.Caller == "113999" && c.Dialed == "2099"
	}) {
		t.Fatalf("callctl2's calls: %+v %v", cs, err)
	}

	if out, err := labCmd(time.Minute, "compose", "kill", "-s", "SIGKILL", "callctl2"); err != nil {
		t.Fatalf("kill callctl2: %v\n%s", err, out)
	}
	killed := time.Now()
	waitUntil(t, 20*time.Second, "callctl1 holds srv12's application", func() bool { return lab.Holds(ctx, n1, "srv12") })
	t.Logf("callctl1 took the Asterisk application over %s after callctl2 was killed", time.Since(killed).Round(time.Millisecond))
	waitUntil(t, 30*time.Second, "callctl1 adopts callctl2's counted legs", func() bool {
		out, _ := labCmd(time.Minute, "compose", "logs", "--no-color", "callctl1")
		return strings.Contains(out, "its counted legs adopted")
	})
	t.Logf("callctl1 adopted callctl2's legs %s after the kill", time.Since(killed).Round(time.Millisecond))
	// Adopted, the call's legs stay counted while it is up.
	if counts, err := lab.Counts(ctx, n1); err != nil || counts["srv11"] != 1 || counts["srv12"] != 1 {
		t.Errorf("counts after the adoption: %v %v, want srv11 1 and srv12 1", counts, err)
	}
	if byeReceived(cl.Messages(), "") || byeReceived(ph.Messages(), phoneCall) {
		t.Fatal("the call ended when callctl2 was killed")
	}

	// srv12 serves new calls through callctl1: 2099 calls 3999 back.
	back, err := lab.Call(ctx, "srv12", sipp.Call{Port: lab.Fleet.SIP.Callers()[3], From: "2099", Dialed: "113999", Hold: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := back.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rb.Final != 200 {
		t.Errorf("2099 calling 113999 after the takeover got %d (cause %s), want 200", rb.Final, rb.Reason)
	}
	if rs := ph.RingsOf("53999"); len(rs) != 1 || rs[0].From.User != "122099" {
		t.Errorf("3999's phone rang %+v, want once showing 122099", rs)
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if rec, err := lab.Record(rctx, n1, "srv12", "2099", "113999", rb.Invited); err != nil {
		t.Error(err)
	} else if rec.Node != "callctl1" || rec.Route != "inter-server" || rec.CallerID != "122099" {
		t.Errorf("record of the call back: node %s route %s caller id %s", rec.Node, rec.Route, rec.CallerID)
	}

	// FreeSWITCH hangs the caller up: the call ends, nothing stays counted.
	out, err := labCmd(time.Minute, "compose", "exec", "-T", "freeswitch", "/opt/lab/freeswitch/bin/fs_cli", "-H", "127.0.0.1",
		"-P", "9021", "-p", lab.Secret.ESLPassword, "-x", "hupall NORMAL_CLEARING sip_from_user 3999")
	if err != nil {
		t.Fatalf("hang the caller up: %v\n%s", err, out)
	}
	r, err := cl.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Final != 200 || !r.HungUpByFar {
		t.Errorf("the caller: final %d, hung up by the far end %v", r.Final, r.HungUpByFar)
	}
	waitCounts(ctx, t, lab, n1, 0, 0)
	if rec, err := lab.Record(rctx, n1, "srv11", "3999", "122099", r.Invited); err != nil {
		t.Error(err)
	} else if rec.Node != "callctl1" || rec.Route != "inter-server" || rec.CallerID != "113999" ||
		fmt.Sprint(legs(rec)) != "[srv11:trunk-out]" {
		t.Errorf("srv11 record: node %s route %s caller id %s legs %v", rec.Node, rec.Route, rec.CallerID, legs(rec))
	}
	// The Asterisk half was callctl2's: with callctl2 gone nobody ends its
	// bridge when the trunk side leaves, so 2099's phone stays in it until it
	// hangs up itself (as TestControllerKilledMidCall notes for a restart).
	// Here Asterisk hangs it up, so the lab is idle before it goes down.
	if !waitFor(5*time.Second, func() bool { return byeReceived(ph.Messages(), phoneCall) }) {
		t.Log("2099's phone is still connected after its caller left: the node that held its bridge was killed; Asterisk hangs it up")
		out, err := labCmd(time.Minute, "compose", "exec", "-T", "asterisk", "/opt/lab/asterisk/sbin/asterisk",
			"-C", "/var/lib/callctl-lab/ast1/etc/asterisk.conf", "-rx", "channel request hangup all")
		if err != nil {
			t.Fatalf("hang up Asterisk's channels: %v\n%s", err, out)
		}
		waitUntil(t, 15*time.Second, "2099's phone is hung up", func() bool { return byeReceived(ph.Messages(), phoneCall) })
	}
}

// byeReceived says whether a BYE of the dialog callID ("": any) was
// received among msgs.
func byeReceived(msgs []sipp.Message, callID string) bool {
	return slices.ContainsFunc(msgs, func(m sipp.Message) bool {
		return !m.Sent && m.Method() == "BYE" && (callID == "" || m.Header("Call-ID") == callID)
	})
}

func waitCounts(ctx context.Context, t *testing.T, lab *DockerLab, node DockerNode, srv11, srv12 int) {
	t.Helper()
	var counts map[string]int
	var err error
	waitUntil(t, 15*time.Second, fmt.Sprintf("srv11 counts %d and srv12 %d", srv11, srv12), func() bool {
		counts, err = lab.Counts(ctx, node)
		return err == nil && counts["srv11"] == srv11 && counts["srv12"] == srv12
	})
}

func waitUntil(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	if !waitFor(within, ok) {
		t.Fatalf("not within %s: %s", within, what)
	}
}

// waitFor says whether ok became true within the time given.
func waitFor(within time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
	return true
}

// labContainers lists the containers of the lab's compose project.
func labContainers(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=com.docker.compose.project=callctl-lab").Output()
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	return strings.Fields(string(out))
}

// checkLabListeners: every socket the lab's servers listen on (TCP) or
// receive SIP on (UDP) is on 127.0.0.1. The lab's processes are the
// containers' (host networking: their sockets are this machine's).
func checkLabListeners(t *testing.T) {
	out, err := exec.Command("docker", "ps", "-q", "--filter", "label=com.docker.compose.project=callctl-lab").Output()
	if err != nil {
		t.Fatal(err)
	}
	pids := map[string]string{}
	for _, id := range strings.Fields(string(out)) {
		o, err := exec.Command("docker", "inspect", "-f", `{{.State.Pid}} {{index .Config.Labels "com.docker.compose.service"}}`, id).Output()
		if err != nil {
			t.Fatal(err)
		}
		pid, svc, _ := strings.Cut(strings.TrimSpace(string(o)), " ")
		pids[pid] = svc
		// The servers run under the containers' init.
		if kids, err := exec.Command("pgrep", "-P", pid).Output(); err == nil {
			for _, k := range strings.Fields(string(kids)) {
				pids[k] = svc
			}
		}
	}
	ss, err := exec.Command("ss", "-Hltnup").Output()
	if err != nil {
		labtest.Missing(t, "ss (iproute2) is needed to list the lab's sockets: %v", err)
	}
	pidRE := regexp.MustCompile(`pid=(\d+),`)
	seen := map[string][]string{}
	for _, line := range strings.Split(string(ss), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		var svc string
		for _, m := range pidRE.FindAllStringSubmatch(line, -1) {
			if s, ok := pids[m[1]]; ok {
				svc = s
			}
		}
		if svc == "" {
			continue
		}
		proto, local := f[0], f[4]
		host, port, err := net.SplitHostPort(local)
		if err != nil {
			t.Errorf("%s: %q", svc, line)
			continue
		}
		seen[svc] = append(seen[svc], proto+" "+local)
		if host == "127.0.0.1" {
			continue
		}
		// Asterisk's SIP stack keeps a DNS resolver's client sockets on
		// ephemeral ports of every address; nothing of the lab is there.
		if proto == "udp" && svc == "asterisk" && !slices.Contains([]string{"6080", "5060", "5080"}, port) {
			continue
		}
		t.Errorf("%s listens on %s %s, beyond 127.0.0.1", svc, proto, local)
	}
	for _, svc := range []string{"redis", "freeswitch", "asterisk", "callctl1", "callctl2"} {
		if len(seen[svc]) == 0 {
			t.Errorf("no socket of %s found (its processes: %v)", svc, pids)
		}
	}
	t.Logf("the lab's sockets: %v", seen)
}

func firstLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// The compose file as compose reads it (`docker compose config`, with
// docker/.env): host networking, nothing published, every address on
// 127.0.0.1 and where DockerNodes, DockerRedis and the plan say, the secrets
// from .env, and a missing secret refused by name.
func TestComposeConfig(t *testing.T) {
	labSh, err := filepath.Abs("../docker/lab.sh")
	if err != nil {
		t.Fatal(err)
	}
	_, errV2 := exec.Command("docker", "compose", "version").CombinedOutput()
	if _, errV1 := exec.LookPath("docker-compose"); errV2 != nil && errV1 != nil {
		labtest.Missing(t, "docker compose: neither the Compose plugin nor docker-compose is installed (.ci/run installs docker-compose)")
	}
	config := func(env ...string) (string, error) {
		cmd := exec.Command(labSh, "compose", "config")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := config()
	if err != nil {
		t.Fatalf("compose config: %v\n%s", err, out)
	}
	var c struct {
		Services map[string]struct {
			Network     string            `yaml:"network_mode"`
			Ports       []any             `yaml:"ports"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	env, err := ReadEnvFile("../docker/.env")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"redis", "freeswitch", "asterisk", "token", "callctl1", "callctl2", "examples"} {
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("no service %s", name)
			continue
		}
		if s.Network != "host" || len(s.Ports) > 0 {
			t.Errorf("%s: network_mode %q ports %v", name, s.Network, s.Ports)
		}
	}
	var sockets []string
	for _, n := range DockerNodes {
		e := c.Services[n.Name].Environment
		if e["CALLCTL_NODE"] != n.Name || e["CALLCTL_LISTEN_ESL"] != n.ESL || e["CALLCTL_LISTEN_HTTP"] != n.HTTP {
			t.Errorf("%s's environment %v, want listen %s and %s", n.Name, e, n.ESL, n.HTTP)
		}
		sockets = append(sockets, n.ESL)
	}
	for _, name := range []string{"freeswitch", "asterisk", "examples"} {
		e := c.Services[name].Environment
		for _, k := range []string{"CALLCTL_LAB_ESL_PASSWORD", "CALLCTL_LAB_ARI_USER", "CALLCTL_LAB_ARI_PASSWORD"} {
			if e[k] == "" || e[k] != env[k] {
				t.Errorf("%s: %s=%q, want docker/.env's %q", name, k, e[k], env[k])
			}
		}
		if name == "examples" {
			continue
		}
		if e["CALLCTL_LAB_PORT_OFFSET"] != fmt.Sprint(DockerLabOffset) || e["CALLCTL_LAB_SOCKETS"] != strings.Join(sockets, ",") {
			t.Errorf("%s: offset %s sockets %s, want %d and %s", name, e["CALLCTL_LAB_PORT_OFFSET"], e["CALLCTL_LAB_SOCKETS"],
				DockerLabOffset, strings.Join(sockets, ","))
		}
	}
	if e := c.Services["token"].Environment; e["CALLCTL_TOKEN"] != env["CALLCTL_TOKEN"] {
		t.Errorf("token: CALLCTL_TOKEN %q, want docker/.env's", e["CALLCTL_TOKEN"])
	}
	host, port, _ := net.SplitHostPort(DockerRedis)
	if cmd := strings.Join(c.Services["redis"].Command, " "); !strings.Contains(cmd, "--bind "+host+" --port "+port+" ") {
		t.Errorf("redis: %s, want it on %s", cmd, DockerRedis)
	}
	node, err := os.ReadFile("../docker/node.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(node), `addrs: ["`+DockerRedis+`"]`) {
		t.Errorf("docker/node.yaml does not name Redis at %s:\n%s", DockerRedis, node)
	}
	// A secret missing from the environment and .env is refused by name.
	if out, err := config("CALLCTL_LAB_ARI_PASSWORD="); err == nil || !strings.Contains(out, "CALLCTL_LAB_ARI_PASSWORD") {
		t.Errorf("compose config without the ARI password: %v\n%s", err, out)
	}
}

// The plan of the lab in containers compiles, and points at the lab's
// servers with the secrets given.
func TestDockerLabPlan(t *testing.T) {
	sec := DockerSecrets{ESLPassword: "esl-pw", ARIUser: "ari-user", ARIPassword: "ari-pw", Token: "unused"}
	data, err := DockerLabPlan(sec)
	if err != nil {
		t.Fatal(err)
	}
	plan, probs, err := provision.Load("docker-lab.yaml", data)
	if err != nil || plan == nil {
		t.Fatalf("the plan does not load: %v %v", err, probs)
	}
	for _, want := range []string{"address: 127.0.0.1:9021", "password: esl-pw", "url: http://127.0.0.1:9088/ari",
		"user: ari-user", "password: ari-pw", "sofia/internal/277721403@127.0.0.1:6091", "PJSIP/52099@phones",
		"127.0.0.1:6080", "ring_timeout: 3s"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("the plan lacks %q", want)
		}
	}
	if _, err := DockerSecretsFrom(func(string) string { return "" }); err == nil ||
		!strings.Contains(err.Error(), "CALLCTL_LAB_ESL_PASSWORD") || !strings.Contains(err.Error(), "CALLCTL_TOKEN") {
		t.Errorf("missing secrets: %v", err)
	}
}
