package integration

// The lab in containers (docker/compose.yaml): FreeSWITCH fs1 (plan server
// srv11) and Asterisk ast1 (srv12) configured by integration/lab with the
// port offset DockerLabOffset, Redis, and two callctl nodes, all on the
// host's network and bound to 127.0.0.1. This file is what the lab's plan,
// its sipp runner (integration/labcalls) and its test (TestDockerLab)
// share: where everything listens, the plan, the seeds' worked examples as
// SIP calls, and the nodes' API.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/callctl/callctl/api"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/integration/sipp"
)

// DockerLabOffset moves every port of the media servers and the SIP peers
// (integration/lab/lab.sh's CALLCTL_LAB_PORT_OFFSET), so the lab in
// containers runs beside the lab on the default ports.
const DockerLabOffset = 1000

// DockerNode is a callctl node of the lab in containers.
type DockerNode struct {
	Name string // the compose service and the node's id
	// ESL is where it listens for FreeSWITCH's socket application, HTTP
	// its API, /metrics and /readyz.
	ESL, HTTP string
}

// The lab's nodes (docker/compose.yaml) and Redis. FreeSWITCH hands calls
// to callctl1 first and to callctl2 when callctl1 does not answer.
var (
	DockerNodes = []DockerNode{
		{Name: "callctl1", ESL: "127.0.0.1:19084", HTTP: "127.0.0.1:10464"},
		{Name: "callctl2", ESL: "127.0.0.1:19085", HTTP: "127.0.0.1:10465"},
	}
	DockerRedis = "127.0.0.1:7379"
)

// DockerSecrets are the lab's secrets, from docker/.env (the variables of
// lab.sh and callctl).
type DockerSecrets struct {
	ESLPassword, ARIUser, ARIPassword string
	// Token is a cluster admin's API token, imported into the nodes' store.
	Token string
}

// DockerSecretsFrom reads the secrets with getenv.
func DockerSecretsFrom(getenv func(string) string) (DockerSecrets, error) {
	s := DockerSecrets{ESLPassword: getenv("CALLCTL_LAB_ESL_PASSWORD"), ARIUser: getenv("CALLCTL_LAB_ARI_USER"),
		ARIPassword: getenv("CALLCTL_LAB_ARI_PASSWORD"), Token: getenv("CALLCTL_TOKEN")}
	var missing []string
	for name, v := range map[string]string{"CALLCTL_LAB_ESL_PASSWORD": s.ESLPassword, "CALLCTL_LAB_ARI_USER": s.ARIUser,
		"CALLCTL_LAB_ARI_PASSWORD": s.ARIPassword, "CALLCTL_TOKEN": s.Token} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return s, fmt.Errorf("lab secrets: %s not set (docker/.env)", strings.Join(missing, ", "))
	}
	return s, nil
}

// ReadEnvFile reads a compose .env file: KEY=VALUE lines, # comments.
func ReadEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("%s:%d: not KEY=VALUE", path, n)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, sc.Err()
}

// DockerLabFleet is the mixed fleet of the lab in containers: srv11 is
// FreeSWITCH fs1, srv12 is Asterisk ast1, with the offset ports of lab.sh.
func DockerLabFleet(sec DockerSecrets) RealFleet {
	o := DockerLabOffset
	at := func(port int) string { return fmt.Sprintf("127.0.0.1:%d", port+o) }
	fs1 := &RealServer{Var: "fs1", Kind: provision.KindFreeSWITCH, Addr: at(8021), Password: sec.ESLPassword,
		Context: defaultFSCtx, Name: "fs1", SIP: at(5060)}
	ast1 := &RealServer{Var: "ast1", Kind: provision.KindAsterisk, URL: "http://" + at(8088) + "/ari", User: sec.ARIUser,
		Password: sec.ARIPassword, App: defaultARIApp, Context: defaultARICtx, Name: "ast1", SIP: at(5080)}
	return RealFleet{Name: RealMixed, Kinds: MixedFleet.Kinds, Servers: map[string]*RealServer{"srv11": fs1, "srv12": ast1},
		SIP: &SIPPorts{Base: 5070 + o}}
}

// DockerLabEndpoints: the phones of the worked examples are SIP phones
// (sipp), so what they display is what a phone would. Seed 002's group 1:
// 01 answers, 02 and 03 are busy, 04 rings without answer, 05 is not
// registered, 06 answers; seed 003's 2099 and 3999 and seed 000's 201 of
// org B answer.
var DockerLabEndpoints = Endpoints{
	"grp1": {"77721401": PhoneAnswers, "77721402": PhoneBusy, "77721403": PhoneBusy, "77721404": PhoneRings,
		"77721405": Unregistered, "77721406": PhoneAnswers},
	"acme": {"2099": PhoneAnswers, "3999": PhoneAnswers},
	"orgB": {"201": PhoneAnswers},
}

// DockerLabPlan is the plan the lab's nodes run: the lab plan
// (examples/lab.yaml) on the lab's servers, as the real-server suite runs
// it, as YAML.
func DockerLabPlan(sec DockerSecrets) ([]byte, error) {
	doc, err := RealDocument(DockerLabFleet(sec), DockerLabEndpoints)
	if err != nil {
		return nil, err
	}
	if plan, probs := provision.Compile(doc, nil); plan == nil {
		return nil, &provision.InvalidError{Problems: probs}
	}
	return doc.YAML()
}

// DockerLab is the running lab as its users see it: SIP on 127.0.0.1 and
// the nodes' API.
type DockerLab struct {
	Fleet  RealFleet
	Secret DockerSecrets
	// Dir keeps the SIP peers' scenarios and message logs.
	Dir    string
	client *http.Client
}

// NewDockerLab describes the running lab for its secrets.
func NewDockerLab(sec DockerSecrets, dir string) *DockerLab {
	return &DockerLab{Fleet: DockerLabFleet(sec), Secret: sec, Dir: dir, client: &http.Client{Timeout: 10 * time.Second}}
}

// Call places a SIP call from a phone of server (srv11 or srv12) with the
// lab's SIP callers.
func (l *DockerLab) Call(ctx context.Context, server string, c sipp.Call) (*sipp.Caller, error) {
	rs := l.Fleet.Servers[server]
	if rs == nil {
		return nil, fmt.Errorf("the lab has no server %s", server)
	}
	c.Server = rs.SIP
	if c.Port == 0 {
		c.Port = l.Fleet.SIP.Callers()[0]
	}
	return sipp.Start(ctx, filepath.Join(l.Dir, "callers"), c)
}

// Phones starts the SIP phones the plan's phone endpoints ring.
func (l *DockerLab) Phones(ctx context.Context) (*sipp.Phones, error) {
	return sipp.StartPhones(ctx, filepath.Join(l.Dir, "phones"), l.Fleet.SIP.Phones())
}

// PSTN starts the PSTN's far end, where external calls arrive (the lab's
// gateway and endpoint pstn); it answers every number.
func (l *DockerLab) PSTN(ctx context.Context) (*sipp.Phones, error) {
	return sipp.StartPhones(ctx, filepath.Join(l.Dir, "pstn"), l.Fleet.SIP.PSTNFar())
}

// get GETs path of node's API into v.
func (l *DockerLab) get(ctx context.Context, node DockerNode, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+node.HTTP+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+l.Secret.Token)
	resp, err := l.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", node.Name, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", node.Name, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", node.Name, path, resp.Status, strings.TrimSpace(string(body)))
	}
	if s, ok := v.(*string); ok {
		*s = string(body)
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s %s: %w", node.Name, path, err)
	}
	return nil
}

// Ready is node's /readyz: whether it answers 200, and its lines.
func (l *DockerLab) Ready(ctx context.Context, node DockerNode) (bool, string) {
	var body string
	err := l.get(ctx, node, "/readyz", &body)
	if err != nil {
		return false, err.Error()
	}
	return true, body
}

// Holds says whether node's /readyz reports server connected (an Asterisk
// whose application the node holds; a FreeSWITCH whose event socket it has).
func (l *DockerLab) Holds(ctx context.Context, node DockerNode, server string) bool {
	ok, body := l.Ready(ctx, node)
	return ok && strings.Contains(body, "\n"+server+"=connected\n")
}

// Counts are the cluster's channel counts, as node sees them.
func (l *DockerLab) Counts(ctx context.Context, node DockerNode) (map[string]int, error) {
	var cs api.Counts
	if err := l.get(ctx, node, "/api/v1/counts", &cs); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, c := range cs.Servers {
		out[c.Name] = c.InUse
	}
	return out, nil
}

// Calls are node's own live calls.
func (l *DockerLab) Calls(ctx context.Context, node DockerNode) ([]controller.CallView, error) {
	var cs []controller.CallView
	err := l.get(ctx, node, "/api/v1/calls", &cs)
	return cs, err
}

// Records are the cluster's call records involving number, newest first.
func (l *DockerLab) Records(ctx context.Context, node DockerNode, number string) ([]controller.Record, error) {
	var rs []controller.Record
	err := l.get(ctx, node, "/api/v1/records?number="+url.QueryEscape(number), &rs)
	return rs, err
}

// Record waits for the record of the call from caller on server dialing
// dialed, started after since.
func (l *DockerLab) Record(ctx context.Context, node DockerNode, server, caller, dialed string, since time.Time) (controller.Record, error) {
	var last error
	for {
		rs, err := l.Records(ctx, node, caller)
		if err != nil {
			last = err
		}
		for _, r := range rs {
			if r.Server == server && r.Caller == caller && r.Dialed == dialed && !r.Start.Before(since.Add(-5*time.Second)) {
				return r, nil
			}
		}
		select {
		case <-ctx.Done():
			return controller.Record{}, errors.Join(fmt.Errorf("no record of %s -> %s on %s: %w", caller, dialed, server, ctx.Err()), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Attempts is a record's dial attempts as "target:outcome ...".
func Attempts(r controller.Record) string {
	var s []string
	for _, a := range r.Attempts {
		s = append(s, a.Target+":"+a.Outcome.String())
	}
	return strings.Join(s, " ")
}

// Example is one worked example placed through the lab: what was expected,
// what the caller, the phones and callctl's record said.
type Example struct {
	Name, Want string
	Got        []string
	Failed     []string
}

func (e *Example) check(ok bool, format string, args ...any) {
	if !ok {
		e.Failed = append(e.Failed, fmt.Sprintf(format, args...))
	}
}

// RunDockerExamples places the seeds' worked examples through the lab with
// real SIP callers and phones and says, for each, what happened and what
// did not go as the seed says. ph are the phones (Phones), pstn the PSTN's
// far end (PSTN).
func (l *DockerLab) RunDockerExamples(ctx context.Context, ph, pstn *sipp.Phones) []*Example {
	node := DockerNodes[0]
	var out []*Example

	// Seed 002, example 1: 8008003 starts at 77721403 and hunts 03 -> 06.
	ex := &Example{Name: "seed 002: 1100 on srv11 dials service number 8008003",
		Want: "03 busy, 04 rings 3 s without answer, 05 not registered (skipped), 06 answers showing 1100"}
	out = append(out, ex)
	cl, err := l.Call(ctx, "srv11", sipp.Call{From: "1100", Dialed: "8008003", Hold: time.Second})
	var r *sipp.Result
	if err == nil {
		r, err = cl.Wait(ctx)
	}
	if err != nil {
		ex.check(false, "the call: %v", err)
	} else {
		ex.Got = append(ex.Got, fmt.Sprintf("the caller got %d", r.Final))
		ex.check(r.Final == 200, "the caller got %d, want 200", r.Final)
		for _, n := range []string{"277721403", "377721404", "577721406"} {
			rs := ph.RingsOf(n)
			ex.check(len(rs) == 1 && rs[0].From.User == "1100", "phone %s rang %d times (%+v), want once showing 1100", n, len(rs), rs)
			if len(rs) > 0 {
				ex.Got = append(ex.Got, fmt.Sprintf("phone %s rang showing %s", n, rs[0].From.User))
			}
		}
		rec, err := l.Record(ctx, node, "srv11", "1100", "8008003", r.Invited)
		ex.check(err == nil, "record: %v", err)
		if err == nil {
			ex.Got = append(ex.Got, fmt.Sprintf("record by %s: route %s, attempts %s", rec.Node, rec.Route, Attempts(rec)))
			ex.check(Attempts(rec) == "77721403:busy 77721404:no-answer 77721405:not-registered 77721406:answered",
				"record attempts %s", Attempts(rec))
		}
	}

	// Seed 002: 77721402T rings 02 only; it is busy, so is the caller.
	ex = &Example{Name: "seed 002: 1100 dials 77721402T", Want: "02 only rings (busy), the caller hears busy (486)"}
	out = append(out, ex)
	before := len(ph.RingsOf("277721403"))
	cl, err = l.Call(ctx, "srv11", sipp.Call{From: "1100", Dialed: "77721402T"})
	if err == nil {
		r, err = cl.Wait(ctx)
	}
	if err != nil {
		ex.check(false, "the call: %v", err)
	} else {
		ex.Got = append(ex.Got, fmt.Sprintf("the caller got %d", r.Final))
		ex.check(r.Final == 486, "the caller got %d, want 486", r.Final)
		rec, err := l.Record(ctx, node, "srv11", "1100", "77721402T", r.Invited)
		ex.check(err == nil, "record: %v", err)
		if err == nil {
			ex.Got = append(ex.Got, fmt.Sprintf("record by %s: route %s, attempts %s", rec.Node, rec.Route, Attempts(rec)))
			ex.check(rec.Route == "member" && Attempts(rec) == "77721402:busy", "record: route %s attempts %s", rec.Route, Attempts(rec))
		}
		ex.check(len(ph.RingsOf("277721403")) == before, "77721403 rang after 77721402T")
	}

	// Seed 000: agent 124 of org A dials 1201; 201 of org B sees 2124.
	ex = &Example{Name: "seed 000: agent 124 of org A dials 1201", Want: "201 of org B rings showing 2124, billed to org A"}
	out = append(out, ex)
	cl, err = l.Call(ctx, "srv11", sipp.Call{From: "124", Dialed: "1201", Hold: time.Second})
	if err == nil {
		r, err = cl.Wait(ctx)
	}
	if err != nil {
		ex.check(false, "the call: %v", err)
	} else {
		ex.Got = append(ex.Got, fmt.Sprintf("the caller got %d", r.Final))
		ex.check(r.Final == 200, "the caller got %d, want 200", r.Final)
		rs := ph.RingsOf("5201")
		ex.check(len(rs) == 1 && rs[0].From.User == "2124", "201's phone rang %+v, want once showing 2124", rs)
		if len(rs) > 0 {
			ex.Got = append(ex.Got, fmt.Sprintf("201's phone rang showing %s", rs[0].From.User))
		}
		rec, err := l.Record(ctx, node, "srv11", "124", "1201", r.Invited)
		ex.check(err == nil, "record: %v", err)
		if err == nil {
			ex.Got = append(ex.Got, fmt.Sprintf("record by %s: route %s, org %s, billed to %s", rec.Node, rec.Route, rec.Org, rec.Billing))
			ex.check(rec.Org == "orgB" && rec.Billing == "orgA" && rec.CallerID == "2124",
				"record: org %s billing %s caller id %s", rec.Org, rec.Billing, rec.CallerID)
		}
	}

	// Seed 004: an external call to the UK goes out with the +44 number.
	ex = &Example{Name: "seed 004: 3999 dials 00442079460000", Want: "the PSTN sees +442071234567 (the org's 0044 rule)"}
	out = append(out, ex)
	cl, err = l.Call(ctx, "srv11", sipp.Call{From: "3999", Dialed: "00442079460000", Hold: time.Second})
	if err == nil {
		r, err = cl.Wait(ctx)
	}
	if err != nil {
		ex.check(false, "the call: %v", err)
	} else {
		ex.Got = append(ex.Got, fmt.Sprintf("the caller got %d", r.Final))
		ex.check(r.Final == 200, "the caller got %d, want 200", r.Final)
		var rs []sipp.Ring
		for _, ring := range pstn.Rings() {
			if strings.HasSuffix(ring.Number, "442079460000") {
				rs = append(rs, ring)
			}
		}
		ex.check(len(rs) == 1 && rs[0].From.User == "+442071234567", "the PSTN got %+v, want one call from +442071234567", rs)
		if len(rs) > 0 {
			ex.Got = append(ex.Got, fmt.Sprintf("the PSTN got a call to %s from %s", rs[0].Number, rs[0].From.User))
		}
		rec, err := l.Record(ctx, node, "srv11", "3999", "00442079460000", r.Invited)
		ex.check(err == nil, "record: %v", err)
		if err == nil {
			ex.Got = append(ex.Got, fmt.Sprintf("record by %s: route %s, caller id %s, counted %v", rec.Node, rec.Route, rec.CallerID, legs(rec)))
			ex.check(rec.CallerID == "+442071234567", "record: caller id %s", rec.CallerID)
		}
	}

	// Seed 003: 3999 on server 11 dials 122099; 2099 on server 12 sees 113999.
	ex = &Example{Name: "seed 003: 3999 on srv11 (FreeSWITCH) dials 122099",
		Want: "2099 on srv12 (Asterisk) rings showing 113999; one counted leg on each server while up"}
	out = append(out, ex)
	cl, err = l.Call(ctx, "srv11", sipp.Call{From: "3999", FromName: "Aiko Sato", Dialed: "122099", Hold: 3 * time.Second})
	if err != nil {
		ex.check(false, "the call: %v", err)
		return out
	}
	var ring []sipp.Ring
	counts := map[string]int{}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ring = ph.RingsOf("52099")
		if len(ring) > 0 && cl.Answered() {
			counts, err = l.Counts(ctx, node)
			if err == nil && counts["srv11"] == 1 && counts["srv12"] == 1 {
				break
			}
		}
	}
	ex.check(len(ring) == 1 && ring[0].From.User == "113999", "phone 2099 rang %+v, want once showing 113999", ring)
	if len(ring) > 0 {
		ex.Got = append(ex.Got, fmt.Sprintf("phone 2099 rang showing %s %q", ring[0].From.User, ring[0].From.Name))
	}
	ex.Got = append(ex.Got, fmt.Sprintf("counted while up: srv11 %d, srv12 %d", counts["srv11"], counts["srv12"]))
	ex.check(counts["srv11"] == 1 && counts["srv12"] == 1, "counts while up: %v, want srv11 1 and srv12 1", counts)
	if r, err = cl.Wait(ctx); err != nil {
		ex.check(false, "the call: %v", err)
		return out
	}
	ex.check(r.Final == 200, "the caller got %d, want 200", r.Final)
	rec, err := l.Record(ctx, node, "srv11", "3999", "122099", r.Invited)
	ex.check(err == nil, "record: %v", err)
	if err == nil {
		ex.Got = append(ex.Got, fmt.Sprintf("record by %s: route %s, caller id %s, counted %v", rec.Node, rec.Route, rec.CallerID, legs(rec)))
		ex.check(rec.Route == "inter-server" && rec.CallerID == "113999", "record: route %s caller id %s", rec.Route, rec.CallerID)
	}
	return out
}

func legs(r controller.Record) []string {
	var s []string
	for _, l := range r.Legs {
		s = append(s, l.Server+":"+l.Kind.String())
	}
	return s
}
