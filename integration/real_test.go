package integration

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/integration/sim"
	"github.com/callctl/callctl/integration/sipp"
	"github.com/callctl/callctl/internal/labtest"
)

// The scenario suite in its real-server mode: the seeds' worked examples as
// calls placed on real FreeSWITCH / Asterisk servers (the lab convention of
// traces/README.md), with a callctl node serving them. TestRealServers runs
// it on the servers named in the environment (README: "Running the
// scenario suite against real servers"); TestRealModeOnSimulator runs the
// very same code against simulated servers, which speak the real protocols
// and follow the same lab convention, so every part of the mode is exercised
// here.

// TestRealServers runs the suite on the servers of the environment; each
// scenario skips, naming the variables, when its servers are not set.
func TestRealServers(t *testing.T) {
	cfg, err := RealConfigFrom(os.Getenv)
	if err != nil {
		t.Fatalf("real-server mode misconfigured: %v", err)
	}
	runRealSuite(t, cfg)
}

// TestRealModeOnSimulator is the proof of the real-server mode: each fleet
// gets a simulated lab, configured through the same variables an operator
// sets (read by RealConfigFrom, never from the process environment), and the
// suite runs on it unchanged.
func TestRealModeOnSimulator(t *testing.T) {
	if testing.Short() {
		t.Skip("the real-server suite on simulated servers takes a while")
	}
	before := runtime.NumGoroutine()
	t.Run("labs", func(t *testing.T) {
		for _, fleet := range []string{RealFreeSWITCH, RealAsterisk, RealMixed} {
			t.Run(fleet, func(t *testing.T) {
				t.Parallel()
				cfg := simulatedRealLab(t, fleet)
				runRealSuite(t, cfg)
			})
		}
	})
	// Nodes, relays, the suite's connections and the labs are all gone.
	deadline := time.Now().Add(15 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// simulatedRealLab starts simulated servers named and wired like the
// recorded lab (fs1, fs2, ast1, ast2; gateways and trunk endpoints named
// after the peer; Asterisk's dialplan application "controller"; each
// FreeSWITCH's socket application on its own port) and returns the
// configuration its variables give.
func simulatedRealLab(t *testing.T, fleet string) RealConfig {
	t.Helper()
	// The node listens anew on the same address for every scenario: take
	// ports outside the kernel's ephemeral range, which no connection of a
	// parallel test can be holding meanwhile.
	listen1, listen2 := stablePort(t), stablePort(t)
	fs := func(name, ip, ctl, peer string) sim.ServerConfig {
		return sim.ServerConfig{Name: name, Kind: provision.KindFreeSWITCH, IP: ip, Controllers: []string{ctl},
			Trunks: map[string]string{peer: peer}}
	}
	ast := func(name, ip, peer string) sim.ServerConfig {
		return sim.ServerConfig{Name: name, Kind: provision.KindAsterisk, IP: ip, App: defaultARIApp,
			Trunks: map[string]string{peer: peer}}
	}
	var cfg sim.Config
	switch fleet {
	case RealFreeSWITCH:
		cfg.Servers = []sim.ServerConfig{fs("fs1", "127.0.0.11", listen1, "fs2"), fs("fs2", "127.0.0.12", listen2, "fs1")}
	case RealAsterisk:
		cfg.Servers = []sim.ServerConfig{ast("ast1", "127.0.0.11", "ast2"), ast("ast2", "127.0.0.12", "ast1")}
	case RealMixed:
		cfg.Servers = []sim.ServerConfig{fs("fs1", "127.0.0.11", listen1, "ast1"), ast("ast1", "127.0.0.12", "fs1")}
	}
	cfg.Logger = logger()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lab, err := sim.StartLab(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lab.Close)
	env := map[string]string{EnvFleets: fleet, EnvESLListen: listen1}
	if fleet == RealFreeSWITCH {
		// fs2 connects to its own port, relayed to the node's.
		env[EnvESLListen] = listen1 + "," + listen2
	}
	for i, sc := range cfg.Servers {
		s := lab.Server(sc.Name)
		// The simulator's SIP traffic comes from its servers' fake addresses.
		sip := sc.IP + ":5060"
		if sc.Kind == provision.KindFreeSWITCH {
			v := []string{EnvFS1, EnvFS2}[len(serverNames(cfg.Servers[:i], provision.KindFreeSWITCH))]
			env[v], env[v+envSIPSuffix] = s.ESLAddr(), sip
		} else {
			v := []string{EnvAST1, EnvAST2}[len(serverNames(cfg.Servers[:i], provision.KindAsterisk))]
			env[v] = strings.Replace(s.ARIURL(), "http://", "http://ari:ari@", 1)
			env[v+envSIPSuffix] = sip
		}
	}
	rc, err := RealConfigFrom(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("configuration of the simulated lab: %v (%v)", err, env)
	}
	rc.simulated = true
	return rc
}

// stablePort returns a free loopback address whose port is below the
// ephemeral range (32768-60999 on Linux).
func stablePort(t *testing.T) string {
	t.Helper()
	for i := 0; i < 100; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+mrand.IntN(12000))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port between 20000 and 32000")
	return ""
}

func serverNames(ss []sim.ServerConfig, kind string) []string {
	var out []string
	for _, s := range ss {
		if s.Kind == kind {
			out = append(out, s.Name)
		}
	}
	return out
}

// realScenario is one scenario of the real-server suite.
type realScenario struct {
	name string
	two  bool // needs both servers (srv11 and srv12)
	// sip: the scenario's callers or phones are real SIP peers (sipp),
	// which the simulated lab does not have.
	sip bool
	eps Endpoints
	// edit changes the scenario's plan (a limit).
	edit func(*provision.Document)
	// processes: the scenario runs callctl as processes (a cluster with
	// Redis), not the suite's node.
	processes bool
	run       func(t *testing.T, e *RealEnv)
}

func runRealSuite(t *testing.T, cfg RealConfig) {
	for _, sc := range realScenarios {
		t.Run(sc.name, func(t *testing.T) {
			fleets := []string{RealFreeSWITCH, RealAsterisk}
			if sc.two {
				fleets = append(fleets, RealMixed)
			}
			// One fleet after the other: they share the servers, the
			// socket address and the Stasis application.
			for _, fleet := range fleets {
				t.Run(fleet, func(t *testing.T) {
					if sc.sip && cfg.simulated {
						t.Skip("real SIP callers and phones: the simulated lab has no SIP side (the simulated suite covers this scenario)")
					}
					if len(cfg.Fleets) > 0 && !slices.Contains(cfg.Fleets, fleet) {
						t.Skipf("real-server mode: %s=%s leaves out the %s fleet", EnvFleets, strings.Join(cfg.Fleets, ","), fleet)
					}
					f, why := cfg.Fleet(fleet, sc.two)
					if why != "" {
						labtest.Missing(t, "%s (integration/lab/lab.sh starts a lab and prints them)", why)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					if !cfg.simulated {
						// What the scenario before left must be gone: one
						// failure does not cascade into the next.
						ictx, icancel := context.WithTimeout(ctx, 15*time.Second)
						err := LabIdle(ictx, f, logger())
						icancel()
						if err != nil {
							t.Fatalf("before the scenario: %v", err)
						}
					}
					var opts []RealOption
					if sc.edit != nil {
						opts = append(opts, WithEdit(sc.edit))
					}
					if sc.processes {
						if cfg.simulated {
							t.Skip("callctl processes on the lab's servers: the simulated suite has TestControllerKilledMidCall and TestTwoNodeCluster")
						}
						opts = append(opts, WithoutNode())
					}
					e, err := StartReal(ctx, cfg, f, sc.eps, logger(), opts...)
					if err != nil {
						t.Fatalf("start the %s fleet: %v", fleet, err)
					}
					defer func() {
						if t.Failed() && e.sipDir != "" {
							t.Logf("the SIP peers' scenarios and message logs are kept in %s", e.KeepSIPLogs())
						}
						e.Close()
					}()
					sc.run(t, e)
					// Whatever happened, the servers end up quiet and nothing
					// stays counted.
					qctx, qcancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer qcancel()
					if err := e.Quiet(qctx); err != nil {
						t.Fatal(err)
					}
					for _, s := range f.Served() {
						if e.State != nil {
							e.waitCount(t, "server", s, 0)
						}
					}
				})
			}
		})
	}
}

// Seed 002's group 1 (service number 8008003 starts at 77721403): 01
// answers, 02 and 03 are busy, 04 does not answer, 05 is not registered,
// 06 answers.
var grp1Endpoints = Endpoints{"grp1": {
	"77721401": Answers, "77721402": Busy, "77721403": Busy,
	"77721404": Rings, "77721405": Unregistered, "77721406": Answers,
}}

var realScenarios = []realScenario{
	{name: "Seed002ServiceNumberHunt", eps: grp1Endpoints, run: realSeed002Hunt},
	{name: "Seed002DirectMemberAndT", sip: true, eps: grp1Endpoints, run: realSeed002DirectAndT},
	{name: "Seed002NobodyAnswers", sip: true, eps: Endpoints{"grp4": {"77721401": Rings}}, run: realNobodyAnswers},
	{name: "CallerHangsUpMidHunt", sip: true, eps: Endpoints{"grp3": {"77721401": Rings, "77721402": Busy, "77721403": Answers}},
		run: realCallerHangsUpMidHunt},
	{name: "Rejections", sip: true, run: realRejections},
	{name: "HostileDialed", sip: true, run: realHostileDialed},
	{name: "Seed003InterServer", two: true, sip: true, eps: Endpoints{"acme": {"2099": PhoneAnswers, "3999": PhoneAnswers}},
		run: realSeed003InterServer},
	{name: "Seed000OrgConnect", sip: true, eps: Endpoints{"orgB": {"201": PhoneAnswers}}, run: realSeed000OrgConnect},
	{name: "Seed004CallerID", sip: true, run: realSeed004CallerID},
	{name: "Seed001SharedNumber", sip: true, eps: Endpoints{"kundeB": {"300": PhoneAnswers}}, run: realSeed001SharedNumber},
	{name: "BlindTransfer2Plus1", two: true, sip: true, eps: Endpoints{"acme": {"3999": PhoneTransfers, "2099": PhoneAnswers}},
		run: realBlindTransfer},
	{name: "AsteriskAriOnlyBlindTransfer", two: true, sip: true,
		eps: Endpoints{"acme": {"2099": PhoneTransfersAriOnly, "3999": PhoneAnswers}}, run: realAriOnlyBlindTransfer},
	{name: "AsteriskAriOnlyBlindTransferRefused", two: true, sip: true,
		eps: Endpoints{"acme": {"2099": PhoneTransfersAriOnly, "3999": PhoneAnswers}}, run: realAriOnlyBlindTransferRefused},
	{name: "AsteriskAttendedTransfer", two: true, sip: true,
		eps: Endpoints{"acme": {"2099": PhoneTransfers, "3999": PhoneAnswers}}, run: func(t *testing.T, e *RealEnv) { realAttended(t, e, PhoneTransfers) }},
	{name: "AsteriskAriOnlyAttendedTransfer", two: true, sip: true,
		eps: Endpoints{"acme": {"2099": PhoneTransfersAriOnly, "3999": PhoneAnswers}}, run: func(t *testing.T, e *RealEnv) { realAttended(t, e, PhoneTransfersAriOnly) }},
	{name: "AttendedTransfer", two: true, sip: true, eps: Endpoints{"acme": {"3999": PhoneTransfers, "2099": PhoneAnswers}},
		run: realAttendedOn11},
	{name: "AsteriskAriOnlyCallerBlindTransfer", two: true, sip: true,
		eps: Endpoints{"acme": {"3999": PhoneAnswers}}, run: realAriOnlyCallerBlindTransfer},
	{name: "TransferToAGroupOnTheOtherServer", two: true, sip: true, edit: withAcmeDesk,
		eps: Endpoints{"acme": {"3999": PhoneTransfers, "77731201": PhoneBusy, "77731202": PhoneAnswers}}, run: realTransferToGroup},
	{name: "FSAttXfer", two: true, sip: true, eps: Endpoints{"acme": {"3999": PhoneAnswers, "2099": PhoneAnswers}}, run: realFSAttXfer},
	{name: "FSAttXferCancelled", two: true, sip: true, eps: Endpoints{"acme": {"3999": PhoneAnswers, "2099": PhoneAnswers}},
		run: realFSAttXferCancelled},
	{name: "FSAttXferRefused", two: true, sip: true, eps: Endpoints{"acme": {"3999": PhoneAnswers, "2099": PhoneBusy}},
		run: realFSAttXferRefused},
	{name: "IVRTransfer", two: true, sip: true, eps: Endpoints{"acme": {"3999": PhoneAnswers, "2099": PhoneAnswers}},
		run: realIVRTransfer},
	{name: "HandOffKeepsCounting", sip: true, eps: Endpoints{"acme": {"3999": PhoneTransfers}}, edit: WithParking,
		run: realHandOffKeepsCounting},
	{name: "MediaServerKilledMidCall", two: true, sip: true, eps: Endpoints{"acme": {"3998": PhoneAnswers, "2099": PhoneAnswers}},
		run: realMediaServerKilled},
	{name: "ControllerKilledMidCall", sip: true, processes: true, eps: Endpoints{"acme": {"3999": PhoneAnswers}},
		run: realControllerKilled},
	{name: "TwoNodeCluster", two: true, sip: true, processes: true, eps: Endpoints{"acme": {"2099": PhoneAnswers}},
		run: realTwoNodes},
	{name: "LimitRefusesTheNextCall", sip: true, eps: Endpoints{"acme": {"3999": PhoneAnswers}},
		edit: func(d *provision.Document) { setLimit(d, "srv11", 1) }, run: realLimit},
	{name: "WithheldCallers", two: true, sip: true, eps: Endpoints{"acme": {"3999": PhoneAnswers, "2099": PhoneAnswers}},
		run: realWithheldCallers},
}

// setLimit sets a server's channel limit in a plan.
func setLimit(d *provision.Document, server string, limit int) {
	for i := range d.Servers {
		if d.Servers[i].Name == server {
			d.Servers[i].ChannelLimit = limit
		}
	}
}

// pstnCaller is where the suite's calls from the PSTN come from.
func (e *RealEnv) pstnCaller() int { return e.Fleet.SIP.PSTNCallers()[0] }

// Seed 000: agent 124 of org A dials 1201; agent 201 of org B rings showing
// 2124 (B's prefix for A, then 124), and the call is billed to org A.
func realSeed000OrgConnect(t *testing.T, e *RealEnv) {
	cl := e.sipStart(t, "srv11", sipp.Call{From: "124", Dialed: "1201"})
	e.sipAnswered(t, "srv11", "124", "1201", cl)
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "201"), "2124")
	r := e.hangupSIP(t, "srv11", "124", cl)
	rec := e.sipRecord(t, "srv11", "124", "1201", r)
	if rec.Route != "org-connect" || rec.CallerID != "2124" || rec.Billing != "orgA" || rec.Org != "orgB" {
		t.Errorf("record: route %s caller id %s billing %s org %s; want org-connect 2124 orgA orgB", rec.Route, rec.CallerID, rec.Billing, rec.Org)
	}
}

// Seed 004: an external call to the United Kingdom presents the +44 number
// (the 0044 rule); another presents the org's default number. The PSTN's
// far end shows what was presented.
func realSeed004CallerID(t *testing.T, e *RealEnv) {
	for _, tc := range []struct{ dialed, e164, presented string }{
		{"00442079460000", "+442079460000", "+442071234567"},
		{"030123456", "+4930123456", "+4930100100"},
	} {
		cl := e.sipStart(t, "srv11", sipp.Call{From: "3999", Dialed: tc.dialed})
		e.sipAnswered(t, "srv11", "3999", tc.dialed, cl)
		e.waitPhone(t, e.PSTN, tc.e164, tc.presented)
		r := e.hangupSIP(t, "srv11", "3999", cl)
		rec := e.sipRecord(t, "srv11", "3999", tc.dialed, r)
		if rec.Route != "external" || rec.CallerID != tc.presented || rec.External != tc.e164 || rec.Billing != "acme" {
			t.Errorf("%s: record route %s caller id %s external %s billing %s", tc.dialed, rec.Route, rec.CallerID, rec.External, rec.Billing)
		}
	}
}

// Seed 001: account A's number +4930555001, used in account B's PBX. A
// call from the PSTN to it rings B's 300 and is billed to A; 300's own
// external call presents it and is billed to A too.
func realSeed001SharedNumber(t *testing.T, e *RealEnv) {
	cl := e.sipStart(t, "srv11", sipp.Call{Port: e.pstnCaller(), From: "+4989123456", Dialed: "+4930555001"})
	e.sipAnswered(t, "srv11", "+4989123456", "+4930555001", cl)
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "300"), "+4989123456")
	r := e.hangupSIP(t, "srv11", "+4989123456", cl)
	rec := e.sipRecord(t, "srv11", "+4989123456", "+4930555001", r)
	if rec.Origin != "pstn" || rec.Org != "kundeB" || rec.Billing != "kundeA" || rec.Answered != "300" {
		t.Errorf("inbound record: origin %s org %s billing %s answered %s; want pstn kundeB kundeA 300", rec.Origin, rec.Org, rec.Billing, rec.Answered)
	}
	cl = e.sipStart(t, "srv11", sipp.Call{From: "300", Dialed: "040123456"})
	e.sipAnswered(t, "srv11", "300", "040123456", cl)
	e.waitPhone(t, e.PSTN, "+4940123456", "+4930555001")
	r = e.hangupSIP(t, "srv11", "300", cl)
	if rec := e.sipRecord(t, "srv11", "300", "040123456", r); rec.CallerID != "+4930555001" || rec.Billing != "kundeA" {
		t.Errorf("outbound record: caller id %s billing %s; want +4930555001 billed to kundeA", rec.CallerID, rec.Billing)
	}
}

// Seed 003 §4 with real SIP: a call from the PSTN to 3999's phone, which
// transfers it blind (REFER) to 122099. 2099's phone on server 12 shows the
// original caller; server 11 counts 2 (the PSTN leg and the trunk leg out),
// server 12 counts 1; everything is released when the caller hangs up.
func realBlindTransfer(t *testing.T, e *RealEnv) {
	if e.Fleet.SIP == nil || e.sipDir == "" {
		labtest.Missing(t, "real SIP phones: set %s", EnvSIPP)
	}
	tr, err := sipp.StartTransferer(realCtx(t), filepath.Join(e.sipDir, "transferer"), e.Fleet.SIP.Transferer(),
		"sip:122099@"+e.Fleet.Servers["srv11"].SIP)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	const caller, did = "+4989123456", "+4930100100"
	cl := e.sipStart(t, "srv11", sipp.Call{Port: e.pstnCaller(), From: caller, Dialed: did})
	e.sipAnswered(t, "srv11", caller, did, cl)
	e.waitPhone(t, tr, PhoneNumber(PhoneTransfers, "3999"), caller)
	// The transfer: 2099 rings showing the original caller.
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "2099"), caller)
	e.waitCount(t, "server", "srv11", 2)
	e.waitCount(t, "server", "srv12", 1)
	if cl.Ended() {
		t.Fatal("the caller's call ended with the transfer")
	}
	// The transferring phone leaves the call once its transfer succeeded
	// (the server's BYE, or its own 1.5 s after the final NOTIFY).
	if !waitFor(10*time.Second, tr.HungUp) {
		t.Errorf("the transferring phone is still in its call after the transfer")
	}
	r := e.hangupSIP(t, "srv11", caller, cl)
	if r.Final != 200 {
		t.Errorf("the caller's call: final %d", r.Final)
	}
	rec := e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == "srv11" && rec.Transfer != "" && !rec.Start.Before(r.Invited.Add(-time.Second))
	})
	if rec.Transfer != "blind" || rec.Route != "inter-server" || rec.CallerID != caller {
		t.Errorf("record of the transferred call: transfer %q route %s caller id %s; want blind inter-server %s", rec.Transfer, rec.Route, rec.CallerID, caller)
	}
	e.waitCount(t, "server", "srv11", 0)
	e.waitCount(t, "server", "srv12", 0)
}

// SPEC §4, "a transfer to a group or a queue on the other server works like
// a call to an extension", with real servers: a PSTN call answered by
// 3999's phone, which REFERs it to acme's service number on server 12
// (128008031). It hunts the group as 3999's call would, each member over
// the trunk: 77731201 is busy, 77731202's phone shows the PSTN caller;
// server 11 counts 2 and server 12 1 while it is up, 0 after; the transfer's
// record holds the hunt and links to the PSTN call's.
func realTransferToGroup(t *testing.T, e *RealEnv) {
	if e.Fleet.SIP == nil || e.sipDir == "" {
		labtest.Missing(t, "real SIP phones: set %s", EnvSIPP)
	}
	tr, err := sipp.StartTransferer(realCtx(t), filepath.Join(e.sipDir, "transferer"), e.Fleet.SIP.Transferer(),
		"sip:128008031@"+e.Fleet.Servers["srv11"].SIP)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	const caller, did = "+4989123456", "+4930100100"
	cl := e.sipStart(t, "srv11", sipp.Call{Port: e.pstnCaller(), From: caller, Dialed: did})
	e.sipAnswered(t, "srv11", caller, did, cl)
	e.waitPhone(t, tr, PhoneNumber(PhoneTransfers, "3999"), caller)
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "77731202"), caller)
	connected := func() bool {
		for _, v := range e.Node.Engine().Calls() {
			if v.Server == "srv11" && v.Dialed == "128008031" && v.Answered == "77731202" {
				return true
			}
		}
		return false
	}
	if !waitFor(10*time.Second, connected) {
		t.Fatalf("the transfer's call on srv11 was not connected to 77731202: %+v", e.Node.Engine().Calls())
	}
	if rs := e.SIPPhones.RingsOf(PhoneNumber(PhoneBusy, "77731201")); len(rs) != 1 {
		t.Errorf("77731201 (busy) rang %d times, want once", len(rs))
	}
	e.waitCount(t, "server", "srv11", 2)
	e.waitCount(t, "server", "srv12", 1)
	if !waitFor(10*time.Second, tr.HungUp) {
		t.Errorf("the transferring phone is still in its call after the transfer")
	}
	if cl.Ended() {
		t.Fatal("the caller's call ended with the transfer")
	}
	r := e.hangupSIP(t, "srv11", caller, cl)
	if r.Final != 200 {
		t.Errorf("the caller's call: final %d", r.Final)
	}
	first := e.sipRecord(t, "srv11", caller, did, r)
	rec := e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == "srv11" && rec.Transfer != "" && !rec.Start.Before(r.Invited.Add(-time.Second))
	})
	if got := Attempts(rec); rec.Transfer != "blind" || rec.Route != "hunt" || rec.CallerID != caller || got != "77731201:busy 77731202:answered" {
		t.Errorf("record of the transferred call: transfer %q route %s caller id %s attempts %s; want blind hunt %s 77731201:busy 77731202:answered",
			rec.Transfer, rec.Route, rec.CallerID, got, caller)
	}
	if first.ID == "" || rec.TransferFrom != first.ID || rec.TransferBy != "3999" {
		t.Errorf("record of the transferred call: from record %q by %q; want %q (the PSTN call's) by 3999", rec.TransferFrom, rec.TransferBy, first.ID)
	}
	e.waitCount(t, "server", "srv11", 0)
	e.waitCount(t, "server", "srv12", 0)
}

// ariOnlyTransferer starts 2099's phone on server 12 (Asterisk), whose
// endpoint leaves transfers to callctl (PJSIP_TRANSFER_HANDLING ari-only),
// transferring to referTo, and places a PSTN call to +442071234567, which
// reaches it. It returns the phone, the caller and its number.
func ariOnlyTransferer(t *testing.T, e *RealEnv, referTo string) (*sipp.Phones, *sipp.Caller) {
	t.Helper()
	if e.Fleet.Kinds["srv12"] != provision.KindAsterisk {
		t.Skip("transfers left to the controller (PJSIP_TRANSFER_HANDLING ari-only) are Asterisk's; server 12 is not one here")
	}
	if e.Fleet.SIP == nil || e.sipDir == "" {
		labtest.Missing(t, "real SIP phones: set %s", EnvSIPP)
	}
	tr, err := sipp.StartTransferer(realCtx(t), filepath.Join(e.sipDir, "transferer"), e.Fleet.SIP.Transferer(),
		"sip:"+referTo+"@"+e.Fleet.Servers["srv12"].SIP)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	cl := e.sipStart(t, "srv12", sipp.Call{Port: e.pstnCaller(), From: ariOnlyCaller, Dialed: ariOnlyDID})
	e.sipAnswered(t, "srv12", ariOnlyCaller, ariOnlyDID, cl)
	e.waitPhone(t, tr, PhoneNumber(PhoneTransfersAriOnly, "2099"), ariOnlyCaller)
	return tr, cl
}

const ariOnlyCaller, ariOnlyDID = "+4989123456", "+442071234567"

// waitNotifies waits until the transferring phone got a final NOTIFY
// about its REFER and returns the sipfrags it got.
func waitNotifies(t *testing.T, tr *sipp.Phones) []int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if n := tr.Notifies(); len(n) > 0 && n[len(n)-1] >= 200 {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the transferring phone got no final NOTIFY: %v", tr.Notifies())
	return nil
}

// SPEC §4 with the transfer left to callctl: a PSTN call answered by
// 2099's phone on server 12 (Asterisk, PJSIP_TRANSFER_HANDLING ari-only),
// which REFERs it to 113999. Asterisk only reports the REFER; callctl
// carries the transfer out: 3999's phone on server 11 shows the PSTN caller,
// the transferring phone hears 100 then 200; server 12 counts 2 (the PSTN
// leg, the trunk leg out), server 11 counts 1; the records link the
// transfer to the call it came from; nothing stays counted.
func realAriOnlyBlindTransfer(t *testing.T, e *RealEnv) {
	tr, cl := ariOnlyTransferer(t, e, "113999")
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "3999"), ariOnlyCaller)
	e.waitCount(t, "server", "srv12", 2)
	e.waitCount(t, "server", "srv11", 1)
	if got := waitNotifies(t, tr); !slices.Equal(got, []int{100, 200}) {
		t.Errorf("the transferring phone's NOTIFYs: %v, want [100 200]", got)
	}
	if !waitFor(10*time.Second, tr.HungUp) {
		t.Errorf("the transferring phone is still in its call after the transfer")
	}
	if cl.Ended() {
		t.Fatal("the caller's call ended with the transferring phone")
	}
	e.waitCount(t, "server", "srv12", 2)
	e.waitCount(t, "server", "srv11", 1)
	r := e.hangupSIP(t, "srv12", ariOnlyCaller, cl)
	if r.Final != 200 {
		t.Errorf("the caller's call: final %d", r.Final)
	}
	first := e.sipRecord(t, "srv12", ariOnlyCaller, ariOnlyDID, r)
	rec := e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == "srv12" && rec.Transfer != "" && !rec.Start.Before(r.Invited.Add(-time.Second))
	})
	if rec.Transfer != "blind" || rec.Route != "inter-server" || rec.CallerID != ariOnlyCaller || rec.Answer == nil {
		t.Errorf("record of the transferred call: transfer %q route %s caller id %s answered %v; want blind inter-server %s answered",
			rec.Transfer, rec.Route, rec.CallerID, rec.Answer, ariOnlyCaller)
	}
	if first.ID == "" || rec.TransferFrom != first.ID || rec.TransferBy != "2099" {
		t.Errorf("record of the transferred call: from record %q by %q; want %q (the PSTN call's) by 2099", rec.TransferFrom, rec.TransferBy, first.ID)
	}
	far := e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == "srv11" && rec.Dialed == "3999" && !rec.Start.Before(r.Invited.Add(-time.Second))
	})
	if far.Origin != "trunk" || far.CallerID != ariOnlyCaller || far.Answer == nil {
		t.Errorf("server 11's record: origin %s caller id %s answered %v; want trunk %s answered", far.Origin, far.CallerID, far.Answer, ariOnlyCaller)
	}
	e.waitCount(t, "server", "srv12", 0)
	e.waitCount(t, "server", "srv11", 0)
}

// SPEC §4 with the transfer left to callctl, sent by the caller's side:
// 2099 (a SIP phone on server 12, Asterisk, PJSIP_TRANSFER_HANDLING
// ari-only) calls 030123456, the PSTN answers, and 2099 REFERs that party to
// 113999. callctl carries it out as dialed by 2099: 3999's phone on server
// 11 shows the external party's number; 2099 hears 100 then 200 and hangs
// up; the PSTN party and 3999 talk on; server 12 counts 2 (the PSTN leg
// out, the trunk leg out), server 11 1; the transfer's record links to
// 2099's call and names 2099; nothing stays counted.
func realAriOnlyCallerBlindTransfer(t *testing.T, e *RealEnv) {
	if e.Fleet.Kinds["srv12"] != provision.KindAsterisk {
		t.Skip("this scenario transfers on Asterisk; server 12 is not one here")
	}
	const dialed, far, presented = "030123456", "+4930123456", "+4930100100"
	srv12 := e.Fleet.Servers["srv12"].SIP
	cl := e.sipStart(t, "srv12", sipp.Call{Port: e.Fleet.SIP.AriOnlyCaller(), From: "2099", Dialed: dialed,
		ReferTo: "sip:113999@" + srv12, ReferAfter: time.Second})
	e.sipAnswered(t, "srv12", "2099", dialed, cl)
	e.waitPhone(t, e.PSTN, far, presented)
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "3999"), far)
	e.waitCount(t, "server", "srv12", 2)
	e.waitCount(t, "server", "srv11", 1)
	var got []int
	if !waitFor(15*time.Second, func() bool { got = cl.Notifies(); return len(got) > 0 && got[len(got)-1] >= 200 }) ||
		!slices.Equal(got, []int{100, 200}) {
		t.Errorf("the transferring caller's NOTIFYs: %v, want [100 200]", got)
	}
	r, err := cl.Wait(realCtx(t))
	if err != nil {
		t.Fatalf("the transferring caller after the transfer: %v", err)
	}
	e.sync(t)
	if e.PSTN.HungUp() || e.SIPPhones.HungUp() {
		t.Fatalf("the PSTN party (hung up %v) or 3999 (hung up %v) left with the transferring caller", e.PSTN.HungUp(), e.SIPPhones.HungUp())
	}
	if rs := e.SIPPhones.RingsOf(PhoneNumber(PhoneAnswers, "3999")); len(rs) != 1 || rs[0].From.User != far {
		t.Errorf("3999's phone: %+v, want one call showing %s", rs, far)
	}
	e.waitCount(t, "server", "srv12", 2)
	e.waitCount(t, "server", "srv11", 1)
	// The PSTN party hangs up: 3999 goes too.
	var pstn Channel
	for _, ch := range e.Channels("srv12") {
		if ch.Ended.IsZero() && strings.HasPrefix(ch.Name, "PJSIP/pstn-") {
			pstn = ch
		}
	}
	if pstn.ID == "" {
		t.Fatalf("no channel of the PSTN party on srv12: %+v", e.Channels("srv12"))
	}
	if err := e.Kill(realCtx(t), "srv12", pstn.ID); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, e.SIPPhones.HungUp) {
		t.Errorf("3999's phone was not hung up after the PSTN party")
	}
	first := e.sipRecord(t, "srv12", "2099", dialed, r)
	if first.Answer == nil || first.HangupCause != "TRANSFERRED" {
		t.Errorf("2099's call's record: answered %v cause %s; want answered, TRANSFERRED", first.Answer, first.HangupCause)
	}
	rec := e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == "srv12" && rec.Transfer != "" && !rec.Start.Before(r.Invited.Add(-time.Second))
	})
	if rec.Transfer != "blind" || rec.Route != "inter-server" || rec.CallerID != far || rec.Answer == nil || rec.Caller != "2099" {
		t.Errorf("record of the transferred call: transfer %q route %s caller %s caller id %s answered %v; want blind inter-server 2099 %s answered",
			rec.Transfer, rec.Route, rec.Caller, rec.CallerID, rec.Answer, far)
	}
	if first.ID == "" || rec.TransferFrom != first.ID || rec.TransferBy != "2099" {
		t.Errorf("record of the transferred call: from record %q by %q; want %q (2099's call's) by 2099", rec.TransferFrom, rec.TransferBy, first.ID)
	}
	farRec := e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == "srv11" && rec.Dialed == "3999" && !rec.Start.Before(r.Invited.Add(-time.Second))
	})
	if farRec.Origin != "trunk" || farRec.CallerID != far || farRec.Answer == nil {
		t.Errorf("server 11's record: origin %s caller id %s answered %v; want trunk %s answered", farRec.Origin, farRec.CallerID, farRec.Answer, far)
	}
	e.waitCount(t, "server", "srv12", 0)
	e.waitCount(t, "server", "srv11", 0)
}

// The same transfer to a number nobody has (119999): callctl refuses the
// transfer's call, the transferring phone hears 603 and is back with the
// caller (until it hangs up), 3999's phone never rings, and server 11
// counts nothing.
func realAriOnlyBlindTransferRefused(t *testing.T, e *RealEnv) {
	tr, cl := ariOnlyTransferer(t, e, "119999")
	if got := waitNotifies(t, tr); !slices.Equal(got, []int{100, 603}) {
		t.Errorf("the transferring phone's NOTIFYs: %v, want [100 603]", got)
	}
	if cl.Ended() {
		t.Fatal("the caller's call ended with the refused transfer")
	}
	e.waitCount(t, "server", "srv12", 1)
	// The phone hangs up 1.5 s after the final NOTIFY: the caller's call
	// ends with it, as any call whose far end hangs up.
	r, err := cl.Wait(realCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !tr.HungUp() {
		t.Errorf("the caller's call ended, but not by the transferring phone's BYE")
	}
	if rs := e.SIPPhones.RingsOf(PhoneNumber(PhoneAnswers, "3999")); len(rs) != 0 {
		t.Errorf("3999's phone rang: %+v", rs)
	}
	first := e.sipRecord(t, "srv12", ariOnlyCaller, ariOnlyDID, r)
	rec := e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == "srv12" && rec.Transfer != "" && !rec.Start.Before(r.Invited.Add(-time.Second))
	})
	if rec.Transfer != "blind" || rec.Answer != nil || rec.TransferFrom != first.ID {
		t.Errorf("record of the refused transfer: transfer %q answered %v from %q (want blind, unanswered, from %q)",
			rec.Transfer, rec.Answer, rec.TransferFrom, first.ID)
	}
	if first.Answer == nil {
		t.Errorf("the PSTN call's record: not answered")
	}
	e.waitCount(t, "server", "srv12", 0)
	e.waitCount(t, "server", "srv11", 0)
}

// dialogTags reads the Call-ID and tags of a caller's answered dialog: its
// own From tag and the server's To tag.
func dialogTags(t *testing.T, cl *sipp.Caller) (callID, local, remote string) {
	t.Helper()
	tag := func(h string) string {
		_, v, _ := strings.Cut(h, ";tag=")
		v, _, _ = strings.Cut(v, ";")
		return v
	}
	for _, m := range cl.Messages() {
		if !m.Sent && m.Status() == 200 && m.CSeqMethod() == "INVITE" {
			return m.Header("Call-ID"), tag(m.Header("From")), tag(m.Header("To"))
		}
	}
	t.Fatal("the caller's dialog was not answered")
	return "", "", ""
}

// SPEC §4, attended: 2099 (a SIP phone on server 12, Asterisk) talks to
// 3999 on server 11 (its second line, 3999's phone shows 122099), then
// takes a PSTN call and transfers it to 3999 with a REFER that replaces the
// second line's dialog. With core handling Asterisk links the two calls;
// with PJSIP_TRANSFER_HANDLING ari-only (phone t) callctl does. Either way
// the transferring phone hears 100 then 200, the PSTN caller and 3999 talk
// on after both of 2099's lines are gone, 3999's phone still shows the
// transferring extension (122099), server 12 counts 2 (the PSTN leg, the
// second line's trunk leg) and server 11 1 until the caller hangs up, the
// second line's record says TRANSFERRED once 3999's leg ended and links to
// the PSTN call's record as an attended transfer by 2099, and nothing stays
// counted.
func realAttended(t *testing.T, e *RealEnv, phone Target) {
	if e.Fleet.Kinds["srv12"] != provision.KindAsterisk {
		t.Skip("this scenario transfers on Asterisk; server 12 is not one here")
	}
	if e.Fleet.SIP == nil || e.sipDir == "" {
		labtest.Missing(t, "real SIP phones: set %s", EnvSIPP)
	}
	second := e.sipStart(t, "srv12", sipp.Call{From: "2099", Dialed: "113999"})
	e.sipAnswered(t, "srv12", "2099", "113999", second)
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "3999"), "122099")
	callID, local, remote := dialogTags(t, second)
	srv12 := e.Fleet.Servers["srv12"].SIP
	referTo := fmt.Sprintf("sip:113999@%s?Replaces=%s%%3Bto-tag%%3D%s%%3Bfrom-tag%%3D%s", srv12, url.QueryEscape(callID),
		url.QueryEscape(remote), url.QueryEscape(local))
	tr, err := sipp.StartTransferer(realCtx(t), filepath.Join(e.sipDir, "transferer"), e.Fleet.SIP.Transferer(), referTo)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	cl := e.sipStart(t, "srv12", sipp.Call{Port: e.pstnCaller(), From: ariOnlyCaller, Dialed: ariOnlyDID})
	e.sipAnswered(t, "srv12", ariOnlyCaller, ariOnlyDID, cl)
	e.waitPhone(t, tr, PhoneNumber(phone, "2099"), ariOnlyCaller)
	e.waitCount(t, "server", "srv12", 2)
	e.waitCount(t, "server", "srv11", 1)
	if got := waitNotifies(t, tr); !slices.Equal(got, []int{100, 200}) {
		t.Errorf("the transferring phone's NOTIFYs: %v, want [100 200]", got)
	}
	if phone == PhoneTransfersAriOnly {
		// ari-only: Asterisk leaves the second line to the phone; it
		// hangs up as the phone would after the transfer.
		e.hangupSIP(t, "srv12", "2099", second)
	} else if _, err := second.Wait(realCtx(t)); err != nil {
		// core: Asterisk ends the second line itself (BYE).
		t.Fatalf("the second line after the transfer: %v", err)
	}
	if !waitFor(10*time.Second, tr.HungUp) {
		t.Errorf("the transferring phone is still in its first line after the transfer")
	}
	e.sync(t)
	if cl.Ended() || e.SIPPhones.HungUp() {
		t.Fatalf("the PSTN caller (ended %v) or 3999 (hung up %v) left with the transferring phone", cl.Ended(), e.SIPPhones.HungUp())
	}
	if rs := e.SIPPhones.RingsOf(PhoneNumber(PhoneAnswers, "3999")); len(rs) != 1 || rs[0].From.User != "122099" {
		t.Errorf("3999's phone: %+v, want one call showing 122099", rs)
	}
	e.waitCount(t, "server", "srv12", 2)
	e.waitCount(t, "server", "srv11", 1)
	r := e.hangupSIP(t, "srv12", ariOnlyCaller, cl)
	if !waitFor(10*time.Second, e.SIPPhones.HungUp) {
		t.Errorf("3999's phone was not hung up after the PSTN caller")
	}
	first := e.sipRecord(t, "srv12", ariOnlyCaller, ariOnlyDID, r)
	if first.Answer == nil {
		t.Errorf("the PSTN call's record: not answered")
	}
	rec := e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == "srv12" && rec.Caller == "2099" && rec.Dialed == "113999" && !rec.Start.Before(r.Invited.Add(-30*time.Second))
	})
	if rec.HangupCause != "TRANSFERRED" || rec.Answer == nil || rec.CallerID != "122099" {
		t.Errorf("the second line's record: cause %s answered %v caller id %s; want TRANSFERRED, answered, 122099", rec.HangupCause, rec.Answer, rec.CallerID)
	}
	// It carries the PSTN caller now: it names the transfer, links to the
	// PSTN call's record and names 2099 (SPEC §4).
	if rec.Transfer != "attended" || first.ID == "" || rec.TransferFrom != first.ID || rec.TransferBy != "2099" {
		t.Errorf("the second line's record: transfer %q from %q by %q; want attended from %q by 2099", rec.Transfer, rec.TransferFrom, rec.TransferBy, first.ID)
	}
	far := e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == "srv11" && rec.Dialed == "3999" && !rec.Start.Before(r.Invited.Add(-30*time.Second))
	})
	if far.Origin != "trunk" || far.CallerID != "122099" || far.Answer == nil {
		t.Errorf("server 11's record: origin %s caller id %s answered %v", far.Origin, far.CallerID, far.Answer)
	}
	e.waitCount(t, "server", "srv12", 0)
	e.waitCount(t, "server", "srv11", 0)
}

// SPEC §4 with real servers: a PSTN call answered by 3999 is moved on by
// the server itself to 122099, as an IVR does: FreeSWITCH's uuid_transfer;
// on Asterisk a redirect of the caller's channel out of callctl's bridge
// into the dialplan (/continue by another ARI application, as AMI Redirect
// does), which hands it back to callctl. No user transferred it: it routes
// in the org that received the DID, not as a new DID. 2099's phone shows
// the PSTN caller; server 11 counts 2 and server 12 1 while it is up (§5),
// nothing after.
func realIVRTransfer(t *testing.T, e *RealEnv) {
	const caller, did = "+4989123456", "+4930100100"
	context := "public"
	if e.Fleet.Servers["srv11"].Kind == provision.KindAsterisk {
		context = "from-pstn"
	}
	cl := e.sipStart(t, "srv11", sipp.Call{Port: e.pstnCaller(), From: caller, Dialed: did})
	e.sipAnswered(t, "srv11", caller, did, cl)
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "3999"), caller)
	e.waitCount(t, "server", "srv11", 1)
	ch, ok := e.SIPCallerChannel("srv11", caller)
	if !ok {
		t.Fatalf("no channel of the PSTN caller %s on srv11", caller)
	}
	if err := e.Transfer(realCtx(t), "srv11", ch.ID, "122099", context); err != nil {
		t.Fatal(err)
	}
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "2099"), caller)
	e.sipAnswered(t, "srv11", caller, "122099", cl)
	e.waitCount(t, "server", "srv11", 2)
	e.waitCount(t, "server", "srv12", 1)
	if cl.Ended() {
		t.Fatal("the caller's call ended with the transfer")
	}
	r := e.hangupSIP(t, "srv11", caller, cl)
	if r.Final != 200 {
		t.Errorf("the caller's call: final %d", r.Final)
	}
	first := e.sipRecord(t, "srv11", caller, did, r)
	rec := e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == "srv11" && rec.Transfer != "" && !rec.Start.Before(r.Invited.Add(-time.Second))
	})
	if rec.Transfer != "ivr" || rec.Route != "inter-server" || rec.Org != "acme" || rec.CallerID != caller || rec.Answered != "2099" {
		t.Errorf("record of the transferred call: transfer %q route %s org %s caller id %s answered %s; want ivr inter-server acme %s 2099",
			rec.Transfer, rec.Route, rec.Org, rec.CallerID, rec.Answered, caller)
	}
	if rec.TransferFrom != first.ID || rec.TransferBy != "" || first.Answered != "3999" {
		t.Errorf("transfer link: from %q by %q (first record %q answered by %s); want from the first record, by nobody",
			rec.TransferFrom, rec.TransferBy, first.ID, first.Answered)
	}
	e.waitCount(t, "server", "srv11", 0)
	e.waitCount(t, "server", "srv12", 0)
}

// SPEC §4 with real servers: a PSTN call answered by 3999's phone, which
// parks it (a REFER to *98, a feature code handed to the server's own
// features context: FreeSWITCH's transfer, Asterisk's continue after
// subscribing to the channel). Parked, the call is still callctl's: its
// PSTN leg stays counted and the live calls show it in the dialplan; once
// the caller's channel ends, nothing is counted.
func realHandOffKeepsCounting(t *testing.T, e *RealEnv) {
	if e.Fleet.SIP == nil || e.sipDir == "" {
		labtest.Missing(t, "real SIP phones: set %s", EnvSIPP)
	}
	tr, err := sipp.StartTransferer(realCtx(t), filepath.Join(e.sipDir, "transferer"), e.Fleet.SIP.Transferer(),
		"sip:"+ParkFeature+"@"+e.Fleet.Servers["srv11"].SIP)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	const caller, did = "+4989123456", "+4930100100"
	cl := e.sipStart(t, "srv11", sipp.Call{Port: e.pstnCaller(), From: caller, Dialed: did})
	e.sipAnswered(t, "srv11", caller, did, cl)
	e.waitPhone(t, tr, PhoneNumber(PhoneTransfers, "3999"), caller)
	var parked controller.CallView
	deadline := time.Now().Add(15 * time.Second)
	for parked.ID == "" && time.Now().Before(deadline) {
		for _, v := range e.Node.Engine().Calls() {
			if v.Server == "srv11" && v.Dialed == ParkFeature && v.HandedOff {
				parked = v
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if parked.ID == "" {
		t.Fatalf("no parked call among the live calls: %+v", e.Node.Engine().Calls())
	}
	// The transferring phone leaves; the caller stays parked and counted.
	deadline = time.Now().Add(10 * time.Second)
	for !tr.HungUp() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	e.sync(t)
	if cl.Ended() {
		t.Fatal("the caller's call ended when it was parked")
	}
	e.waitCount(t, "server", "srv11", 1)
	e.waitCount(t, "org", "acme", 1)
	r := e.hangupSIP(t, "srv11", caller, cl)
	if r.Final != 200 {
		t.Errorf("the caller's call: final %d", r.Final)
	}
	e.waitCount(t, "server", "srv11", 0)
	rec := e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == "srv11" && rec.Dialed == ParkFeature && !rec.Start.Before(r.Invited.Add(-time.Second))
	})
	if rec.Route != "feature" || !rec.HandedOff || rec.Transfer != "blind" {
		t.Errorf("record of the parked call: route %s handed off %v transfer %q; want feature, handed off, blind", rec.Route, rec.HandedOff, rec.Transfer)
	}
	// Whose record the PSTN leg is on: FreeSWITCH transfers the caller's
	// own channel, so the parked call counts it; on Asterisk a Local
	// channel is parked and the PSTN leg stays the first call's until the
	// caller's channel ends.
	legs := rec.Legs
	if e.Fleet.Servers["srv11"].Kind == provision.KindAsterisk {
		if len(legs) != 0 {
			t.Errorf("record of the parked Local channel: legs %+v, want none (the PSTN leg is the first call's)", legs)
		}
		legs = e.sipRecord(t, "srv11", caller, did, r).Legs
	}
	if len(legs) != 1 || legs[0].Kind.String() != "pstn-in" {
		t.Errorf("the PSTN leg: legs %+v, want one pstn-in", legs)
	}
}

// Server 12 crashes (SIGKILL) while a call crosses to it and another call
// is up on server 11: callctl releases what counted on server 12, the call
// on server 11 is untouched, no goroutine is left behind, and once server 12
// is back callctl serves it again.
func realMediaServerKilled(t *testing.T, e *RealEnv) {
	if !e.CanRestart() {
		labtest.Missing(t, "the servers are not the lab's: set %s to stop and start them", EnvLabCtl)
	}
	local := e.sipStart(t, "srv11", sipp.Call{From: "3999", Dialed: "3998"})
	e.sipAnswered(t, "srv11", "3999", "3998", local)
	across := e.sipStart(t, "srv11", sipp.Call{From: "3998", Dialed: "122099"})
	e.sipAnswered(t, "srv11", "3998", "122099", across)
	e.waitCount(t, "server", "srv12", 1)
	goroutines := runtime.NumGoroutine()

	if err := e.KillServer(realCtx(t), "srv12"); err != nil {
		t.Fatal(err)
	}
	if e.Fleet.Kinds["srv12"] == provision.KindFreeSWITCH {
		// FreeSWITCH's socket connections went with its channels: what
		// counted there is released.
		e.waitCount(t, "server", "srv12", 0)
	} else if n := e.Count(context.Background(), "server", "srv12"); n != 1 {
		// Asterisk's channels cannot be asked while it is down: the leg
		// stays counted until they can (SPEC §5).
		t.Errorf("server srv12 counts %d while it is down, want its leg still counted", n)
	}
	if local.Ended() {
		t.Fatal("the call on server 11 ended when server 12 died")
	}
	if err := e.StartServer(realCtx(t), "srv12"); err != nil {
		t.Fatal(err)
	}
	e.waitConnected(t, "srv12")
	// Back: its live channels say the leg is gone.
	e.waitCount(t, "server", "srv12", 0)
	if local.Ended() {
		t.Fatal("the call on server 11 ended when server 12 came back")
	}
	e.hangupSIP(t, "srv11", "3999", local)
	// The call across lost its far end with the server; its caller is hung
	// up here if server 11 still has it.
	if !across.Ended() {
		if _, ok := e.SIPCallerChannel("srv11", "3998"); ok {
			e.hangupSIP(t, "srv11", "3998", across)
		}
	}
	e.waitCount(t, "server", "srv11", 0)
	e.waitCount(t, "server", "srv12", 0)

	// Served again: the same call across works.
	again := e.sipStart(t, "srv11", sipp.Call{From: "3999", Dialed: "122099"})
	e.sipAnswered(t, "srv11", "3999", "122099", again)
	e.waitCount(t, "server", "srv12", 1)
	e.hangupSIP(t, "srv11", "3999", again)
	e.waitCount(t, "server", "srv12", 0)
	deadline := time.Now().Add(15 * time.Second)
	for runtime.NumGoroutine() > goroutines+5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines+5 {
		t.Errorf("%d goroutines before the crash, %d after the server came back and its calls ended", goroutines, n)
	}
}

// waitConnected waits until the node serves server again.
func (e *RealEnv) waitConnected(t *testing.T, server string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if e.Node.Status()[server] == "connected" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("callctl did not reconnect to %s: %v", server, e.Node.Status())
}

// A server at its limit refuses the next counted leg with 503 (to a real
// SIP caller, out and in), and the call already up is untouched.
func realLimit(t *testing.T, e *RealEnv) {
	first := e.sipStart(t, "srv11", sipp.Call{From: "3999", Dialed: "030123456"})
	e.sipAnswered(t, "srv11", "3999", "030123456", first)
	e.waitCount(t, "server", "srv11", 1)
	out := e.sipCall(t, "srv11", sipp.Call{From: "3998", Dialed: "030999999"})
	if out.Final != 503 {
		t.Errorf("a second external call at the limit: the caller got %d (cause %s), want 503", out.Final, out.Reason)
	}
	in := e.sipCall(t, "srv11", sipp.Call{Port: e.pstnCaller(), From: "+4989123456", Dialed: "+4930100100"})
	if in.Final != 503 {
		t.Errorf("a call from the PSTN at the limit: the caller got %d (cause %s), want 503", in.Final, in.Reason)
	}
	for _, rec := range []controller.Record{e.sipRecord(t, "srv11", "3998", "030999999", out),
		e.sipRecord(t, "srv11", "+4989123456", "+4930100100", in)} {
		if rec.HangupCause != "NORMAL_CIRCUIT_CONGESTION" || len(rec.Legs) != 0 {
			t.Errorf("refused call %s: cause %s, counted legs %v", rec.Dialed, rec.HangupCause, rec.Legs)
		}
		// The record says which limit refused it (SPEC §5), not that nobody answered.
		if !strings.HasSuffix(rec.Reason, ": server srv11 is at its channel limit of 1") {
			t.Errorf("refused call %s: reason %q, want srv11's limit", rec.Dialed, rec.Reason)
		}
	}
	if e.PSTN != nil && len(e.PSTN.RingsOf("+4930999999")) != 0 {
		t.Errorf("the refused external call reached the PSTN")
	}
	if first.Ended() {
		t.Fatalf("the first call ended when the next were refused")
	}
	e.waitCount(t, "server", "srv11", 1)
	r := e.hangupSIP(t, "srv11", "3999", first)
	if !r.HungUpByFar || r.Final != 200 {
		t.Errorf("first call: final %d, ended by the server %v", r.Final, r.HungUpByFar)
	}
	e.waitCount(t, "server", "srv11", 0)
}

// ringWithin says whether a ring lasted the plan's ring timeout, ±100 ms.
func ringWithin(d time.Duration) bool {
	return d >= realRingTimeout-100*time.Millisecond && d <= realRingTimeout+100*time.Millisecond
}

// Seed 002, example 1 on real servers: 8008003 from 1100 rings 03 (busy),
// 04 (no answer: exactly the 3 s ring timeout), skips 05 (not registered)
// and connects 06.
func realSeed002Hunt(t *testing.T, e *RealEnv) {
	c := e.call(t, "srv11", "1100", "8008003")
	e.answered(t, c)
	e.waitRing(t, "srv11", e.target("srv11", Answers, "77721406"), "1100")
	e.hangup(t, c)
	rec := e.record(t, c)
	if got := attempts(rec); got != "77721403:busy 77721404:no-answer 77721405:not-registered 77721406:answered" {
		t.Errorf("record attempts: %s", got)
	}
	if rec.Route != "hunt" || rec.Answered != "77721406" || rec.Billing != "grp1" || rec.Org != "grp1" {
		t.Errorf("record: route %s answered %s billing %s org %s", rec.Route, rec.Answered, rec.Billing, rec.Org)
	}
	if len(rec.Attempts) == 4 && !ringWithin(rec.Attempts[1].Ring) {
		t.Errorf("record: 77721404 rang %s, want the 3 s ring timeout ±100 ms", rec.Attempts[1].Ring)
	}
	// What the server saw ring, independently of callctl's record.
	e.sync(t)
	for n, want := range map[string]int{"77721401": 0, "77721402": 0, "77721403": 1, "77721404": 1, "77721405": 0, "77721406": 1} {
		if got := len(e.TargetChannels("srv11", e.target("srv11", grp1Endpoints["grp1"][n], n))); got != want {
			t.Errorf("%s rang %d times on the server, want %d", n, got, want)
		}
	}
	if rs := e.TargetChannels("srv11", e.target("srv11", Rings, "77721404")); len(rs) == 1 {
		e.waitEnded(t, "srv11", rs[0].ID)
		rs = e.TargetChannels("srv11", e.target("srv11", Rings, "77721404"))
		if d := rs[0].Ended.Sub(rs[0].Created); !ringWithin(d) {
			t.Errorf("77721404 rang %s on the server, want the 3 s ring timeout ±100 ms", d)
		}
	}
}

// Seed 002: a member dialed directly still hunts on; with T only it rings,
// and a real SIP caller hears busy (486).
func realSeed002DirectAndT(t *testing.T, e *RealEnv) {
	c := e.call(t, "srv11", "1100", "77721402")
	e.answered(t, c)
	e.hangup(t, c)
	rec := e.record(t, c)
	if got := attempts(rec); got != "77721402:busy 77721403:busy 77721404:no-answer 77721405:not-registered 77721406:answered" {
		t.Errorf("dialing 77721402: %s", got)
	}
	busy03 := e.target("srv11", Busy, "77721403")
	before := len(e.TargetChannels("srv11", busy03))
	r := e.sipCall(t, "srv11", sipp.Call{From: "1100", Dialed: "77721402T"})
	if r.Final != 486 {
		t.Errorf("77721402T: the caller got %d (cause %s), want 486 busy", r.Final, r.Reason)
	}
	rec = e.sipRecord(t, "srv11", "1100", "77721402T", r)
	if got := attempts(rec); got != "77721402:busy" || rec.Route != "member" {
		t.Errorf("77721402T record: %s %s", rec.Route, got)
	}
	e.sync(t)
	if after := len(e.TargetChannels("srv11", busy03)); after != before {
		t.Errorf("77721403 rang after 77721402T")
	}
}

// Seed 002, example 4: nobody answers; a real SIP caller hears busy (486)
// after the member rang its 3 s, and the record lists the attempt.
func realNobodyAnswers(t *testing.T, e *RealEnv) {
	r := e.sipCall(t, "srv11", sipp.Call{From: "1400", Dialed: "8008001"})
	if r.Final != 486 {
		t.Errorf("the caller got %d (cause %s), want 486 busy", r.Final, r.Reason)
	}
	if d := r.Ended.Sub(r.Invited); d < realRingTimeout || d > realRingTimeout+time.Second {
		t.Errorf("the caller heard busy %s after dialing, want just after the 3 s ring timeout", d)
	}
	rec := e.sipRecord(t, "srv11", "1400", "8008001", r)
	if attempts(rec) != "77721401:no-answer" || rec.HangupCause != "USER_BUSY" {
		t.Errorf("record: %s, cause %s", attempts(rec), rec.HangupCause)
	}
	if len(rec.Attempts) == 1 && !ringWithin(rec.Attempts[0].Ring) {
		t.Errorf("ring time %s, want 3 s ±100 ms", rec.Attempts[0].Ring)
	}
	if rs := e.TargetChannels("srv11", e.target("srv11", Rings, "77721401")); len(rs) != 1 {
		t.Errorf("77721401 rang %d times on the server, want 1", len(rs))
	}
}

// ringBack is the provisional response a media server sends a caller while
// callctl rings a member: FreeSWITCH bridges with early media (183),
// callctl rings an Asterisk caller (180).
func (e *RealEnv) ringBack(server string) int {
	if e.Fleet.Kinds[server] == provision.KindFreeSWITCH {
		return 183
	}
	return 180
}

// A real SIP caller gives up (CANCEL) while the first member rings: the
// caller gets 487, the ringing leg is cancelled at once, nothing rings
// after, and nothing stays counted.
func realCallerHangsUpMidHunt(t *testing.T, e *RealEnv) {
	// 01 rings 3 s: the CANCEL comes 1.5 s after the caller heard ringing.
	r := e.sipCall(t, "srv11", sipp.Call{From: "1300", Dialed: "8008001", CancelAfter: 1500 * time.Millisecond,
		RingBack: e.ringBack("srv11")})
	if r.Final != 487 || r.CancelSent.IsZero() {
		t.Fatalf("the caller got %d after its CANCEL (sent %v), want 487", r.Final, !r.CancelSent.IsZero())
	}
	rec := e.sipRecord(t, "srv11", "1300", "8008001", r)
	if got := attempts(rec); got != "77721401:cancelled" {
		t.Errorf("attempts %s", got)
	}
	rs := e.TargetChannels("srv11", e.target("srv11", Rings, "77721401"))
	if len(rs) != 1 {
		t.Fatalf("77721401 rang %d times, want once", len(rs))
	}
	end := e.waitEnded(t, "srv11", rs[0].ID)
	if d := end.Ended.Sub(r.CancelSent); d > time.Second {
		t.Errorf("77721401's leg ended %s after the caller's CANCEL, want at once", d)
	}
	// The record is written once the call is over: nothing can ring after it.
	e.sync(t)
	for n, tg := range map[string]Target{"77721402": Busy, "77721403": Answers} {
		if rs := e.TargetChannels("srv11", e.target("srv11", tg, n)); len(rs) != 0 {
			t.Errorf("%s rang after the caller left: %+v", n, rs)
		}
	}
	e.waitCount(t, "server", "srv11", 0)
}

// Rejections reach a real SIP caller as the SIP code of their cause, and
// nothing is dialed.
func realRejections(t *testing.T, e *RealEnv) {
	for _, tc := range []struct {
		from, dialed string
		sip          int
		name         string
	}{
		{"3999", "555", 404, "UNALLOCATED_NUMBER"},    // nothing answers to it
		{"3999", "09001234567", 403, "CALL_REJECTED"}, // a deny pattern of 3999's rule
		{"9999", "3998", 403, "CALL_REJECTED"},        // not a user
	} {
		r := e.sipCall(t, "srv11", sipp.Call{From: tc.from, Dialed: tc.dialed})
		if r.Final != tc.sip {
			t.Errorf("%s dials %s: the caller got %d (%s), want %d", tc.from, tc.dialed, r.Final, r.Reason, tc.sip)
		}
		if rec := e.sipRecord(t, "srv11", tc.from, tc.dialed, r); rec.HangupCause != tc.name || len(rec.Attempts) != 0 {
			t.Errorf("%s dials %s: record cause %s attempts %q", tc.from, tc.dialed, rec.HangupCause, attempts(rec))
		}
	}
}

// Hostile dialed strings in real INVITE request URIs: refused before any
// lookup (484 INVALID_NUMBER_FORMAT, with a record saying so), or by the
// media server's own dialplan before callctl sees them (Asterisk's pattern
// does not start with '{' or '.': a 404 without a cause), and nothing rings.
func realHostileDialed(t *testing.T, e *RealEnv) {
	before := len(e.Channels("srv11"))
	for _, dialed := range []string{
		"1000%2Cuser%2F3998",                         // 1000,user/3998: a second leg in a dial string, three Stasis arguments
		"%7Borigination_caller_id_number%3D1%7D3998", // {var=...}3998
		"3998%20%26park",                             // "3998 &park"
		"3998%0A",                                    // a line break
		"3998%24%7Bsystem%7D",                        // ${system}
		"..%2F3998",
	} {
		r := e.sipCall(t, "srv11", sipp.Call{From: "3999", Dialed: dialed})
		switch {
		case r.Final == 484:
			rec := e.recordWhere(t, func(rec *controller.Record) bool {
				return rec.Server == "srv11" && rec.Caller == "3999" && rec.HangupCause == "INVALID_NUMBER_FORMAT" &&
					!rec.Start.Before(r.Invited.Add(-time.Second))
			})
			if len(rec.Attempts) != 0 || len(rec.Legs) != 0 {
				t.Errorf("dialed %q: record with attempts %q, counted legs %v", dialed, attempts(rec), rec.Legs)
			}
		case r.Final == 404 && r.Reason == "" && e.Fleet.Kinds["srv11"] == provision.KindAsterisk:
			// The server's dialplan refused it: callctl never saw it.
		default:
			t.Errorf("dialed %q: the caller got %d (cause %q), want 484", dialed, r.Final, r.Reason)
		}
	}
	e.sync(t)
	for _, c := range e.Channels("srv11")[before:] {
		if !strings.HasPrefix(c.Name, "sofia/internal/3999@") && !strings.HasPrefix(c.Name, "PJSIP/sipp-") {
			t.Errorf("a hostile dialed string made %s ring", c.Name)
		}
	}
}

// Seed 003: 3999 on server 11 dials 122099; 2099's phone on server 12 rings
// showing 113999; the call counts 1 on each server while up. And back:
// 3999's phone shows 122099.
func realSeed003InterServer(t *testing.T, e *RealEnv) {
	cl := e.sipStart(t, "srv11", sipp.Call{From: "3999", FromName: "Aiko Sato", Dialed: "122099"})
	e.sipAnswered(t, "srv11", "3999", "122099", cl)
	ring := e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "2099"), "113999")
	// The caller's name crosses the trunk with the number (SPEC §4).
	if ring.From.Name != "Aiko Sato" {
		t.Errorf("2099's phone shows the name %q (From %+v), want \"Aiko Sato\"", ring.From.Name, ring.From)
	}
	e.waitCount(t, "server", "srv11", 1)
	e.waitCount(t, "server", "srv12", 1)
	r := e.hangupSIP(t, "srv11", "3999", cl)
	checkInterServerRecords(t, e.sipRecord(t, "srv11", "3999", "122099", r), e.recordWhere(t, farEnd))
	e.waitCount(t, "server", "srv11", 0)
	e.waitCount(t, "server", "srv12", 0)

	cl = e.sipStart(t, "srv12", sipp.Call{From: "2099", Dialed: "113999"})
	e.sipAnswered(t, "srv12", "2099", "113999", cl)
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "3999"), "122099")
	r = e.hangupSIP(t, "srv12", "2099", cl)
	if rec := e.sipRecord(t, "srv12", "2099", "113999", r); rec.Route != "inter-server" || rec.CallerID != "122099" {
		t.Errorf("srv12 record of the call back: route %s caller id %s", rec.Route, rec.CallerID)
	}
}

// Helpers of the real-server scenarios.

// sipCall places a call from a real SIP caller and waits for its end.
func (e *RealEnv) sipCall(t *testing.T, server string, c sipp.Call) *sipp.Result {
	t.Helper()
	cl := e.sipStart(t, server, c)
	r, err := cl.Wait(realCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sipStart places a call from a real SIP caller (sipp): what the caller
// hears is then the media server's SIP, as a phone would.
func (e *RealEnv) sipStart(t *testing.T, server string, c sipp.Call) *sipp.Caller {
	t.Helper()
	if e.Fleet.SIP == nil || e.SIPPhones == nil {
		if err := sipp.Available(); err != nil {
			labtest.Missing(t, "real SIP callers: %v", err)
		}
		labtest.Missing(t, "real SIP callers: set %s to the first port of the suite's SIP peers (integration/lab/lab.sh env)", EnvSIPP)
	}
	cl, err := e.SIPCall(realCtx(t), server, c)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// sipAnswered waits until a SIP caller is answered and callctl has the
// call connected.
func (e *RealEnv) sipAnswered(t *testing.T, server, from, dialed string, cl *sipp.Caller) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cl.Answered() {
			for _, v := range e.Node.Engine().Calls() {
				if v.Server == server && v.Caller == from && v.Dialed == dialed && v.Answered != "" {
					return
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s -> %s on %s: not answered and connected (messages %d)", from, dialed, server, len(cl.Messages()))
}

// hangupSIP ends a SIP caller's answered call from the server (the caller
// gets a BYE) and returns what the caller experienced.
func (e *RealEnv) hangupSIP(t *testing.T, server, from string, cl *sipp.Caller) *sipp.Result {
	t.Helper()
	ch, ok := e.SIPCallerChannel(server, from)
	if !ok {
		t.Fatalf("no channel of the SIP caller %s on %s", from, server)
	}
	if err := e.Kill(realCtx(t), server, ch.ID); err != nil {
		t.Fatal(err)
	}
	r, err := cl.Wait(realCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitPhone waits until a SIP phone rang on number showing caller (the
// From user), once.
func (e *RealEnv) waitPhone(t *testing.T, ph *sipp.Phones, number, caller string) sipp.Ring {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var rs []sipp.Ring
	for time.Now().Before(deadline) {
		rs = ph.RingsOf(number)
		if len(rs) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(rs) != 1 || rs[0].From.User != caller {
		t.Fatalf("phone %s rang %+v, want once showing %s", number, rs, caller)
	}
	return rs[0]
}

// sipRecord is the call record of a SIP caller's call.
func (e *RealEnv) sipRecord(t *testing.T, server, from, dialed string, r *sipp.Result) controller.Record {
	t.Helper()
	return e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == server && rec.Caller == from && rec.Dialed == dialed && !rec.Start.Before(r.Invited.Add(-5*time.Second))
	})
}

func realCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *RealEnv) target(server string, tg Target, number string) string {
	return e.Fleet.Endpoint(server, tg, number)
}

func (e *RealEnv) call(t *testing.T, server, from, dialed string) *RealCall {
	t.Helper()
	c, err := e.Place(realCtx(t), server, from, dialed)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// answered waits until the caller is answered and callctl has the call
// connected (its bridge is up): a caller that hangs up at the very moment
// of the answer is another scenario.
func (e *RealEnv) answered(t *testing.T, c *RealCall) {
	t.Helper()
	if err := c.WaitAnswered(realCtx(t)); err != nil {
		t.Fatalf("caller was never connected: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, v := range e.Node.Engine().Calls() {
			if v.Server == c.Server && v.Caller == c.From && v.Dialed == c.Dialed && v.Answered != "" {
				return
			}
		}
		if c.Ended() {
			t.Fatalf("call %s -> %s ended right after its answer: %+v", c.From, c.Dialed, c.Outcome())
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("callctl never had %s -> %s connected", c.From, c.Dialed)
}

func (e *RealEnv) ended(t *testing.T, c *RealCall) Outcome {
	t.Helper()
	o, err := c.WaitEnded(realCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func (e *RealEnv) hangup(t *testing.T, c *RealCall) Outcome {
	t.Helper()
	if err := c.Hangup(realCtx(t)); err != nil {
		t.Fatalf("hang up %s -> %s: %v", c.From, c.Dialed, err)
	}
	return e.ended(t, c)
}

// record is the call record of a test call: its server, caller and dialed
// string, started after it was placed (the server's clock may lag a little).
func (e *RealEnv) record(t *testing.T, c *RealCall) controller.Record {
	t.Helper()
	return e.recordWhere(t, func(r *controller.Record) bool {
		return r.Server == c.Server && r.Caller == c.From && r.Dialed == c.Dialed && !r.Start.Before(c.At.Add(-5*time.Second))
	})
}

func (e *RealEnv) recordWhere(t *testing.T, match func(*controller.Record) bool) controller.Record {
	t.Helper()
	r, err := e.Record(realCtx(t), match)
	if err != nil {
		t.Fatalf("%v; records so far: %+v", err, e.Records.All())
	}
	return r
}

// sync catches up with the servers' events before a check that something
// did not happen.
func (e *RealEnv) sync(t *testing.T) {
	t.Helper()
	if err := e.Sync(realCtx(t)); err != nil {
		t.Fatalf("sync with the servers' events: %v", err)
	}
	for name, p := range e.phones {
		if a, ok := p.(*ariSide); ok {
			a.mu.Lock()
			misses := a.syncMisses
			a.mu.Unlock()
			if misses > 0 {
				e.Log.Warn("the sync bridge was not reported: absence checks waited 5 s instead", "server", name)
			}
		}
	}
}

func (e *RealEnv) waitCount(t *testing.T, scope, name string, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	got := -1
	for time.Now().Before(deadline) {
		if got = e.Count(context.Background(), scope, name); got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s %s counts %d, want %d", scope, name, got, want)
}

// waitTarget waits until a channel rings endpoint on server.
func (e *RealEnv) waitTarget(t *testing.T, server, endpoint string) Channel {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if rs := e.TargetChannels(server, endpoint); len(rs) > 0 {
			return rs[0]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("nothing rang %s on %s", endpoint, server)
	return Channel{}
}

// waitRing waits until endpoint of server has rung once, showing caller.
// Each server's events come on their own connection, so what one server did
// may be seen after what the caller's server reported.
func (e *RealEnv) waitRing(t *testing.T, server, endpoint, caller string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var rs []Channel
	for time.Now().Before(deadline) {
		rs = e.TargetChannels(server, endpoint)
		if len(rs) > 1 {
			break
		}
		if len(rs) == 1 && rs[0].Caller == caller {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%s on %s rang %+v, want once showing %s", endpoint, server, rs, caller)
}

// waitEnded waits until the channel id of server has ended.
func (e *RealEnv) waitEnded(t *testing.T, server, id string) Channel {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, c := range e.Channels(server) {
			if c.ID == id && !c.Ended.IsZero() {
				return c
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("channel %s on %s did not end", id, server)
	return Channel{}
}

// Pieces of the mode that need no server.

func TestRealConfigFromEnvironment(t *testing.T) {
	env := map[string]string{
		EnvFS1:            "127.0.0.1:8021",
		EnvFS2:            "127.0.0.1:8022",
		EnvAST1:           "http://ari:secret@127.0.0.1:8088/ari/",
		EnvAST2:           "http://u2:p2@127.0.0.1:8089/ari",
		EnvAST2 + "_NAME": "pbx2",
		EnvESLListen:      "127.0.0.1:18084, 127.0.0.1:18085",
	}
	cfg, err := RealConfigFrom(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.FS1.Addr != "127.0.0.1:8021" || cfg.FS1.Password != "ClueCon" || cfg.FS1.Name != "fs1" ||
		cfg.FS1.SIP != "127.0.0.1:5060" || cfg.FS2.SIP != "127.0.0.1:5062" || cfg.FS1.Context != "default" {
		t.Errorf("FS1 %+v FS2 %+v", cfg.FS1, cfg.FS2)
	}
	if a := cfg.AST1; a.URL != "http://127.0.0.1:8088/ari" || a.User != "ari" || a.Password != "secret" ||
		a.App != "controller" || a.Name != "ast1" || a.SIP != "127.0.0.1:5080" || a.Context != "from-sipp" {
		t.Errorf("AST1 %+v", a)
	}
	if a := cfg.AST2; a.User != "u2" || a.Name != "pbx2" || a.SIP != "127.0.0.1:5082" {
		t.Errorf("AST2 %+v", a)
	}
	if fmt.Sprint(cfg.ESLListen) != "[127.0.0.1:18084 127.0.0.1:18085]" || cfg.CallerApp != "callctl-it-caller" {
		t.Errorf("listen %v caller app %s", cfg.ESLListen, cfg.CallerApp)
	}

	none, err := RealConfigFrom(func(string) string { return "" })
	if err != nil || none.Any() || fmt.Sprint(none.ESLListen) != "[127.0.0.1:18084]" {
		t.Errorf("nothing set: %+v %v", none, err)
	}

	for _, bad := range []map[string]string{
		{EnvFS1: "8021"},
		{EnvAST1: "http://127.0.0.1:8088/ari"},
		{EnvAST1: "ftp://a:b@127.0.0.1/ari"},
		{EnvFS1: "127.0.0.1:8021", EnvFS1 + "_NAME": "fs 1"},
		{EnvFleets: "freeswitch,sip"},
		{EnvESLListen: "18084"},
		{EnvARICaller: "bad app"},
	} {
		if _, err := RealConfigFrom(func(k string) string { return bad[k] }); err == nil {
			t.Errorf("%v accepted", bad)
		} else {
			for k := range bad {
				if !strings.Contains(err.Error(), strings.TrimSuffix(k, "_NAME")) {
					t.Errorf("%v: error %q does not name %s", bad, err, k)
				}
			}
		}
	}
}

// Each scenario skips with a message naming what to set.
func TestRealFleetNeedsItsServers(t *testing.T) {
	none := RealConfig{}
	for _, tc := range []struct {
		fleet string
		two   bool
		want  []string
	}{
		{RealFreeSWITCH, false, []string{EnvFS1}},
		{RealFreeSWITCH, true, []string{EnvFS1, EnvFS2}},
		{RealAsterisk, false, []string{EnvAST1}},
		{RealAsterisk, true, []string{EnvAST1, EnvAST2}},
		{RealMixed, false, []string{EnvFS1, EnvAST1}},
	} {
		_, why := none.Fleet(tc.fleet, tc.two)
		for _, v := range tc.want {
			if !strings.Contains(why, v) {
				t.Errorf("%s (two %v): %q does not name %s", tc.fleet, tc.two, why, v)
			}
		}
	}
	fs1 := &RealServer{Var: EnvFS1, Kind: provision.KindFreeSWITCH, Addr: "127.0.0.1:8021", Name: "fs1", SIP: "127.0.0.1:5060"}
	cfg := RealConfig{FS1: fs1}
	f, why := cfg.Fleet(RealFreeSWITCH, false)
	if why != "" || f.Servers["srv11"] != fs1 || fmt.Sprint(f.Served()) != "[srv11]" {
		t.Errorf("one FreeSWITCH: %+v %q", f, why)
	}
	if _, why := cfg.Fleet(RealFreeSWITCH, true); !strings.Contains(why, EnvFS2) || strings.Contains(why, EnvFS1+" ") {
		t.Errorf("two FreeSWITCH with FS1 only: %q", why)
	}
	cfg.Fleets = []string{RealAsterisk}
	if _, why := cfg.Fleet(RealFreeSWITCH, false); !strings.Contains(why, EnvFleets) {
		t.Errorf("fleet left out: %q", why)
	}
}

// The plan of a real fleet: the servers' connections, trunks through the
// lab's gateways and endpoints, the scenario's lab targets.
func TestRealPlan(t *testing.T) {
	fs1 := &RealServer{Var: EnvFS1, Kind: provision.KindFreeSWITCH, Addr: "10.1.0.1:8021", Password: "pw",
		Context: "default", Name: "fs1", SIP: "10.1.0.1:5060"}
	ast1 := &RealServer{Var: EnvAST1, Kind: provision.KindAsterisk, URL: "http://10.1.0.2:8088/ari", User: "u",
		Password: "p", App: "controller", Context: "from-sipp", Name: "ast1", SIP: "10.1.0.2:5080"}
	f, why := RealConfig{FS1: fs1, AST1: ast1}.Fleet(RealMixed, true)
	if why != "" {
		t.Fatal(why)
	}
	doc, err := RealDocument(f, Endpoints{"grp1": grp1Endpoints["grp1"], "acme": {"2099": Answers}})
	if err != nil {
		t.Fatal(err)
	}
	if plan, probs := provision.Compile(doc, nil); plan == nil {
		t.Fatalf("plan does not compile: %v", probs)
	}
	for _, s := range doc.Servers {
		switch s.Name {
		case "srv11":
			if s.FreeSWITCH == nil || s.FreeSWITCH.Address != "10.1.0.1:8021" || s.FreeSWITCH.Password != "pw" ||
				s.Trunks["srv12"].Dial != "sofia/gateway/ast1/{dest}" || fmt.Sprint(s.Trunks["srv12"].From) != "[10.1.0.2:5080]" {
				t.Errorf("srv11: %+v %+v", s.FreeSWITCH, s.Trunks)
			}
		case "srv12":
			if s.Asterisk == nil || s.Asterisk.URL != "http://10.1.0.2:8088/ari" || s.Asterisk.App != "controller" ||
				s.Trunks["srv11"].Dial != "PJSIP/{dest}@fs1" || fmt.Sprint(s.Trunks["srv11"].From) != "[fs1]" {
				t.Errorf("srv12: %+v %+v", s.Asterisk, s.Trunks)
			}
		}
	}
	eps := map[string]string{}
	for _, o := range doc.Orgs {
		for _, n := range o.SIPNumbers {
			eps[o.ID+"/"+n.Number] = n.Endpoint
		}
		for _, u := range o.Users {
			eps[o.ID+"/"+u.Extension] = u.Endpoint
		}
	}
	for k, want := range map[string]string{
		"grp1/77721403": "loopback/203/targets", "grp1/77721404": "loopback/304/targets",
		"grp1/77721405": "user/77721405", "grp1/77721406": "loopback/506/targets",
		"acme/2099": "Local/599@targets", "grp2/77721403": "", "acme/3999": "",
	} {
		if eps[k] != want {
			t.Errorf("%s endpoint %q, want %q", k, eps[k], want)
		}
	}
	if _, err := RealDocument(f, Endpoints{"grp1": {"555": Answers}}); err == nil {
		t.Error("an endpoint for a number the plan does not have was accepted")
	}
	if got := TargetEndpoint(provision.KindAsterisk, Unregistered, "77721405"); got != "PJSIP/77721405" {
		t.Errorf("unregistered Asterisk endpoint %q", got)
	}
}

// The relay passes bytes both ways and the end of each direction.
func TestRelayPassesConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			served <- err
			return
		}
		_, err = c.Write([]byte("echo " + string(buf[:n])))
		served <- err
	}()
	r, err := startRelay("127.0.0.1:0", ln.Addr().String(), logger())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("connect")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, 64)
	buf := make([]byte, 64)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break // the far end closed: its end was passed on
		}
	}
	if string(got) != "echo connect" {
		t.Errorf("relayed %q", got)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	// A relay whose target is gone closes the connection at once.
	ln.Close()
	c2, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_ = c2.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := c2.Read(buf); err == nil {
		t.Errorf("read %d bytes through a relay with no target", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("the relay kept a connection it could not pass on")
	}
}

// Sync's barrier is a bridge created and destroyed; the simulated Asterisk
// reports it to an application subscribed to everything, as Asterisk does.
func TestARISyncSeesItsBridge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lab, err := sim.StartLab(ctx, sim.Config{Servers: []sim.ServerConfig{{Name: "ast1", Kind: provision.KindAsterisk, App: defaultARIApp}},
		Logger: logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	rs := &RealServer{Var: EnvAST1, Kind: provision.KindAsterisk, URL: lab.Server("ast1").ARIURL(), User: "ari", Password: "ari",
		App: defaultARIApp, Context: defaultARICtx, Name: "ast1", SIP: "127.0.0.1:5080"}
	a, err := dialARI(ctx, "srv11", rs, defaultCaller, logger())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for i := 0; i < 3; i++ {
		if err := a.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.syncMisses != 0 || len(a.syncs) != 0 {
		t.Errorf("sync bridges not reported: %d misses, %d waiting", a.syncMisses, len(a.syncs))
	}
}

// SPEC §10 on real servers: PSTN callers whose caller ID is withheld or not
// a number reach the phone of the DID they dial, on the same server and
// over the trunk to the other one, and the phone shows them withheld: an
// anonymous From, never what the caller sent.
func realWithheldCallers(t *testing.T, e *RealEnv) {
	for _, tc := range []struct{ from, name string }{
		{"anonymous", "Anonymous"}, // a From withheld as RFC 3323 says
		{"Restricted", ""},
		{"unknown", ""},
		{"+49%2030%201234", ""}, // "+49 30 1234"
	} {
		for _, to := range []struct{ did, phone string }{{"+4930100100", "3999"}, {"+442071234567", "2099"}} {
			number := PhoneNumber(PhoneAnswers, to.phone)
			before := len(e.SIPPhones.RingsOf(number))
			r := e.sipCall(t, "srv11", sipp.Call{Port: e.Fleet.SIP.PSTNCallers()[0], From: tc.from, FromName: tc.name,
				Dialed: to.did, Hold: 500 * time.Millisecond})
			if r.Final != 200 {
				t.Errorf("%s calls %s: the caller got %d (%s), want the call delivered", tc.from, to.did, r.Final, r.Reason)
				continue
			}
			rs := e.SIPPhones.RingsOf(number)
			if len(rs) != before+1 {
				t.Errorf("%s calls %s: %s rang %d times, want once", tc.from, to.did, to.phone, len(rs)-before)
				continue
			}
			got := rs[len(rs)-1]
			if u := strings.ToLower(got.From.User); u != "anonymous" && u != "" || got.From.Name != "" && got.From.Name != "Anonymous" {
				t.Errorf("%s calls %s: %s shows %q <%s>, want the caller withheld", tc.from, to.did, to.phone, got.From.Name, got.From.User)
			}
			if raw := strings.ToLower(strings.SplitN(tc.from, "%", 2)[0]); raw != "anonymous" &&
				(strings.Contains(strings.ToLower(got.PAI.User+got.PAI.Name), raw) || strings.Contains(strings.ToLower(got.From.Name), raw)) {
				t.Errorf("%s calls %s: %s is shown the caller's own ID (From %+v, P-Asserted-Identity %+v)", tc.from, to.did,
					to.phone, got.From, got.PAI)
			}
			rec := e.recordWhere(t, func(rec *controller.Record) bool {
				return rec.Server == "srv11" && rec.Dialed == to.did && !rec.Start.Before(r.Invited.Add(-5*time.Second))
			})
			if !rec.Withheld || rec.CallerID != "" || rec.Answered != to.phone {
				t.Errorf("%s calls %s: record withheld %v caller id %q answered %q", tc.from, to.did, rec.Withheld, rec.CallerID, rec.Answered)
			}
		}
	}
}
