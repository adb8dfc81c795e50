package integration

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/callctl/callctl/adapters/freeswitch"
	"github.com/callctl/callctl/adapters/memory"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/integration/sipp"
	"github.com/callctl/callctl/node"
)

// RealEnv is a callctl node serving real media servers, with the suite's
// own connection to each server: it places calls there as a phone would and
// watches every channel the server creates.
type RealEnv struct {
	Fleet   RealFleet
	Node    *node.Node
	Plan    *provision.Plan
	Doc     *provision.Document // the plan's document (for callctl processes)
	State   node.State
	Records *Recorder
	Log     *slog.Logger

	phones map[string]phoneSide // plan server name -> its side
	relays []*relay

	// SIPPhones answer the plan's SIP phone endpoints, PSTN the external
	// calls; nil without SIP peers (CALLCTL_IT_SIPP) or sipp.
	SIPPhones, PSTN *sipp.Phones
	sipDir          string
	cfg             RealConfig
	labCtl          string          // the lab's control script, when the servers are the lab's
	killed          map[string]bool // servers KillServer stopped and StartServer did not start yet
	callerApp       string
	nextCaller      int
	callers         []*sipp.Caller
	keepLogs        bool
	mu              sync.Mutex
	placed          []*RealCall
	closeOnce       sync.Once
}

// phoneSide is the suite's connection to one media server: it places calls
// the way the lab's phones do (handed to callctl by the dialplan) and keeps a
// log of the server's channels.
type phoneSide interface {
	Place(ctx context.Context, from, dialed string) (*RealCall, error)
	Channels() []Channel
	// Sync returns once every event the server raised before the call has
	// been read: what is not in the channel log then did not happen.
	Sync(ctx context.Context) error
	// Kill hangs a channel up from the server.
	Kill(ctx context.Context, id string) error
	Close()
}

// validChannelID: what the suite passes to uuid_kill or a URL path.
func validChannelID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.;", r)) {
			return false
		}
	}
	return true
}

// SIPCallerChannel is the newest channel of server that is still up and
// belongs to a SIP caller presenting from (sofia/internal/<from>@... on
// FreeSWITCH, PJSIP/sipp-... on Asterisk).
func (e *RealEnv) SIPCallerChannel(server, from string) (Channel, bool) {
	chans := e.Channels(server)
	for i := len(chans) - 1; i >= 0; i-- {
		c := chans[i]
		if !c.Ended.IsZero() || c.Caller != from {
			continue
		}
		if strings.HasPrefix(c.Name, "sofia/internal/"+from+"@") || strings.HasPrefix(c.Name, "PJSIP/sipp-") || strings.HasPrefix(c.Name, "PJSIP/pstn-") {
			return c, true
		}
	}
	return Channel{}, false
}

// CanRestart says whether the scenario may stop and start the fleet's
// servers (they are the lab's).
func (e *RealEnv) CanRestart() bool { return e.labCtl != "" }

// KillServer kills server's media server at once (SIGKILL), as a crash.
// The suite's connection to it goes with it.
func (e *RealEnv) KillServer(ctx context.Context, server string) error {
	rs := e.Fleet.Servers[server]
	if rs == nil || e.labCtl == "" {
		return fmt.Errorf("server %s cannot be killed here", server)
	}
	out, err := exec.CommandContext(ctx, e.labCtl, "kill", rs.Name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kill %s: %v: %s", rs.Name, err, out)
	}
	e.mu.Lock()
	p := e.phones[server]
	if e.killed == nil {
		e.killed = map[string]bool{}
	}
	e.killed[server] = true
	e.mu.Unlock()
	p.Close()
	return nil
}

// StartServer starts server's media server again and reconnects the suite
// to it; what the dead server's channels did is forgotten (they are gone).
func (e *RealEnv) StartServer(ctx context.Context, server string) error {
	rs := e.Fleet.Servers[server]
	out, err := exec.CommandContext(ctx, e.labCtl, "start", rs.Name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("start %s: %v: %s", rs.Name, err, out)
	}
	var p phoneSide
	switch rs.Kind {
	case provision.KindFreeSWITCH:
		p, err = dialFS(ctx, server, rs, e.Log)
	default:
		p, err = dialARI(ctx, server, rs, e.callerApp, e.Log)
	}
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.phones[server] = p
	delete(e.killed, server)
	e.mu.Unlock()
	return nil
}

// Kill hangs up a channel of server.
func (e *RealEnv) Kill(ctx context.Context, server, id string) error {
	p := e.phones[server]
	if p == nil {
		return fmt.Errorf("server %s is not served in the %s fleet", server, e.Fleet.Name)
	}
	return p.Kill(ctx, id)
}

// Transfer sends a channel of a server to dest in context, as an IVR or an
// operator does (no REFER, no user): uuid_transfer on FreeSWITCH; on
// Asterisk /continue by the suite's own ARI application, as an AMI
// Redirect does (the channel leaves callctl's bridge and application and
// runs the dialplan there).
func (e *RealEnv) Transfer(ctx context.Context, server, id, dest, context string) error {
	switch p := e.phones[server].(type) {
	case *fsSide:
		return p.Transfer(ctx, id, dest, context)
	case *ariSide:
		return p.Redirect(ctx, id, dest, context)
	}
	return fmt.Errorf("server %s is not served in the %s fleet", server, e.Fleet.Name)
}

// AttXfer makes the phone on channel id of server consult dialed for an
// attended transfer by FreeSWITCH's own att_xfer (an operator's binding).
func (e *RealEnv) AttXfer(ctx context.Context, server, id, dialed string) error {
	if p, ok := e.phones[server].(*fsSide); ok {
		return p.AttXfer(ctx, id, dialed)
	}
	return fmt.Errorf("server %s: att_xfer is FreeSWITCH's", server)
}

// RecvDTMF makes channel id of server receive digits from its phone.
func (e *RealEnv) RecvDTMF(ctx context.Context, server, id, digits string) error {
	if p, ok := e.phones[server].(*fsSide); ok {
		return p.RecvDTMF(ctx, id, digits)
	}
	return fmt.Errorf("server %s: uuid_recv_dtmf is FreeSWITCH's", server)
}

// Channel is a channel a server created while the suite watched.
type Channel struct {
	ID, Name string
	// Caller is the caller id number the channel carried (the last one seen).
	Caller   string
	Created  time.Time
	Answered time.Time // zero: never answered
	Ended    time.Time // zero: still up
	Cause    int       // Q.850 hangup cause
}

// Outcome is what the caller of a test call experienced.
type Outcome struct {
	Answered bool
	// Cause is the Q.850 cause the caller's channel ended with: on FreeSWITCH
	// the loopback -a leg's (which takes the -b leg's, the one callctl
	// controls); on Asterisk the ;2 half's, the one in callctl's application.
	Cause     int
	CauseName string
}

// RealCall is a call the suite placed: from, dialing dialed, on server.
type RealCall struct {
	Server, From, Dialed string
	At                   time.Time
	// ID is the caller's channel on the server (the loopback -a uuid, the
	// Local ;1 channel id).
	ID string

	hangup   func(ctx context.Context) error
	mu       sync.Mutex
	outcome  Outcome
	answered chan struct{}
	ended    chan struct{}
}

func newRealCall(server, from, dialed, id string) *RealCall {
	return &RealCall{Server: server, From: from, Dialed: dialed, ID: id, At: time.Now(),
		answered: make(chan struct{}), ended: make(chan struct{})}
}

func (c *RealCall) markAnswered() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.outcome.Answered {
		c.outcome.Answered = true
		close(c.answered)
	}
}

// markEnded records the end once; later calls are ignored.
func (c *RealCall) markEnded(cause int, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.ended:
		return
	default:
	}
	c.outcome.Cause, c.outcome.CauseName = cause, name
	close(c.ended)
}

// WaitAnswered waits until the caller is connected; it fails if the call
// ends first.
func (c *RealCall) WaitAnswered(ctx context.Context) error {
	select {
	case <-c.answered:
		return nil
	case <-c.ended:
		select {
		case <-c.answered:
			return nil
		default:
		}
		o := c.Outcome()
		return fmt.Errorf("call %s -> %s ended unanswered: cause %d %s", c.From, c.Dialed, o.Cause, o.CauseName)
	case <-ctx.Done():
		return fmt.Errorf("call %s -> %s not answered: %w", c.From, c.Dialed, ctx.Err())
	}
}

// WaitEnded waits for the end of the call.
func (c *RealCall) WaitEnded(ctx context.Context) (Outcome, error) {
	select {
	case <-c.ended:
		return c.Outcome(), nil
	case <-ctx.Done():
		return Outcome{}, fmt.Errorf("call %s -> %s did not end: %w", c.From, c.Dialed, ctx.Err())
	}
}

// Ended says whether the call is over.
func (c *RealCall) Ended() bool {
	select {
	case <-c.ended:
		return true
	default:
		return false
	}
}

// Outcome is what the caller saw so far.
func (c *RealCall) Outcome() Outcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.outcome
}

// Hangup hangs the caller up (the caller leaves).
func (c *RealCall) Hangup(ctx context.Context) error { return c.hangup(ctx) }

// reDigits is what the suite dials and presents: digits, * # +, a final T.
var reDigits = regexp.MustCompile(`^\+?[0-9*#]{1,32}T?$`)

func checkDigits(from, dialed string) error {
	if !reDigits.MatchString(from) || !reDigits.MatchString(dialed) {
		return fmt.Errorf("caller %q / dialed %q: only digits, * # + and a final T", from, dialed)
	}
	return nil
}

// newID returns a random UUID (version 4), as FreeSWITCH's own.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// chanLog keeps the channels a server created, in order.
type chanLog struct {
	mu    sync.Mutex
	byID  map[string]*Channel
	order []string
}

func newChanLog() *chanLog { return &chanLog{byID: map[string]*Channel{}} }

// touch returns the channel's entry, creating it (first seen now) when new.
// The caller holds mu.
func (l *chanLog) touch(id, name, caller string, now time.Time) *Channel {
	ch := l.byID[id]
	if ch == nil {
		ch = &Channel{ID: id, Created: now}
		l.byID[id] = ch
		l.order = append(l.order, id)
	}
	if name != "" {
		ch.Name = name
	}
	if caller != "" {
		ch.Caller = caller
	}
	return ch
}

func (l *chanLog) list() []Channel {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Channel, 0, len(l.order))
	for _, id := range l.order {
		out = append(out, *l.byID[id])
	}
	return out
}

// StartReal starts the suite's connections to the fleet's servers and a
// callctl node serving them with the lab plan and the scenario's endpoints.
func StartReal(ctx context.Context, cfg RealConfig, f RealFleet, eps Endpoints, logger *slog.Logger, opts ...RealOption) (*RealEnv, error) {
	if logger == nil {
		logger = slog.Default()
	}
	var o realOptions
	for _, opt := range opts {
		opt(&o)
	}
	doc, err := RealDocument(f, eps, o.edits...)
	if err != nil {
		return nil, err
	}
	plan, probs := provision.Compile(doc, nil)
	if plan == nil {
		return nil, &provision.InvalidError{Problems: probs}
	}
	e := &RealEnv{Fleet: f, Plan: plan, Doc: doc, Log: logger, phones: map[string]phoneSide{}, cfg: cfg, labCtl: cfg.LabCtl, callerApp: cfg.CallerApp}
	ok := false
	defer func() {
		if !ok {
			e.Close()
		}
	}()
	switchnames := map[string]string{}
	hasFS := false
	for _, name := range f.Served() {
		rs := f.Servers[name]
		switch rs.Kind {
		case provision.KindFreeSWITCH:
			hasFS = true
			c, err := dialFS(ctx, name, rs, logger)
			if err != nil {
				return nil, err
			}
			e.phones[name] = c
			switchnames[name] = c.switchname
		case provision.KindAsterisk:
			c, err := dialARI(ctx, name, rs, cfg.CallerApp, logger)
			if err != nil {
				return nil, err
			}
			e.phones[name] = c
		}
	}
	if len(switchnames) == 2 && switchnames["srv11"] == switchnames["srv12"] {
		logger.Warn("both FreeSWITCH servers report the same switchname: callctl tells their calls apart only if the dialplan sets callctl_server",
			"switchname", switchnames["srv11"])
	}
	listen := ""
	if hasFS {
		if len(cfg.ESLListen) == 0 {
			return nil, fmt.Errorf("real-server mode: no %s address", EnvESLListen)
		}
		listen = cfg.ESLListen[0]
		for _, a := range cfg.ESLListen[1:] {
			r, err := startRelay(a, listen, logger)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", EnvESLListen, err)
			}
			e.relays = append(e.relays, r)
		}
		if o.noNode && len(cfg.ESLStandby) > 1 {
			// The scenario's second node listens on the first standby
			// address; the other servers' second socket lines reach it too.
			for _, a := range cfg.ESLStandby[1:] {
				r, err := startRelay(a, cfg.ESLStandby[0], logger)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", EnvESLStandby, err)
				}
				e.relays = append(e.relays, r)
			}
		}
	}
	if f.SIP != nil && sipp.Available() == nil {
		if e.sipDir, err = os.MkdirTemp("", "callctl-sipp-"); err != nil {
			return nil, err
		}
		if e.SIPPhones, err = sipp.StartPhones(ctx, filepath.Join(e.sipDir, "phones"), f.SIP.Phones()); err != nil {
			return nil, fmt.Errorf("SIP phones: %w", err)
		}
		if e.PSTN, err = sipp.StartPhones(ctx, filepath.Join(e.sipDir, "pstn"), f.SIP.PSTNFar()); err != nil {
			return nil, fmt.Errorf("the PSTN's far end: %w", err)
		}
	}
	if o.noNode {
		// The scenario runs callctl itself (processes).
		ok = true
		return e, nil
	}
	state := memory.New(memory.Options{Logger: logger})
	e.Records = &Recorder{State: state, more: make(chan struct{})}
	e.State = e.Records
	opt := Tuned(node.Options{ID: "it-real", ESLListen: listen, Servers: f.Served(), State: e.Records, Logger: logger})
	tune := opt.FreeSWITCHConn
	opt.FreeSWITCHConn = func(c *freeswitch.MediaServerConfig) {
		if tune != nil {
			tune(c)
		}
		// Calls arriving over a trunk carry no callctl_server (unless the
		// lab's dialplan sets it): the switchname tells the servers apart.
		if sw := switchnames[c.Name]; sw != "" {
			c.Switchname = sw
		}
	}
	e.Node, err = node.Start(ctx, plan, opt)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var ast []string
	for _, name := range f.Served() {
		if f.Servers[name].Kind == provision.KindAsterisk {
			ast = append(ast, name)
		}
	}
	if err := e.Node.Ready(rctx, ast...); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

// RealOption changes how StartReal sets a scenario up.
type RealOption func(*realOptions)

type realOptions struct {
	edits  []func(*provision.Document)
	noNode bool
}

// WithEdit changes the scenario's plan (a limit).
func WithEdit(edit func(*provision.Document)) RealOption {
	return func(o *realOptions) { o.edits = append(o.edits, edit) }
}

// WithoutNode starts no callctl node: the scenario runs its own (callctl
// processes), listening where the servers' socket lines connect
// (ESLListen[0], and ESLStandby[0] for a second node).
func WithoutNode() RealOption { return func(o *realOptions) { o.noNode = true } }

// Place places a call on server from the phone from dialing dialed.
func (e *RealEnv) Place(ctx context.Context, server, from, dialed string) (*RealCall, error) {
	p := e.phones[server]
	if p == nil {
		return nil, fmt.Errorf("server %s is not served in the %s fleet", server, e.Fleet.Name)
	}
	c, err := p.Place(ctx, from, dialed)
	if err == nil {
		e.mu.Lock()
		e.placed = append(e.placed, c)
		e.mu.Unlock()
	}
	return c, err
}

// SIPCall places a call from a real SIP caller (sipp) to server's SIP
// address. c.Port chooses where it comes from (a phone's port when zero;
// SIPPorts.PSTNCallers for a call from the PSTN); c.Server is filled in.
func (e *RealEnv) SIPCall(ctx context.Context, server string, c sipp.Call) (*sipp.Caller, error) {
	rs := e.Fleet.Servers[server]
	if rs == nil || e.Fleet.SIP == nil || e.sipDir == "" {
		return nil, fmt.Errorf("no SIP callers for server %s in the %s fleet", server, e.Fleet.Name)
	}
	c.Server = rs.SIP
	e.mu.Lock()
	if c.Port == 0 {
		ports := e.Fleet.SIP.Callers()
		c.Port = ports[e.nextCaller%len(ports)]
		e.nextCaller++
	}
	e.mu.Unlock()
	cl, err := sipp.Start(ctx, filepath.Join(e.sipDir, "callers"), c)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.callers = append(e.callers, cl)
	e.mu.Unlock()
	return cl, nil
}

// Channels returns the channels server created since the environment
// started.
func (e *RealEnv) Channels(server string) []Channel {
	if p := e.phones[server]; p != nil {
		return p.Channels()
	}
	return nil
}

// TargetChannels returns the channels of server that rang the lab target
// endpoint (loopback/NXX/targets, Local/NXX@targets: its originated half)
// or the phone endpoint (user/N, PJSIP/N).
func (e *RealEnv) TargetChannels(server, endpoint string) []Channel {
	match := channelMatcher(endpoint)
	var out []Channel
	for _, c := range e.Channels(server) {
		if match(c.Name) {
			out = append(out, c)
		}
	}
	return out
}

// channelMatcher says which channel names belong to endpoint.
func channelMatcher(endpoint string) func(string) bool {
	tech, rest, _ := strings.Cut(endpoint, "/")
	switch tech {
	case "loopback":
		ext, _, _ := strings.Cut(rest, "/")
		return func(n string) bool { return n == "loopback/"+ext+"-a" }
	case "Local":
		return func(n string) bool { return strings.HasPrefix(n, "Local/"+rest+"-") && strings.HasSuffix(n, ";1") }
	case "user", "PJSIP":
		num, _, _ := strings.Cut(rest, "@")
		return func(n string) bool { return strings.Contains(n, "/"+num+"@") || strings.Contains(n, "/"+num+"-") }
	}
	return func(n string) bool { return n == endpoint }
}

// Sync catches up with every server's events (see phoneSide.Sync).
func (e *RealEnv) Sync(ctx context.Context) error {
	for name, p := range e.phones {
		if err := p.Sync(ctx); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// Count returns the counted legs held now on a server or org (-1 on error).
func (e *RealEnv) Count(ctx context.Context, scope, name string) int {
	if e.State == nil {
		return -1
	}
	n, err := e.State.Count(ctx, scope, name)
	if err != nil {
		return -1
	}
	return n
}

// Quiet waits until every channel the servers created since the start has
// ended and callctl has no call left.
func (e *RealEnv) Quiet(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		var up []string
		names := make([]string, 0, len(e.phones))
		for n := range e.phones {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			for _, c := range e.phones[n].Channels() {
				if c.Ended.IsZero() {
					up = append(up, n+":"+c.Name)
				}
			}
		}
		var calls []controller.CallView
		if e.Node != nil {
			calls = e.Node.Engine().Calls()
		}
		if len(up) == 0 && len(calls) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("channels still up %v, callctl calls %d: %w", up, len(calls), ctx.Err())
		case <-t.C:
		}
	}
}

// Record waits for the first call record matching match.
func (e *RealEnv) Record(ctx context.Context, match func(*controller.Record) bool) (controller.Record, error) {
	return e.Records.Wait(ctx, match)
}

// Close stops the node, then the relays and the suite's connections.
func (e *RealEnv) Close() {
	e.closeOnce.Do(func() {
		// A scenario that failed between killing a server and starting it
		// again leaves it down: the next scenario needs it.
		e.mu.Lock()
		var down []string
		for s := range e.killed {
			down = append(down, s)
		}
		e.mu.Unlock()
		for _, s := range down {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			if err := e.StartServer(ctx, s); err != nil {
				e.Log.Error("could not start a killed server again", "server", s, "err", err)
			}
			cancel()
		}
		// A scenario that failed may leave its callers up: they leave
		// first, so that the node has nothing to drain.
		e.mu.Lock()
		placed := e.placed
		e.mu.Unlock()
		for _, c := range placed {
			if !c.Ended() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := c.Hangup(ctx); err != nil {
					e.Log.Warn("hang up a test call left up", "call", c.ID, "err", err)
				} else {
					_, _ = c.WaitEnded(ctx)
				}
				cancel()
			}
		}
		if e.Node != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			if err := e.Node.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				e.Log.Warn("node shutdown", "err", err)
			}
			cancel()
		}
		for _, r := range e.relays {
			r.Close()
		}
		for _, p := range e.phones {
			p.Close()
		}
		e.mu.Lock()
		callers, keep := e.callers, e.keepLogs
		e.mu.Unlock()
		for _, c := range callers {
			c.Stop()
		}
		for _, ph := range []*sipp.Phones{e.SIPPhones, e.PSTN} {
			if ph != nil {
				ph.Close()
			}
		}
		if e.sipDir != "" && !keep {
			os.RemoveAll(e.sipDir)
		}
	})
}

// KeepSIPLogs keeps the SIP peers' scenarios and message logs after Close
// (a failed scenario) and returns where they are.
func (e *RealEnv) KeepSIPLogs() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.keepLogs = true
	return e.sipDir
}

// LabIdle waits until the fleet's servers are as a scenario must leave them:
// no channel up, no ARI application left registered, and no client still
// connected to a FreeSWITCH's event socket (a callctl node or a suite side
// of an earlier scenario). It says what is left when they do not get there.
func LabIdle(ctx context.Context, f RealFleet, logger *slog.Logger) error {
	var left []string
	for {
		left = left[:0]
		for _, name := range f.Served() {
			rs := f.Servers[name]
			switch rs.Kind {
			case provision.KindFreeSWITCH:
				if n := established(rs.Addr); n > 0 {
					left = append(left, fmt.Sprintf("%s: %d event socket clients", name, n))
				}
				side, err := dialFS(ctx, name, rs, logger)
				if err != nil {
					return err
				}
				f, err := side.command(ctx, "api show channels count")
				side.Close()
				if err != nil {
					return err
				}
				if body := strings.TrimSpace(string(f.body)); !strings.HasPrefix(body, "0 total") {
					left = append(left, fmt.Sprintf("%s: %s", name, body))
				}
			case provision.KindAsterisk:
				a := ariClient(rs)
				var chans, apps []struct {
					ID   string `json:"id"`
					Name string `json:"name"`
				}
				if err := a.request(ctx, http.MethodGet, "/channels", &chans); err != nil {
					return err
				}
				if err := a.request(ctx, http.MethodGet, "/applications", &apps); err != nil {
					return err
				}
				for _, c := range chans {
					left = append(left, name+": channel "+c.Name)
				}
				for _, ap := range apps {
					left = append(left, name+": ARI application "+ap.Name)
				}
				a.http.CloseIdleConnections()
			}
		}
		if len(left) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the lab is not idle: %s", strings.Join(left, "; "))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// established counts the TCP connections of this machine (its network
// namespace) that are established to addr (host:port) as clients.
func established(addr string) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	var p int
	if _, err := fmt.Sscan(port, &p); err != nil {
		return 0
	}
	want := fmt.Sprintf(":%04X", p)
	n := 0
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st: a client's remote port is the
			// server's; 01 is ESTABLISHED.
			if len(f) > 3 && strings.HasSuffix(f[2], want) && f[3] == "01" {
				n++
			}
		}
	}
	return n
}
