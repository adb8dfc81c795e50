package integration

// The real-server mode of the scenario suite: the same calls, placed on real
// FreeSWITCH and Asterisk servers named in the environment, with a callctl
// node (node.Start, as in the simulated suite) serving them. This file reads
// the configuration and builds the plan; realenv*.go run the servers' side.

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/callctl/callctl/controller/provision"
)

// The environment variables of the real-server mode (the README lists them
// with what the servers need).
const (
	EnvFS1          = "CALLCTL_IT_FS1"         // host:port of a FreeSWITCH event socket
	EnvFS2          = "CALLCTL_IT_FS2"         // a second FreeSWITCH
	EnvFSPassword   = "CALLCTL_IT_FS_PASSWORD" // event socket password (ClueCon)
	EnvFSContext    = "CALLCTL_IT_FS_CONTEXT"  // context test calls start in (default)
	EnvAST1         = "CALLCTL_IT_AST1"        // ARI base URL with user:password
	EnvAST2         = "CALLCTL_IT_AST2"        // a second Asterisk
	EnvARIApp       = "CALLCTL_IT_ARI_APP"     // Stasis application the dialplan hands calls to (controller)
	EnvARIContext   = "CALLCTL_IT_ARI_CONTEXT" // context test calls start in (from-sipp)
	EnvARICaller    = "CALLCTL_IT_ARI_CALLER"  // the suite's own ARI application (callctl-it-caller)
	EnvESLListen    = "CALLCTL_IT_ESL_LISTEN"  // where callctl listens for the socket application
	EnvESLStandby   = "CALLCTL_IT_ESL_STANDBY" // where a second node listens (the dialplan's second socket)
	EnvFleets       = "CALLCTL_IT_FLEETS"      // freeswitch,asterisk,mixed (default: all that are set)
	EnvSIPP         = "CALLCTL_IT_SIPP"        // first port of the suite's SIP peers (sipp), 5070 in the lab
	EnvLabCtl       = "CALLCTL_IT_LAB"         // the lab's control script (lab.sh), to stop and start servers
	envNameSuffix   = "_NAME"                  // CALLCTL_IT_FS1_NAME: gateway / endpoint name peers use
	envSIPSuffix    = "_SIP"                   // CALLCTL_IT_FS1_SIP: SIP address its trunk calls come from
	defaultListen   = "127.0.0.1:18084"        // the recorded lab's socket address of fs1
	defaultCaller   = "callctl-it-caller"      // the suite's ARI application
	defaultARIApp   = "controller"             // the recorded lab's Stasis application
	defaultFSCtx    = "default"                // FreeSWITCH context that runs socket for phones
	defaultARICtx   = "from-sipp"              // Asterisk context that runs Stasis for phones
	realRingTimeout = 3 * time.Second          // per-member ring time of the plan's hunts
)

// The fleets of the real-server mode.
const (
	RealFreeSWITCH = "freeswitch" // srv11 = FS1, srv12 = FS2
	RealAsterisk   = "asterisk"   // srv11 = AST1, srv12 = AST2
	RealMixed      = "mixed"      // srv11 = FS1, srv12 = AST1
)

// RealServer is one real media server of the environment.
type RealServer struct {
	// Var is the variable it came from (CALLCTL_IT_FS1), for messages.
	Var  string
	Kind string // provision.KindFreeSWITCH or provision.KindAsterisk
	// Addr is a FreeSWITCH's event socket (host:port).
	Addr string
	// URL is an Asterisk's ARI base URL, without credentials.
	URL      string
	User     string // ARI user
	Password string // event socket or ARI password
	// App is the Stasis application an Asterisk's dialplan hands calls to.
	App string
	// Context is where the suite's calls start: a FreeSWITCH context that runs
	// socket (default), an Asterisk context that runs Stasis (from-sipp).
	Context string
	// Name is how the other servers reach this one: a FreeSWITCH gateway name
	// (sofia/gateway/<name>/...) or an Asterisk PJSIP endpoint name
	// (PJSIP/...@<name>); Asterisk also names the endpoint of calls arriving
	// from this server so. The recorded lab's names are fs1, fs2, ast1, ast2.
	Name string
	// SIP is the address (host:port) this server's SIP calls come from, as a
	// FreeSWITCH sees them (sip_network_ip:sip_network_port).
	SIP string
}

// RealConfig is the configuration of the real-server mode. RealConfigFrom
// reads it from the environment; tests fill it in directly.
type RealConfig struct {
	FS1, FS2, AST1, AST2 *RealServer
	// ESLListen: the node listens on the first address for FreeSWITCH's
	// socket application; connections to the others are relayed to it (a lab
	// whose servers connect to different ports, as the recorded one does:
	// fs1 to 18084, fs2 to 18085).
	ESLListen []string
	// ESLStandby: where the dialplan's second socket line connects when the
	// first node does not answer (a second node of a cluster), in the order
	// of ESLListen; empty when the dialplan has no second line.
	ESLStandby []string
	// CallerApp is the suite's own ARI application: the caller's half of each
	// test call enters it, so the suite sees what the caller sees.
	CallerApp string
	// Fleets limits the fleets run; empty runs every fleet whose servers are
	// set.
	Fleets []string
	// SIP is where the suite's own SIP callers and phones (sipp) are; nil
	// when CALLCTL_IT_SIPP is not set.
	SIP *SIPPorts
	// simulated: the servers are the simulator's (TestRealModeOnSimulator).
	simulated bool
	// LabCtl is the lab's control script (integration/lab/lab.sh with the
	// lab's environment), for scenarios that stop and start a media server;
	// empty when the servers are not the suite's to stop.
	LabCtl string
}

// SIPPorts is the layout of the suite's SIP peers on 127.0.0.1, from one
// base port (integration/lab/lab.sh): SIP callers acting as phones on
// base..base+5, PSTN callers on base+6 and base+7, a caller whose REFERs
// Asterisk leaves to callctl on base+8, the SIP phones on
// base+21 and the PSTN's far end on base+22. The lab's media servers know
// these addresses: Asterisk identifies endpoints sipp, pstn and phones by
// them.
type SIPPorts struct{ Base int }

// Callers are the ports of SIP callers that are phones of a server.
func (p SIPPorts) Callers() []int {
	return []int{p.Base, p.Base + 1, p.Base + 2, p.Base + 3, p.Base + 4, p.Base + 5}
}

// PSTNCallers are the ports calls from the PSTN come from.
func (p SIPPorts) PSTNCallers() []int { return []int{p.Base + 6, p.Base + 7} }

// AriOnlyCaller is the port of a SIP caller acting as a phone whose REFERs
// Asterisk leaves to callctl (endpoint sipp-ari, PJSIP_TRANSFER_HANDLING
// ari-only).
func (p SIPPorts) AriOnlyCaller() int { return p.Base + 8 }

// Phones is the port of the suite's SIP phones.
func (p SIPPorts) Phones() int { return p.Base + 21 }

// PSTNFar is the port of the PSTN's far end, where external calls arrive.
func (p SIPPorts) PSTNFar() int { return p.Base + 22 }

// Transferer is the port of the phone that answers and transfers (REFER).
func (p SIPPorts) Transferer() int { return p.Base + 23 }

// Any says whether at least one real server is configured.
func (c RealConfig) Any() bool { return c.FS1 != nil || c.FS2 != nil || c.AST1 != nil || c.AST2 != nil }

// RealConfigFrom reads the real-server configuration with getenv
// (os.Getenv). Unset servers stay nil; a variable that is set but wrong is an
// error naming it.
func RealConfigFrom(getenv func(string) string) (RealConfig, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	cfg := RealConfig{CallerApp: defaultCaller}
	if v := strings.TrimSpace(getenv(EnvARICaller)); v != "" {
		cfg.CallerApp = v
	}
	if !validAppName(cfg.CallerApp) {
		bad("%s=%q: an application name is letters, digits, - and _", EnvARICaller, cfg.CallerApp)
	}
	listen := getenv(EnvESLListen)
	if strings.TrimSpace(listen) == "" {
		listen = defaultListen
	}
	for _, a := range strings.Split(listen, ",") {
		a = strings.TrimSpace(a)
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("%s: %q is not host:port: %v", EnvESLListen, a, err)
			continue
		}
		cfg.ESLListen = append(cfg.ESLListen, a)
	}
	if v := strings.TrimSpace(getenv(EnvESLStandby)); v != "" {
		for _, a := range strings.Split(v, ",") {
			a = strings.TrimSpace(a)
			if _, _, err := net.SplitHostPort(a); err != nil {
				bad("%s: %q is not host:port: %v", EnvESLStandby, a, err)
				continue
			}
			cfg.ESLStandby = append(cfg.ESLStandby, a)
		}
	}
	if v := strings.TrimSpace(getenv(EnvFleets)); v != "" {
		for _, f := range strings.Split(v, ",") {
			f = strings.TrimSpace(f)
			if !slices.Contains([]string{RealFreeSWITCH, RealAsterisk, RealMixed}, f) {
				bad("%s: %q is not a fleet (freeswitch, asterisk, mixed)", EnvFleets, f)
				continue
			}
			cfg.Fleets = append(cfg.Fleets, f)
		}
	}
	if v := strings.TrimSpace(getenv(EnvSIPP)); v != "" {
		var base int
		if _, err := fmt.Sscan(v, &base); err != nil || base < 1024 || base > 65000 {
			bad("%s=%q: want the first port of the suite's SIP peers (5070)", EnvSIPP, v)
		} else {
			cfg.SIP = &SIPPorts{Base: base}
		}
	}
	cfg.LabCtl = strings.TrimSpace(getenv(EnvLabCtl))
	password := getenv(EnvFSPassword)
	if password == "" {
		password = "ClueCon"
	}
	fsCtx := orElse(strings.TrimSpace(getenv(EnvFSContext)), defaultFSCtx)
	for i, v := range []string{EnvFS1, EnvFS2} {
		addr := strings.TrimSpace(getenv(v))
		if addr == "" {
			continue
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			bad("%s=%q: want the event socket's host:port (127.0.0.1:8021): %v", v, addr, err)
			continue
		}
		s := &RealServer{Var: v, Kind: provision.KindFreeSWITCH, Addr: addr, Password: password, Context: fsCtx,
			Name: orElse(getenv(v+envNameSuffix), fmt.Sprintf("fs%d", i+1)),
			// The recorded lab's SIP ports: fs1 5060, fs2 5062.
			SIP: orElse(getenv(v+envSIPSuffix), net.JoinHostPort(host, fmt.Sprint(5060+2*i)))}
		errs = append(errs, s.check())
		if i == 0 {
			cfg.FS1 = s
		} else {
			cfg.FS2 = s
		}
	}
	app := orElse(strings.TrimSpace(getenv(EnvARIApp)), defaultARIApp)
	astCtx := orElse(strings.TrimSpace(getenv(EnvARIContext)), defaultARICtx)
	for i, v := range []string{EnvAST1, EnvAST2} {
		raw := strings.TrimSpace(getenv(v))
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("%s: want the ARI base URL with credentials, http://user:password@host:8088/ari", v)
			continue
		}
		pass, hasPass := u.User.Password()
		if u.User == nil || u.User.Username() == "" || !hasPass {
			bad("%s: the URL carries no user:password (http://ari:ari@127.0.0.1:8088/ari)", v)
			continue
		}
		s := &RealServer{Var: v, Kind: provision.KindAsterisk, User: u.User.Username(), Password: pass, App: app,
			Context: astCtx, Name: orElse(getenv(v+envNameSuffix), fmt.Sprintf("ast%d", i+1))}
		u.User = nil
		s.URL = strings.TrimRight(u.String(), "/")
		// The recorded lab's SIP ports: ast1 5080, ast2 5082.
		s.SIP = orElse(getenv(v+envSIPSuffix), net.JoinHostPort(u.Hostname(), fmt.Sprint(5080+2*i)))
		errs = append(errs, s.check())
		if i == 0 {
			cfg.AST1 = s
		} else {
			cfg.AST2 = s
		}
	}
	return cfg, errors.Join(errs...)
}

func orElse(v, def string) string {
	if strings.TrimSpace(v) == "" {
		return def
	}
	return strings.TrimSpace(v)
}

// check refuses names that would not survive a dial string or an endpoint.
func (s *RealServer) check() error {
	var errs []error
	if !validAppName(s.Name) {
		errs = append(errs, fmt.Errorf("%s%s=%q: a gateway or endpoint name is letters, digits, - and _", s.Var, envNameSuffix, s.Name))
	}
	if _, _, err := net.SplitHostPort(s.SIP); err != nil {
		errs = append(errs, fmt.Errorf("%s%s=%q: want host:port: %v", s.Var, envSIPSuffix, s.SIP, err))
	}
	if !validAppName(s.Context) {
		errs = append(errs, fmt.Errorf("%s: context %q: letters, digits, - and _ only", s.Var, s.Context))
	}
	if s.Kind == provision.KindAsterisk && !validAppName(s.App) {
		errs = append(errs, fmt.Errorf("%s=%q: an application name is letters, digits, - and _", EnvARIApp, s.App))
	}
	return errors.Join(errs...)
}

func validAppName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// RealFleet is what a scenario runs on: the plan's servers srv11 and srv12
// and the real servers behind them (nil: in the plan, not served).
type RealFleet struct {
	Name    string
	Kinds   map[string]string
	Servers map[string]*RealServer
	// SIP: the suite's SIP peers, when configured.
	SIP *SIPPorts
}

// Served lists the plan servers with a real server behind them.
func (f RealFleet) Served() []string {
	var out []string
	for _, n := range []string{"srv11", "srv12"} {
		if f.Servers[n] != nil {
			out = append(out, n)
		}
	}
	return out
}

// Fleet returns the servers of fleet for a scenario that needs one server
// (srv11) or two. When they are not configured it returns why, naming the
// variables, for the scenario's skip message.
func (c RealConfig) Fleet(fleet string, two bool) (RealFleet, string) {
	if len(c.Fleets) > 0 && !slices.Contains(c.Fleets, fleet) {
		return RealFleet{}, fmt.Sprintf("real-server mode: %s=%s leaves out the %s fleet", EnvFleets, strings.Join(c.Fleets, ","), fleet)
	}
	f := RealFleet{Name: fleet, Servers: map[string]*RealServer{}}
	var first, second *RealServer
	var firstVar, secondVar, what string
	switch fleet {
	case RealFreeSWITCH:
		f.Kinds = FreeSWITCHFleet.Kinds
		first, second, firstVar, secondVar = c.FS1, c.FS2, EnvFS1, EnvFS2
		what = "FreeSWITCH event socket host:port"
	case RealAsterisk:
		f.Kinds = AsteriskFleet.Kinds
		first, second, firstVar, secondVar = c.AST1, c.AST2, EnvAST1, EnvAST2
		what = "Asterisk ARI URL with user:password"
	case RealMixed:
		f.Kinds = MixedFleet.Kinds
		first, second, firstVar, secondVar = c.FS1, c.AST1, EnvFS1, EnvAST1
		what = "a FreeSWITCH event socket and an Asterisk ARI URL, trunked to each other"
		two = true // one server of each kind is the point of this fleet
	default:
		return RealFleet{}, fmt.Sprintf("real-server mode: no fleet %q", fleet)
	}
	var missing []string
	if first == nil {
		missing = append(missing, firstVar)
	}
	if two && second == nil {
		missing = append(missing, secondVar)
	}
	if len(missing) > 0 {
		return RealFleet{}, fmt.Sprintf("real-server mode: set %s (%s) to run this on real servers", strings.Join(missing, " and "), what)
	}
	f.Servers["srv11"] = first
	if two {
		f.Servers["srv12"] = second
	}
	f.SIP = c.SIP
	return f, ""
}

// Lab targets: what a number's endpoint does, by the lab convention of the
// targets context on every lab server (traces/README.md).
type Target byte

const (
	Answers      Target = '5' // 5XX: answers and stays up until hung up
	Busy         Target = '2' // 2XX: busy (USER_BUSY, 17)
	Rings        Target = '3' // 3XX: rings, never answers
	Fails        Target = '4' // 4XX: fails (FreeSWITCH NORMAL_TEMPORARY_FAILURE, Asterisk congestion)
	Unregistered Target = 'u' // a phone endpoint that is not registered

	// The suite's SIP phones (sipp), reached over SIP: what they display is
	// what a real phone would.
	PhoneAnswers Target = 'A' // answers (200) and stays up
	PhoneBusy    Target = 'B' // 486
	PhoneRings   Target = 'R' // 180 until cancelled
	// PhoneTransfers answers and then transfers the caller (a blind REFER);
	// the scenario starts it (sipp.StartTransferer).
	PhoneTransfers Target = 'T'
	// PhoneTransfersAriOnly is the same phone on Asterisk with the
	// transfer left to callctl (PJSIP_TRANSFER_HANDLING ari-only: the lab's
	// endpoint transferer-ari); on FreeSWITCH it is PhoneTransfers.
	PhoneTransfersAriOnly Target = 't'
)

// phoneDigit is the first digit of the number a SIP phone is called on:
// the phones behave by it (integration/sipp).
var phoneDigit = map[Target]byte{PhoneAnswers: '5', PhoneBusy: '2', PhoneRings: '3', PhoneTransfers: '6', PhoneTransfersAriOnly: '6'}

// IsPhone says whether t is one of the suite's SIP phones.
func (t Target) IsPhone() bool { _, ok := phoneDigit[t]; return ok }

// PhoneNumber is the number a SIP phone behaving as t is called on for
// number: its behaviour digit, then the number.
func PhoneNumber(t Target, number string) string {
	return string(phoneDigit[t]) + number
}

func lastTwo(number string) string {
	xx := number
	if len(xx) > 2 {
		xx = xx[len(xx)-2:]
	}
	for len(xx) < 2 {
		xx = "0" + xx
	}
	return xx
}

// Endpoint is the endpoint of number on server behaving as t: a lab target
// (TargetEndpoint) or one of the suite's SIP phones, sofia/internal/<n>@
// 127.0.0.1:<phones> on FreeSWITCH, PJSIP/<n>@phones on Asterisk (the lab's
// endpoint for the phones' address).
func (f RealFleet) Endpoint(server string, t Target, number string) string {
	kind := f.Kinds[server]
	if !t.IsPhone() {
		return TargetEndpoint(kind, t, number)
	}
	port, endpoint := 0, "phones"
	if f.SIP != nil {
		port = f.SIP.Phones()
		switch t {
		case PhoneTransfers:
			port, endpoint = f.SIP.Transferer(), "transferer"
		case PhoneTransfersAriOnly:
			port, endpoint = f.SIP.Transferer(), "transferer-ari"
		}
	}
	if kind == provision.KindFreeSWITCH {
		return fmt.Sprintf("sofia/internal/%s@127.0.0.1:%d", PhoneNumber(t, number), port)
	}
	return "PJSIP/" + PhoneNumber(t, number) + "@" + endpoint
}

// TargetEndpoint is the endpoint of number on a server of kind behaving as
// t: loopback/NXX/targets or Local/NXX@targets, where N says what it does and
// XX are the number's last two digits (so each member rings its own
// extension and the channels tell them apart); user/<number> or
// PJSIP/<number> for a phone that is not registered.
func TargetEndpoint(kind string, t Target, number string) string {
	if t == Unregistered {
		if kind == provision.KindFreeSWITCH {
			return "user/" + number
		}
		return "PJSIP/" + number
	}
	ext := string(t) + lastTwo(number)
	if kind == provision.KindFreeSWITCH {
		return "loopback/" + ext + "/targets"
	}
	return "Local/" + ext + "@targets"
}

// Endpoints says how a scenario's numbers behave: org -> number -> target.
// Users and SIP numbers of the plan not listed keep their default endpoint
// (user/<ext>, PJSIP/<ext>), which on the lab servers rings nobody.
type Endpoints map[string]map[string]Target

// RealDocument is the lab plan (examples/lab.yaml, as the simulated suite
// runs it) for fleet on real servers: their connections, trunks dialing
// the lab's gateways and endpoints, and the scenario's endpoints.
func RealDocument(f RealFleet, eps Endpoints, edits ...func(*provision.Document)) (*provision.Document, error) {
	doc, err := LabDocument(Fleet{Name: f.Name, Kinds: f.Kinds}, func(string) (string, string) { return "", "" })
	if err != nil {
		return nil, err
	}
	peerName := func(name string) string {
		if s := f.Servers[name]; s != nil {
			return s.Name
		}
		return name
	}
	for i := range doc.Servers {
		s := &doc.Servers[i]
		rs := f.Servers[s.Name]
		if rs == nil {
			// In the plan so that it compiles whole, but not served: the node
			// does not connect to it and the scenario places no call there.
			rs = &RealServer{Addr: "127.0.0.1:9", URL: "http://127.0.0.1:9/ari", User: "unused", Password: "unused",
				App: defaultARIApp, SIP: "127.0.0.1:9"}
		}
		switch s.Kind {
		case provision.KindFreeSWITCH:
			s.FreeSWITCH = &provision.ESLConn{Address: rs.Addr, Password: rs.Password, Context: orElse(rs.Context, defaultFSCtx)}
			if f.SIP != nil {
				// The PSTN is the suite's: its callers' ports, its far end
				// behind the lab's gateway "pstn".
				s.PSTN = &provision.Trunk{Dial: "sofia/gateway/pstn/{dest}"}
				for _, p := range f.SIP.PSTNCallers() {
					s.PSTN.From = append(s.PSTN.From, fmt.Sprintf("127.0.0.1:%d", p))
				}
			}
		case provision.KindAsterisk:
			// The PSTN is the lab's endpoint pstn (LabDocument): its callers
			// arrive from it, and PJSIP/<number>@pstn reaches its far end.
			s.Asterisk = &provision.ARIConn{URL: rs.URL, User: rs.User, Password: rs.Password, App: rs.App,
				Context: orElse(rs.Context, defaultARICtx)}
		}
		for peer := range s.Trunks {
			var t provision.Trunk
			if s.Kind == provision.KindFreeSWITCH {
				t.Dial = "sofia/gateway/" + peerName(peer) + "/{dest}"
				if ps := f.Servers[peer]; ps != nil {
					t.From = []string{ps.SIP}
				} else {
					t.From = []string{"127.0.0.1:9"}
				}
			} else {
				t.Dial = "PJSIP/{dest}@" + peerName(peer)
				t.From = []string{peerName(peer)}
			}
			s.Trunks[peer] = t
		}
	}
	doc.Settings.RingTimeout = provision.Duration(realRingTimeout)
	// The scenario's endpoints, then its edits (which may read them), then
	// the endpoints of users and SIP numbers only an edit added.
	assign := func(only map[string]bool) (missing map[string]bool) {
		for oi := range doc.Orgs {
			o := &doc.Orgs[oi]
			want := eps[o.ID]
			for number := range want {
				key := o.ID + " " + number
				if only != nil && !only[key] {
					continue
				}
				found := false
				for ui := range o.Users {
					if u := &o.Users[ui]; u.Extension == number {
						u.Endpoint, found = f.Endpoint(u.Server, want[number], number), true
					}
				}
				for ni := range o.SIPNumbers {
					if n := &o.SIPNumbers[ni]; n.Number == number {
						n.Endpoint, found = f.Endpoint(n.Server, want[number], number), true
					}
				}
				if !found {
					if missing == nil {
						missing = map[string]bool{}
					}
					missing[key] = true
				}
			}
		}
		return missing
	}
	missing := assign(nil)
	for _, edit := range edits {
		edit(doc)
	}
	if len(missing) > 0 {
		for key := range assign(missing) {
			org, number, _ := strings.Cut(key, " ")
			return nil, fmt.Errorf("lab plan: org %s has no user or SIP number %s", org, number)
		}
	}
	for org := range eps {
		if !slices.ContainsFunc(doc.Orgs, func(o provision.Org) bool { return o.ID == org }) {
			return nil, fmt.Errorf("lab plan: no org %s", org)
		}
	}
	return doc, nil
}

// ParkFeature is the feature code the lab's features context parks with;
// WithParking makes it acme's and hands feature codes to that context.
const ParkFeature = "*98"

// WithParking edits a lab plan so that acme's feature code *98 is handed to
// the servers' features context (integration/lab), which parks the call.
func WithParking(d *provision.Document) {
	for i := range d.Orgs {
		if d.Orgs[i].ID == "acme" {
			d.Orgs[i].FeatureCodes = append(d.Orgs[i].FeatureCodes, ParkFeature)
		}
	}
	for i := range d.Servers {
		if c := d.Servers[i].FreeSWITCH; c != nil {
			c.Context = "features"
		}
		if c := d.Servers[i].Asterisk; c != nil {
			c.Context = "features"
		}
	}
}
