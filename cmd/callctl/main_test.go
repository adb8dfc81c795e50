package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"

	"github.com/callctl/callctl/adapters/file"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/hunt"
	"github.com/callctl/callctl/controller/routing"
	"github.com/callctl/callctl/examples"
)

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRoot(&out, &errb)
	root.SetArgs(args)
	code := 0
	if err := root.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
			errb.WriteString(err.Error())
		} else {
			code = 2
			errb.WriteString(err.Error())
		}
	}
	return out.String(), errb.String(), code
}

func writePlan(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateLab(t *testing.T) {
	out, _, code := run(t, "validate", "--config", "../../examples/lab.yaml")
	if code != 0 || !strings.Contains(out, "valid (version") {
		t.Fatalf("exit %d: %s", code, out)
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	bad := strings.NewReplacer(`prefix: "12"`, `prefix: "7"`, `next: "77721402"`, `next: "77721499"`,
		`{number: "8008003", start: "77721403"}`, `{number: "8008003"}`).Replace(string(examples.Lab))
	path := writePlan(t, bad)
	out, _, code := run(t, "validate", "--config", path)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{"server srv12 prefix", "next number 77721499", "service number 8008003 start", path + ":"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, _, code = run(t, "validate", "--config", path, "--json")
	var res struct {
		Valid    bool
		Problems []struct{ Field, Reason string }
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 1 || res.Valid || len(res.Problems) < 3 {
		t.Fatalf("json: exit %d err %v: %s", code, err, out)
	}
	_, errOut, code := run(t, "validate", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != 2 || !strings.Contains(errOut, "no such file") && !strings.Contains(errOut, "missing.yaml") {
		t.Logf("stderr: %s", errOut)
	}
}

func TestRouteForPeopleAndMachines(t *testing.T) {
	out, _, code := run(t, "route", "--server", "srv11", "--from", "3999", "--dial", "122099")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"inter-server", "sofia/gateway/srv12/2099", "shows 113999", "srv11: 1 (trunk-out", "srv12: 1 (trunk-in", "billing      acme"} {
		if !strings.Contains(out, want) {
			t.Errorf("route output lacks %q:\n%s", want, out)
		}
	}
	out, _, _ = run(t, "route", "--config", "../../examples/lab.yaml", "--server", "srv11", "--from", "124", "--dial", "1201", "--json")
	var s struct {
		Route   string
		Org     string
		Targets []struct {
			Number   string
			CallerID string `json:"caller_id"`
		}
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if s.Route != "org-connect" || s.Org != "orgB" || len(s.Targets) != 1 || s.Targets[0].CallerID != "2124" {
		t.Errorf("1201 from 124: %+v", s)
	}
	// An emergency number says why neither the outbound rule (2099's is
	// "national") nor the limits apply.
	out, _, code = run(t, "route", "--server", "srv12", "--from", "2099", "--dial", "112")
	if code != 0 || !regexp.MustCompile(`(?m)^emergency +112 is an emergency number of org acme`).MatchString(out) {
		t.Errorf("112 from 2099: exit %d:\n%s", code, out)
	}
	if out, _, _ := run(t, "route", "--server", "srv11", "--from", "3999", "--dial", "122099"); strings.Contains(out, "emergency") {
		t.Errorf("122099 said emergency:\n%s", out)
	}
	out, _, _ = run(t, "route", "--server", "srv11", "--from", "3999", "--dial", "1000,user/evil")
	if !strings.Contains(out, "INVALID_NUMBER_FORMAT (SIP 484)") {
		t.Errorf("hostile dial string: %s", out)
	}
}

// syncBuffer is a log sink safe for the node's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, buf *syncBuffer, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(buf.String(), what) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("log never said %q:\n%s", what, buf.String())
}

// offline is the lab plan with its media servers where nothing listens:
// tests never reach a media server running on this machine.
func offline() string {
	return strings.NewReplacer("127.0.0.1:8021", "127.0.0.1:9", "http://127.0.0.1:8088/ari", "http://127.0.0.1:9/ari").Replace(string(examples.Lab))
}

func TestServeReloadsAndStops(t *testing.T) {
	path := writePlan(t, offline())
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Plan = path
	cfg.State.Dir = t.TempDir()
	cfg.Listen.HTTP = "127.0.0.1:0"
	cfg.Listen.ESL = "127.0.0.1:0"
	cfg.PlanCheck = 50 * time.Millisecond
	cfg.DrainTimeout = time.Second
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	var logs syncBuffer
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, hup, &logs) }()
	waitFor(t, &logs, "callctl node started")
	waitFor(t, &logs, "http listening")
	// A single node owns its media servers under its own id.
	waitFor(t, &logs, `msg="media server owned" server=srv11 node=`+cfg.Node+` `)
	addr := regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`).FindStringSubmatch(logs.String())
	if addr == nil {
		t.Fatalf("no http address in the log:\n%s", logs.String())
	}
	// callctl calls speaks to the API with a token; without one it is refused.
	cfgFile := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(cfgFile, []byte("state: {dir: "+cfg.State.Dir+"}\nlisten: {http: \""+addr[1]+"\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, _, code := run(t, "token", "create", "--cluster", "--name", "ops", "--config", cfgFile)
	if code != 0 || !strings.HasPrefix(tok, "callctl_") {
		t.Fatalf("token create: exit %d: %q", code, tok)
	}
	t.Setenv("CALLCTL_TOKEN", strings.TrimSpace(tok))
	out, _, code := run(t, "calls", "--api", addr[1])
	if code != 0 || !strings.HasPrefix(out, "CALL ") {
		t.Errorf("calls: exit %d: %s", code, out)
	}
	t.Setenv("CALLCTL_TOKEN", "callctl_0123456789abcdef_"+strings.Repeat("x", 43))
	if _, errOut, code := run(t, "calls", "--api", addr[1]); code != 1 || !strings.Contains(errOut, "401") {
		t.Errorf("calls with a wrong token: exit %d: %s", code, errOut)
	}
	// A token made elsewhere (a lab's .env) works once imported.
	t.Setenv("CALLCTL_TOKEN", "callctl_00000000000000aa_"+strings.Repeat("L", 43))
	if _, errOut, code := run(t, "calls", "--api", addr[1]); code != 1 || !strings.Contains(errOut, "401") {
		t.Errorf("calls with a token not imported yet: exit %d: %s", code, errOut)
	}
	if out, errOut, code := run(t, "token", "import", "--cluster", "--name", "lab", "--config", cfgFile); code != 0 ||
		!strings.Contains(out, "token 00000000000000aa (lab) for cluster imported") {
		t.Fatalf("token import: exit %d: %s %s", code, out, errOut)
	}
	if out, errOut, code := run(t, "calls", "--api", addr[1]); code != 0 || !strings.HasPrefix(out, "CALL ") {
		t.Errorf("calls with the imported token: exit %d: %s %s", code, out, errOut)
	}
	// No media server is up: callctl ready says so and exits 1.
	if out, _, code := run(t, "ready", "--config", cfgFile); code != 1 || !strings.Contains(out, "not ready: no media server connected") {
		t.Errorf("ready: exit %d: %s", code, out)
	}

	// The metrics of SPEC §9, open on loopback.
	resp, err := http.Get("http://" + addr[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`callctl_channels_in_use{server="srv11"} 0`, `callctl_channel_limit{server="srv11"} 30`,
		`callctl_org_channel_limit{org="acme"} 20`, `callctl_org_channels_in_use{org="acme"} 0`,
		`callctl_media_server_connection{server="srv11",state="disconnected"} 1`, `callctl_state_backend_up{backend="memory"} 1`,
		`callctl_plan_revision 1`, `callctl_plan_file_behind 0`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// No media server is up here: not ready, and says why.
	resp, err = http.Get("http://" + addr[1] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "no media server connected") ||
		!strings.Contains(string(body), "srv11=disconnected") {
		t.Errorf("/readyz %d: %s", resp.StatusCode, body)
	}

	// A changed file is picked up by itself.
	changed := strings.Replace(offline(), "channel_limit: 30", "channel_limit: 31", 1)
	if err := os.WriteFile(path, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &logs, "plan switched")
	// An invalid one changes nothing and says why, with the field.
	broken := strings.Replace(changed, `prefix: "12"`, `prefix: "9"`, 1)
	if err := os.WriteFile(path, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &logs, "plan file rejected")
	if !strings.Contains(logs.String(), "field=prefix") {
		t.Errorf("rejected reload does not name the field:\n%s", logs.String())
	}
	// SIGHUP forces a reload of the (now fixed) file.
	if err := os.WriteFile(path, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	hup <- syscall.SIGHUP
	waitFor(t, &logs, "SIGHUP: reloading the plan")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
	if !strings.Contains(logs.String(), "callctl node stopped") {
		t.Errorf("no clean stop:\n%s", logs.String())
	}
}

func TestServeRefusesAnInvalidPlan(t *testing.T) {
	cfg, _ := loadConfig("")
	cfg.Plan = writePlan(t, "servers: [{name: x, kind: yate}]\n")
	cfg.State.Dir = t.TempDir()
	cfg.Listen.HTTP = ""
	var logs syncBuffer
	err := serve(context.Background(), cfg, nil, &logs)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("serve = %v, want exit 1", err)
	}
	if !strings.Contains(logs.String(), "not a media server kind") {
		t.Errorf("problems not logged:\n%s", logs.String())
	}
}

func TestNodeConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "node.yaml")
	os.WriteFile(good, []byte("node: n1\nlog: {level: debug, format: json}\nstate: {backend: memory}\n"), 0o600)
	t.Setenv("CALLCTL_LOG_LEVEL", "warn")
	c, err := loadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Node != "n1" || c.Log.Level != "warn" || c.Log.Format != "json" || c.Listen.ESL != "127.0.0.1:8084" {
		t.Errorf("config = %+v", c)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("node: n1\nlogg: {level: debug}\n"), 0o600)
	if _, err := loadConfig(bad); err == nil || !strings.Contains(err.Error(), "logg") {
		t.Errorf("unknown key: %v", err)
	}
	os.WriteFile(bad, []byte("state: {backend: etcd}\nlog: {format: xml}\n"), 0o600)
	if _, err := loadConfig(bad); err == nil || !strings.Contains(err.Error(), "etcd") || !strings.Contains(err.Error(), "xml") {
		t.Errorf("bad values: %v", err)
	}
	os.WriteFile(good, []byte("listen: {esl_allow: [10.0.0.5, 192.0.2.0/24, \"::1\"]}\n"), 0o600)
	if c, err := loadConfig(good); err != nil || len(c.Listen.ESLAllow) != 3 {
		t.Errorf("esl_allow: %+v %v", c, err)
	}
	os.WriteFile(bad, []byte("listen: {esl_allow: [fs1.example]}\n"), 0o600)
	if _, err := loadConfig(bad); err == nil || !strings.Contains(err.Error(), "esl_allow") || !strings.Contains(err.Error(), "fs1.example") {
		t.Errorf("a name in esl_allow: %v", err)
	}
}

// A single node (no Redis) keeps its call records in a journal in its state
// directory: `callctl records --config` reads them, durations in ms.
func TestRecordsFromTheJournal(t *testing.T) {
	dir := t.TempDir()
	j, err := file.OpenJournal(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	rec := controller.Record{CallID: "c-1", Server: "srv11", Caller: "1100", Dialed: "8008003", Route: "hunt", Org: "grp1",
		Attempts: []hunt.Attempt{{Target: "77721403", Outcome: hunt.Busy, Start: start, Ring: 1500 * time.Millisecond}}, Start: start, End: start.Add(time.Minute)}
	if err := j.Write(context.Background(), &rec); err != nil {
		t.Fatal(err)
	}
	j.Close()
	cfg := filepath.Join(t.TempDir(), "node.yaml")
	os.WriteFile(cfg, []byte("state: {backend: memory, dir: "+dir+"}\n"), 0o600)
	out, errOut, code := run(t, "records", "--config", cfg)
	if code != 0 || !strings.Contains(out, "call=c-1 server=srv11 1100 -> 8008003 route=hunt org=grp1") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	out, _, _ = run(t, "records", "--config", cfg, "--json")
	if !strings.Contains(out, `"ring_ms":1500`) {
		t.Fatalf("json: %s", out)
	}
}

// Every key of the node configuration has its CALLCTL_* variable, and the
// variable reaches the key: a key added to Config cannot be forgotten.
func TestEveryConfigKeyHasAVariable(t *testing.T) {
	def, err := decodeConfig("")
	if err != nil {
		t.Fatal(err)
	}
	keys := configKeys()
	if len(keys) < 40 {
		t.Fatalf("only %d keys found: %v", len(keys), keys)
	}
	for _, k := range keys {
		t.Run(k, func(t *testing.T) {
			field := lookup(reflect.ValueOf(def).Elem(), k)
			var val string
			switch field.Interface().(type) {
			case string:
				val = "set-by-env"
			case bool:
				val = strconv.FormatBool(!field.Bool())
			case int, int64:
				val = "77"
			case time.Duration:
				val = "77s"
			case []string:
				val = "a:1,b:2"
			default:
				t.Fatalf("key %s of type %s: the test does not know it", k, field.Type())
			}
			t.Setenv(envName(k), val)
			got, err := decodeConfig("")
			if err != nil {
				t.Fatalf("%s=%s: %v", envName(k), val, err)
			}
			now := lookup(reflect.ValueOf(got).Elem(), k)
			if reflect.DeepEqual(now.Interface(), field.Interface()) {
				t.Fatalf("%s=%s left %s at %v: the variable does not reach the key", envName(k), val, k, now.Interface())
			}
		})
	}
}

// A field added without a mapstructure name, or inside a squashed struct,
// still gets its CALLCTL_* variable, and the variable reaches it.
func TestUntaggedConfigFieldsHaveVariables(t *testing.T) {
	type inner struct {
		PoolTimeout time.Duration
		Retries     int `mapstructure:"retries,omitempty"`
	}
	type Common struct {
		Zone string `mapstructure:"zone"`
	}
	type cfg struct {
		Common `mapstructure:",squash"`
		Cache  inner `mapstructure:"cache"`
		Spare  string
		Hidden string `mapstructure:"-"`
		secret string
	}
	keys := keysOf(reflect.TypeOf(cfg{}), "")
	want := []string{"zone", "cache.pooltimeout", "cache.retries", "spare"}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	t.Setenv("CALLCTL_ZONE", "eu")
	t.Setenv("CALLCTL_CACHE_POOLTIMEOUT", "7s")
	t.Setenv("CALLCTL_CACHE_RETRIES", "3")
	t.Setenv("CALLCTL_SPARE", "yes")
	v := viper.New()
	if err := bindEnv(v, keys); err != nil {
		t.Fatal(err)
	}
	var got cfg
	if err := v.UnmarshalExact(&got); err != nil {
		t.Fatal(err)
	}
	if got.Zone != "eu" || got.Cache.PoolTimeout != 7*time.Second || got.Cache.Retries != 3 || got.Spare != "yes" || got.secret != "" {
		t.Fatalf("the variables did not reach the fields: %+v", got)
	}
}

// lookup finds a config key's field by its mapstructure names.
func lookup(v reflect.Value, key string) reflect.Value {
	for _, part := range strings.Split(key, ".") {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			if t.Field(i).Tag.Get("mapstructure") == part {
				v = v.Field(i)
				break
			}
		}
	}
	return v
}

// `serve --config PLAN` (natural after `validate --config PLAN`) says what
// to do instead of listing the plan's keys as unknown.
func TestServeSaysAPlanIsNotANodeConfig(t *testing.T) {
	path := writePlan(t, offline())
	_, errOut, code := run(t, "serve", "--config", path)
	if code != 2 || !strings.Contains(errOut, "is a provisioning plan, not a node configuration: run `callctl serve --plan "+path+"`") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// An IVR's transfer of an external call routes in the org that received
// its DID, not as a new DID.
func TestRouteIVRTransfer(t *testing.T) {
	out, _, code := run(t, "route", "--server", "srv11", "--source", "127.0.0.99", "--from", "+4989123456", "--dial", "122099")
	if code != 1 || !strings.Contains(out, "UNALLOCATED_NUMBER (SIP 404)") {
		t.Errorf("122099 from the PSTN as a DID: exit %d:\n%s", code, out)
	}
	for _, arg := range [][]string{{"--previous", "+4930100100"}, {"--org", "acme"}} {
		out, _, code := run(t, append([]string{"route", "--server", "srv11", "--source", "127.0.0.99", "--from", "+4989123456",
			"--dial", "122099", "--transfer", "ivr"}, arg...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d:\n%s", arg, code, out)
		}
		for _, want := range []string{"transfer  ivr: no user transferred it", "inter-server to org acme", "shows +4989123456",
			"srv11: 1 (pstn-in, org acme, on arrival); srv11: 1 (trunk-out", "srv12: 1 (trunk-in"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: output lacks %q:\n%s", arg, want, out)
			}
		}
	}
	if _, errOut, code := run(t, "route", "--server", "srv11", "--source", "127.0.0.99", "--from", "+4989123456", "--dial", "122099",
		"--transfer", "ivr"); code != 2 || !strings.Contains(errOut, "--org ORG, or --previous DID") {
		t.Errorf("ivr without the call's org: exit %d: %s", code, errOut)
	}
	if _, errOut, code := run(t, "route", "--server", "srv11", "--from", "3999", "--dial", "122099", "--transfer", "park"); code != 2 ||
		!strings.Contains(errOut, "want blind, attended or ivr") {
		t.Errorf("unknown transfer kind: exit %d: %s", code, errOut)
	}
}

// route exits non-zero when the call would not be routed, names an unknown
// server, and asks for --from.
func TestRouteRefusals(t *testing.T) {
	out, errOut, code := run(t, "route", "--server", "srv99", "--from", "3999", "--dial", "2099")
	if code != 2 || !strings.Contains(errOut, `--server "srv99": no such server in the plan (its servers: srv11, srv12)`) {
		t.Errorf("unknown server: exit %d: %s %s", code, out, errOut)
	}
	_, errOut, code = run(t, "route", "--server", "srv11", "--dial", "2099")
	if code != 2 || !strings.Contains(errOut, "--from is needed") {
		t.Errorf("no --from: exit %d: %s", code, errOut)
	}
	out, _, code = run(t, "route", "--server", "srv11", "--from", "3999", "--dial", "555")
	if code != 1 || !strings.Contains(out, "UNALLOCATED_NUMBER (SIP 404)") {
		t.Errorf("unallocated: exit %d: %s", code, out)
	}
	if _, _, code := run(t, "route", "--server", "srv11", "--from", "3999", "--dial", "2099"); code != 0 {
		t.Errorf("a routable call: exit %d", code)
	}
}

// docker/compose.yaml runs on a fresh clone and publishes nothing beyond
// loopback: every file it mounts is in the repository, every published
// port is bound to 127.0.0.1, and the node configuration it mounts loads.
func TestComposeFileRunsOnAFreshClone(t *testing.T) {
	data, err := os.ReadFile("../../docker/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Network     string            `yaml:"network_mode"`
			Ports       []string          `yaml:"ports"`
			Volumes     []string          `yaml:"volumes"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("../../docker/lab.sh")
	if err != nil {
		t.Fatal(err)
	}
	nodes := 0
	for name, s := range c.Services {
		// Host networking: what a service listens on is what it binds, and
		// nothing is published.
		if s.Network != "host" || len(s.Ports) > 0 {
			t.Errorf("%s: network_mode %q, ports %v; want host networking and no published ports", name, s.Network, s.Ports)
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			switch {
			case strings.HasPrefix(src, "./.lab/"):
				// Made by docker/lab.sh up before the services start.
				if !strings.Contains(string(script), `$STATE/`+strings.TrimPrefix(src, "./.lab/")) {
					t.Errorf("%s mounts %s, which docker/lab.sh does not make", name, src)
				}
			case strings.HasPrefix(src, "."):
				if _, err := os.Stat(filepath.Join("../../docker", src)); err != nil {
					t.Errorf("%s mounts %s, which a fresh clone does not have", name, src)
				}
			}
		}
		if s.Image != "callctl-lab/callctl" || s.Environment["CALLCTL_LISTEN_HTTP"] == "" {
			continue
		}
		nodes++
		t.Run(name, func(t *testing.T) {
			for k, v := range s.Environment {
				t.Setenv(k, v)
			}
			cfg, err := loadConfig("../../docker/node.yaml")
			if err != nil {
				t.Fatalf("node.yaml with %s's environment: %v", name, err)
			}
			for _, addr := range []string{cfg.Listen.HTTP, cfg.Listen.ESL} {
				if !strings.HasPrefix(addr, "127.0.0.1:") {
					t.Errorf("%s listens on %s, beyond 127.0.0.1", name, addr)
				}
			}
			if cfg.Node != name || cfg.State.Backend != "redis" || cfg.Plan != "/etc/callctl/plan.yaml" {
				t.Errorf("%s: node %q, state %s, plan %s", name, cfg.Node, cfg.State.Backend, cfg.Plan)
			}
		})
	}
	if nodes != 2 {
		t.Errorf("%d callctl nodes in the compose file, want 2", nodes)
	}
}

// route shows where a call would be forwarded: the user's no-answer (with
// its wait) and busy forwards, the limit forwards of the limits its legs
// count against, and max forwards.
func TestRouteShowsForwards(t *testing.T) {
	out, _, code := run(t, "route", "--server", "srv11", "--from", "3999", "--dial", "3997")
	for _, want := range []string{"ring 4s", "on no answer after 4s  121101 (dialed as user 3997", "on busy",
		"max forwards           5 (then busy)"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("route output (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
	if out, _, _ := run(t, "route", "--server", "srv11", "--from", "3999", "--dial", "3998"); strings.Contains(out, "forward") {
		t.Errorf("a user without forwards shows forwards:\n%s", out)
	}
	lab := strings.Replace(string(examples.Lab), "    channel_limit: 30\n    asterisk:",
		"    channel_limit: 30\n    limit_forward: {org: acme, target: \"3998\"}\n    asterisk:", 1)
	out, _, _ = run(t, "route", "--config", writePlan(t, lab), "--server", "srv11", "--from", "3999", "--dial", "122099", "--json")
	var s struct {
		Forwards    []routing.ForwardSummary `json:"forwards"`
		MaxForwards int                      `json:"max_forwards"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("route --json: %v\n%s", err, out)
	}
	if len(s.Forwards) != 1 || s.Forwards[0] != (routing.ForwardSummary{On: "limit", Target: "3998", By: "server srv12"}) || s.MaxForwards != 5 {
		t.Errorf("forwards of 122099 with srv12's limit forward: %+v, max %d", s.Forwards, s.MaxForwards)
	}
	// A PSTN call arriving on srv12 counts its arriving leg there: over
	// srv12's limit it goes to the limit forward, and route says so.
	out, _, _ = run(t, "route", "--config", writePlan(t, lab), "--server", "srv12", "--source", "pstn", "--from", "+4915112345678",
		"--dial", "+442071234567")
	if !strings.Contains(out, "on limit") || !strings.Contains(out, "3998 (dialed as the limit of server srv12") {
		t.Errorf("route of a PSTN call arriving on srv12 lacks srv12's limit forward:\n%s", out)
	}
	// A hunt too: group 1's DID arriving on srv11, whose limit forwards.
	lab = strings.Replace(string(examples.Lab), "    channel_limit: 30\n    freeswitch:",
		"    channel_limit: 30\n    limit_forward: {org: acme, target: \"3998\"}\n    freeswitch:", 1)
	out, _, _ = run(t, "route", "--config", writePlan(t, lab), "--server", "srv11", "--source", "127.0.0.99", "--from", "+4915112345678",
		"--dial", "+4930200100")
	if !strings.Contains(out, "on limit") || !strings.Contains(out, "3998 (dialed as the limit of server srv11") {
		t.Errorf("route of a PSTN call to group 1 lacks srv11's limit forward:\n%s", out)
	}
}
