// Package controller is the heart of callctl: it owns each call a media server
// hands over, routes it with the pure routing core, dials, counts channels and
// writes the call record. It knows calls, not protocols: media servers, the
// limiter and the record sink are interfaces defined here and
// implemented by adapters.
package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callctl/callctl/controller/accounting"
	"github.com/callctl/callctl/controller/hunt"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/controller/routing"
	"github.com/callctl/callctl/internal/aside"
)

// Options configure an Engine.
type Options struct {
	// Node is this controller node's id, written in records and hold ids.
	Node    string
	Limiter accounting.Limiter
	Records RecordSink
	// Stories link a transferred call's record to the call it came from
	// (shared by the nodes of a cluster); nil links nothing.
	Stories Stories
	Logger  *slog.Logger
	Metrics *Metrics
	// LegGrace is how long the engine waits, after a call ends, for its
	// connected leg to report its own end before releasing its count anyway.
	LegGrace time.Duration
	// Now is the clock (tests may fix it).
	Now func() time.Time
}

// Engine runs calls.
type Engine struct {
	opt    Options
	log    *slog.Logger
	router atomic.Pointer[routing.Router]

	mu     sync.Mutex
	active map[string]*callState
	// stories link a channel's calls: a transfer of it to the call before.
	stories Stories
	wg      sync.WaitGroup
	// stopCtx is cancelled when the engine must end every call now: ringing
	// legs follow it through context.AfterFunc, connected calls watch it
	// where they wait; no goroutine per call watches it.
	stopCtx  context.Context
	stopNow  context.CancelFunc
	draining atomic.Bool
}

type callState struct {
	call     Call
	start    time.Time
	route    string
	answered string
	// org, callerOrg and billing say whose call it is (who may see it).
	org, callerOrg, billing string
	// handedOff: the call runs in the media server's own dialplan (a
	// feature code, park, voicemail) and stays counted until it ends.
	handedOff bool
}

// CallView is what an operator sees of an active call.
type CallView struct {
	ID       string    `json:"call_id"`
	Server   string    `json:"server"`
	Caller   string    `json:"caller"`
	Dialed   string    `json:"dialed"`
	Route    string    `json:"route"`
	Answered string    `json:"answered_by,omitempty"`
	Start    time.Time `json:"start"`
	// Org is the callee's org, CallerOrg the caller's, Billing the account
	// billed: an org's admins see the calls that name their org.
	Org       string `json:"org,omitempty"`
	CallerOrg string `json:"caller_org,omitempty"`
	Billing   string `json:"billing,omitempty"`
	// HandedOff: the call was handed to the media server's own dialplan
	// (a feature code, park, voicemail); its counted legs stay counted
	// until its channel ends.
	HandedOff bool `json:"handed_off,omitempty"`
}

// Calls lists the active calls.
func (e *Engine) Calls() []CallView {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]CallView, 0, len(e.active))
	for id, cs := range e.active {
		info := cs.call.Info()
		out = append(out, CallView{ID: id, Server: info.Server, Caller: info.Caller, Dialed: info.Dialed,
			Route: cs.route, Answered: cs.answered, Start: cs.start, Org: cs.org, CallerOrg: cs.callerOrg, Billing: cs.billing,
			HandedOff: cs.handedOff})
	}
	return out
}

// note changes what operators see of an active call.
func (e *Engine) note(id string, f func(*callState)) {
	e.mu.Lock()
	if cs := e.active[id]; cs != nil {
		f(cs)
	}
	e.mu.Unlock()
}

// NewEngine returns an engine running plan.
func NewEngine(plan *provision.Plan, opt Options) *Engine {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.LegGrace == 0 {
		opt.LegGrace = 10 * time.Second
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Node == "" {
		opt.Node = "node"
	}
	e := &Engine{opt: opt, log: opt.Logger, active: map[string]*callState{}, stories: opt.Stories}
	if e.stories == nil {
		e.stories = noStories{}
	}
	e.stopCtx, e.stopNow = context.WithCancel(context.Background())
	e.router.Store(routing.New(plan))
	return e
}

// SetPlan swaps in a new plan atomically. Calls in progress keep the plan
// they were routed with; new calls get the new one.
func (e *Engine) SetPlan(plan *provision.Plan) {
	e.router.Store(routing.New(plan))
}

// Plan is the plan new calls are routed with.
func (e *Engine) Plan() *provision.Plan { return e.router.Load().Plan }

// Active is the number of calls being handled.
func (e *Engine) Active() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.active)
}

// errRingTimeout ends an attempt whose target rang for its ring timeout.
var errRingTimeout = errors.New("ring timeout")

// ErrDraining is returned by Handle when the engine takes no new calls.
var ErrDraining = errors.New("controller is draining: no new calls")

// Drain stops taking new calls and waits until the active ones end or ctx
// does; then it ends what is left (SIGTERM: drain; a second signal: now).
func (e *Engine) Drain(ctx context.Context) error {
	e.draining.Store(true)
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		left := e.Active()
		e.Stop()
		<-done
		return fmt.Errorf("drain: %d calls ended by shutdown: %w", left, ctx.Err())
	}
}

// Stop ends every active call now and waits for their handlers to return.
func (e *Engine) Stop() {
	e.draining.Store(true)
	e.stopNow()
	e.wg.Wait()
}

// NewID returns a random UUID (version 4), the form media servers use for
// channel ids.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// Handle owns call until it ends: route, count, dial, bridge, record. It
// blocks for the whole call and never panics on what the media server does.
//
// The goroutine calling Handle mostly waits: what takes a deep stack before
// the call's end (routing, dialing, logging) runs aside (package aside), so
// that this goroutine, the one that lasts as long as the call, keeps its
// first 2 KiB stack while the call is up.
func (e *Engine) Handle(ms MediaServer, call Call) error {
	var c *run
	var err error
	aside.Do(func() { c, err = e.begin(ms, call) })
	if c == nil {
		return err
	}
	defer e.end(c)
	// A panic in finish itself (a record sink's, a limiter's) still costs
	// only this call; one in the call's handling is recovered inside handle,
	// before the record is written.
	defer c.recoverPanic()
	return c.handle()
}

// begin takes the call on, or says why not.
func (e *Engine) begin(ms MediaServer, call Call) (*run, error) {
	id := call.ID()
	log := e.log.With("call", id)
	if e.draining.Load() {
		log.Warn("refusing call: controller is draining")
		e.opt.Metrics.refuse("draining")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = call.Reject(ctx, routing.CauseOutOfOrder)
		return nil, ErrDraining
	}
	e.mu.Lock()
	if _, dup := e.active[id]; dup {
		e.mu.Unlock()
		// The media server handed over a call callctl already owns (after a
		// transfer, a second hand-off of the same channel): the first owner
		// keeps it.
		log.Info("call already owned by this node; second hand-off left to the owner")
		return nil, nil
	}
	e.active[id] = &callState{call: call, start: e.opt.Now()}
	e.wg.Add(1)
	e.mu.Unlock()
	if m := e.opt.Metrics; m != nil {
		m.active.Inc()
	}
	return &run{e: e, ms: ms, call: call, log: log, router: e.router.Load()}, nil
}

// end lets the call go.
func (e *Engine) end(c *run) {
	e.mu.Lock()
	delete(e.active, c.call.ID())
	e.mu.Unlock()
	if m := e.opt.Metrics; m != nil {
		m.active.Dec()
	}
	e.wg.Done()
}

// recoverPanic makes a bug cost one call, not the node and every other call.
func (c *run) recoverPanic() {
	if r := recover(); r != nil {
		c.log.Error("call handler panicked", "panic", fmt.Sprint(r))
		c.reject(routing.CauseFailure, fmt.Sprint("internal error: ", r))
	}
}

// run is one call being handled.
type run struct {
	e      *Engine
	ms     MediaServer
	call   Call
	log    *slog.Logger
	router *routing.Router

	ctx  context.Context // the call's: done when the caller is gone
	held []string
	rec  Record
	dec  routing.Decision
	// answered is set once a target took the call.
	answered answered
	ended    bool
	// refused says which limit refused a leg the call dialed (or that the
	// counts were unavailable), for the record's reason.
	refused string
	// fwd follows the call's forwards (forward.go) while it is dialed
	// (dialUp): nil since.
	fwd *forwardState
	// stepFrom is when callctl could decide the next dial: the call's
	// arrival, then each dialed member's outcome reaching it.
	stepFrom time.Time
	// joined: the media server joined the caller's channel to another call
	// (ErrCallJoined) while callctl was refusing it.
	joined bool
}

func (c *run) handle() error {
	// The call's own context is used as is: a context per call derived from
	// it (and from the engine's) would cost memory for the whole call. The
	// engine's stop is watched where the call waits.
	c.ctx = c.call.Context()
	defer c.finish()
	// Recovered before finish runs, so that the record and the metrics carry
	// the cause the caller got (NORMAL_TEMPORARY_FAILURE), not the clearing.
	defer c.recoverPanic()
	var wait func()
	aside.Do(func() { wait = c.dialUp() })
	if wait != nil {
		wait()
	}
	return nil
}

// dialUp routes, counts and dials the call up to where it waits for its
// end, and returns that wait (nil: the call is over).
func (c *run) dialUp() func() {
	c.fwd = new(forwardState)
	defer func() { c.fwd = nil }()
	if !c.decide() || !c.admit() {
		return nil
	}
	if c.dec.Kind == routing.Feature {
		if c.handoff() {
			return c.inDialplan
		}
		return nil
	}
	// A group nobody answered goes to its fallback as a forward (SPEC §3).
	if c.dialForwarding() {
		return c.connected
	}
	if !c.over() {
		c.nobodyAnswered()
	}
	if c.joined {
		// Not callctl's to refuse any more: counted until its channel ends.
		return c.awaitEnd
	}
	return nil
}

// awaitEnd waits for the caller's channel to end or the engine to stop.
func (c *run) awaitEnd() {
	select {
	case <-c.ctx.Done():
	case <-c.e.stopCtx.Done():
	}
}

// decide routes the call and starts its record; false when it is rejected.
func (c *run) decide() bool {
	info := c.call.Info()
	// Set here, not in handle, whose frame stays on the stack for the call.
	c.stepFrom = info.Arrived
	if c.stepFrom.IsZero() {
		c.stepFrom = time.Now()
	}
	start := info.Start
	if start.IsZero() {
		start = c.e.opt.Now()
	}
	c.rec = Record{ID: NewID(), CallID: c.call.ID(), Node: c.e.opt.Node, Server: info.Server, Caller: info.Caller,
		CallerName: info.CallerName, Dialed: info.Dialed, Start: start, PlanVersion: c.router.Plan.Version,
		Attempts: []hunt.Attempt{}, Legs: []accounting.Leg{}}
	c.rec.Transfer = info.Transfer.String()
	// The request is decide's own: kept in the run, it would stay for the
	// whole call.
	req := routing.Request{Server: info.Server, Source: info.Source, Caller: info.Caller, CallerName: info.CallerName,
		Domain: info.Domain, MarkOrg: info.MarkOrg, Dialed: info.Dialed, Transfer: info.Transfer,
		OriginalCaller: info.OriginalCaller, OriginalName: info.OriginalName, Withheld: info.Withheld}
	if info.Transfer != routing.NoTransfer {
		c.transferredBy(&info, &req)
	} else if info.ConsultationOf != "" {
		c.consultation(info.ConsultationOf, &req)
	}
	c.router.RouteInto(&req, &c.dec)
	d := &c.dec
	c.fillRecord()
	org := c.rec.Org
	if org == "" {
		org = c.rec.CallerOrg
	}
	c.beginStory(info.Server, org)
	kind := d.Kind.String()
	c.e.note(c.call.ID(), func(cs *callState) {
		cs.route, cs.org, cs.callerOrg, cs.billing = kind, c.rec.Org, c.rec.CallerOrg, c.rec.Billing
	})
	if d.Kind == routing.Rejected {
		c.log.Info("call rejected", "server", info.Server, "caller", info.Caller, "dialed", info.Dialed,
			"origin", d.Origin, "cause", d.Cause, "reason", d.Reason)
		c.e.opt.Metrics.refuse(d.Cause.String())
		c.reject(d.Cause, d.Reason)
		return false
	}
	c.log.Info("call routed", "server", info.Server, "origin", d.Origin, "caller", info.Caller, "dialed", info.Dialed,
		"route", d.Kind, "org", orgID(d.Org), "targets", d.HuntSize(), "caller_id", d.Target.CallerID, "withheld", d.Withheld,
		"billing", d.Billing, "in_legs", d.InLegs.String(), "emergency", d.Emergency)
	if d.CallerIDWarning != "" {
		c.log.Warn("caller id not usable", "warning", d.CallerIDWarning)
	}
	return true
}

// transferredBy finds who transferred the call, the record of the call it
// came from, and for a transfer no user made, the org of that call.
func (c *run) transferredBy(info *CallInfo, req *routing.Request) {
	from := info.TransferredFrom
	if from == "" {
		from = c.call.ID()
	}
	st, ok := c.storyOf(info.Server, from)
	if ok {
		c.rec.TransferFrom = st.Record
		req.TransferOrg = st.Org
	}
	req.Previous = info.Previous
	if info.Transfer == routing.IVR {
		return
	}
	if c.router.Plan.Caller(info.Server, info.Domain, info.Caller) != nil {
		// The media server names the user who transferred it.
		c.rec.TransferBy = info.Caller
		return
	}
	if ok && st.User != "" {
		// The media server does not say which user transferred the call: the
		// phone it was connected to did (its REFER sent this channel back).
		req.Caller, req.Domain = st.User, st.Domain
		c.rec.TransferBy = st.User
		c.log.Info("transfer by the phone the call was connected to", "transferer", st.User)
	}
}

// consultation routes a call that a phone's own channel originated to
// consult someone before handing its party over (FreeSWITCH's att_xfer): as
// dialed by that phone's user, in their org and outbound rule, showing them
// (SPEC §4, attended), and linked to the call whose party it holds. The
// channel's caller id is the held party's, not the user's; who the user is
// callctl knows only from the leg it connected itself, so a leg it did not
// connect to a user names nobody.
func (c *run) consultation(leg string, req *routing.Request) {
	st, ok := c.storyOfLeg(c.rec.Server, leg)
	if !ok || st.User == "" {
		c.log.Warn("call originated by a channel callctl did not connect to a user: routed as its caller id says", "leg", leg)
		return
	}
	req.Transfer = routing.Attended
	req.OriginalCaller, req.OriginalName = req.Caller, req.CallerName
	req.Caller, req.CallerName, req.Domain = st.User, "", st.Domain
	req.TransferOrg = st.Org
	c.rec.Caller, c.rec.CallerName = st.User, ""
	c.rec.Transfer = routing.Attended.String()
	c.rec.TransferFrom, c.rec.TransferBy = st.Record, st.User
	c.log.Info("consultation of an attended transfer: routed as dialed by the phone that holds the party",
		"transferer", st.User, "leg", leg, "from_record", st.Record)
}

// admit counts the legs a call costs on arrival (PSTN or trunk inbound);
// false when a limit refuses it.
func (c *run) admit() bool {
	d := &c.dec
	for i := 0; i < d.InLegs.Len(); i++ {
		// The hold is this call's, not the channel's: a channel handed over
		// again after a transfer may reach another node while the node of
		// the call before still holds (and then releases) that call's.
		id, leg := c.call.ID()+"/in-"+c.rec.ID+"/"+strconv.Itoa(i), d.InLegs.At(i)
		err := c.acquire(id, c.call.ID(), leg)
		if err != nil {
			err = c.admitPastLimit(id, leg, err)
		}
		if err != nil {
			reason := "counts_unavailable"
			if s := refusalScope(err); s != "unavailable" {
				reason = "limit_" + s
			}
			c.e.opt.Metrics.refuse(reason)
			c.reject(routing.CauseCongestion, err.Error())
			return false
		}
	}
	return true
}

// handoff returns a feature code to the media server's dialplan; true when
// it did. The call stays callctl's (SPEC §4): what it counts stays counted
// until its channel ends (inDialplan), so a parked call or one in voicemail
// cannot take a server over its limit.
func (c *run) handoff() bool {
	code := c.dec.Target.Number
	c.log.Info("feature code: returning the call to the media server's dialplan", "code", code)
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	if err := c.call.Handoff(ctx, code); err != nil {
		c.log.Warn("feature hand-off failed", "err", err)
		c.reject(routing.CauseFailure, err.Error())
		return false
	}
	c.rec.HangupCause = "HANDOFF"
	c.rec.HandedOff = true
	c.e.note(c.call.ID(), func(cs *callState) { cs.handedOff = true })
	c.log.Info("handed off: in the dialplan, counted until its channel ends", "in_legs", c.dec.InLegs.String())
	return true
}

// inDialplan waits for the end of a handed-off call: its channel's end, or
// the engine ending every call now (then it is hung up).
func (c *run) inDialplan() {
	select {
	case <-c.ctx.Done():
		return
	case <-c.e.stopCtx.Done():
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.call.Hangup(ctx, routing.CauseNormal); err != nil && !errors.Is(err, ErrCallGone) {
		c.log.Warn("hanging up a handed-off call at shutdown failed", "err", err)
	}
}

// nobodyAnswered ends a call no target answered: busy for a hunt (SPEC §3),
// the target's own outcome for a single one.
func (c *run) nobodyAnswered() {
	cause := c.unansweredCause()
	c.log.Info("nobody answered", "attempts", len(c.rec.Attempts), "cause", cause)
	c.reject(cause, c.unansweredReason())
}

// unansweredReason says why no target took the call: the limit that refused
// its legs when one did (SPEC §5), so that a refusal at a limit is not read
// as nobody answering.
func (c *run) unansweredReason() string {
	if c.refused == "" {
		return "nobody answered"
	}
	for _, a := range c.rec.Attempts {
		if a.Outcome != hunt.Congested || a.Cause != c.refused {
			return "nobody answered; " + c.refused
		}
	}
	return c.refused
}

// over says the call is over for the engine: the caller left or the engine
// stops.
func (c *run) over() bool { return c.ctx.Err() != nil || c.e.stopCtx.Err() != nil }

func orgID(o *provision.OrgInfo) string {
	if o == nil {
		return ""
	}
	return o.ID
}

func (c *run) fillRecord() {
	d := &c.dec
	c.rec.Origin = d.Origin.String()
	c.rec.Route = d.Kind.String()
	c.rec.Org = orgID(d.Org)
	c.rec.CallerOrg = orgID(d.CallerOrg)
	c.rec.Billing = d.Billing
	c.rec.External = d.External
	c.rec.CallerID = d.Target.CallerID
	c.rec.Withheld = d.Withheld
	c.rec.Reason = d.Reason
}

// causeFor maps the outcome of a single target to the cause the caller gets.
func causeFor(o hunt.Outcome) routing.Cause {
	switch o {
	case hunt.Busy:
		return routing.CauseBusy
	case hunt.NoAnswer:
		return routing.CauseNoAnswer
	case hunt.Rejected:
		return routing.CauseRejected
	case hunt.Congested:
		return routing.CauseCongestion
	case hunt.NotRegistered, hunt.Unreachable:
		return routing.CauseNoAnswer
	}
	return routing.CauseFailure
}

// dialAll rings members one after the other; true when one answered and the
// call has ended since (everything recorded).
func (c *run) dialAll(members []routing.Target) bool {
	if hd, ok := c.oneGo(members); ok {
		if answered, ok := c.dialAtOnce(hd, members); ok {
			return answered
		}
	}
	h := hunt.New(len(members))
	for {
		i, ok := h.Next()
		if !ok {
			break
		}
		if c.over() {
			h.Abort()
			break
		}
		t := &members[i]
		c.fwd.refusal = nil
		a, leg, held := c.attempt(t)
		h.Report(a)
		c.rec.Attempts = append(c.rec.Attempts, a)
		if m := c.e.opt.Metrics; m != nil {
			m.attempts.WithLabelValues(a.Outcome.String()).Inc()
		}
		if a.Outcome != hunt.Answered {
			c.release(held)
			if c.leavesHunt(t, &a) {
				break
			}
			continue
		}
		c.answered = answered{leg: leg, held: held}
		c.note(t)
		return true
	}
	return false
}

// answered is the leg that took the call, and the holds counting it.
type answered struct {
	leg  Leg
	held []string
}

// attempt rings one target. It returns the counted holds of the attempt,
// still held when it answered.
func (c *run) attempt(t *routing.Target) (hunt.Attempt, Leg, []string) {
	a := hunt.Attempt{Target: t.Number, Start: c.e.opt.Now()}
	if t.Server != nil {
		a.Server = t.Server.Name
	}
	log := c.log.With("target", t.Number)
	if c.unregistered(t, &a, log) {
		return a, nil, nil
	}
	dial := t.DialString()
	legID := NewID()
	var held []string
	for i := 0; i < t.Legs.Len(); i++ {
		lg := t.Legs.At(i)
		if lg.Remote {
			continue
		}
		hid := c.call.ID() + "/" + legID + "/" + strconv.Itoa(i)
		if err := c.acquire(hid, legID, lg); err != nil {
			c.release(held)
			a.Outcome = hunt.Congested
			a.Cause = err.Error()
			if c.refused == "" {
				c.refused = a.Cause
			}
			c.fwd.refusal = err
			return a, nil, nil
		}
		held = append(held, hid)
	}
	spec := c.dialSpec(t, legID)
	log.Info("dialing", "leg", legID, "endpoint", dial, "caller_id", spec.CallerIDNumber, "timeout", t.RingTimeout)
	// Ringing ends when the caller leaves, the engine stops, or the ring
	// timeout passes: callctl times the ring itself, because media servers
	// count it in whole seconds (FreeSWITCH's originate_timeout can end a
	// 3 s ring after 2.1 s); their own timer stays as a backstop. This
	// context lives only while the target rings.
	var dctx context.Context
	var cancel context.CancelFunc
	if t.RingTimeout > 0 {
		dctx, cancel = context.WithTimeoutCause(c.ctx, t.RingTimeout, errRingTimeout)
	} else {
		dctx, cancel = context.WithCancel(c.ctx)
	}
	defer cancel()
	defer context.AfterFunc(c.e.stopCtx, cancel)()
	leg, res, err := c.call.Dial(dctx, spec)
	a.Ring = c.e.opt.Now().Sub(a.Start)
	c.dialStepDone(&res)
	a.Outcome = res.Outcome
	a.Cause = res.Cause
	switch {
	case dctx.Err() != nil && res.Outcome != hunt.Answered && context.Cause(dctx) == errRingTimeout && c.ctx.Err() == nil:
		a.Outcome = hunt.NoAnswer
		a.Cause = "NO_ANSWER"
		log.Info("dial result: ring timeout, leg cancelled", "leg", legID, "outcome", a.Outcome,
			"ring", a.Ring.Round(time.Millisecond))
	case dctx.Err() != nil && res.Outcome != hunt.Answered:
		a.Outcome = hunt.Cancelled
		log.Info("caller left while ringing: leg cancelled", "leg", legID)
	case err != nil:
		if a.Outcome == hunt.Pending || a.Outcome == hunt.Answered {
			a.Outcome = hunt.Failed
		}
		if a.Cause == "" {
			a.Cause = err.Error()
		}
		log.Warn("dial failed", "leg", legID, "err", err)
	case a.Outcome == hunt.Answered && leg == nil:
		a.Outcome = hunt.Failed
		a.Cause = "answered without a leg"
	default:
		log.Info("dial result", "leg", legID, "outcome", a.Outcome, "cause", a.Cause, "ring", a.Ring.Round(time.Millisecond))
	}
	return a, leg, held
}

// unregistered says whether t is skipped without ringing because it is not
// registered (provisioned so, or the media server says so), filling in a.
func (c *run) unregistered(t *routing.Target, a *hunt.Attempt, log *slog.Logger) bool {
	if !t.Registered {
		a.Outcome = hunt.NotRegistered
		a.Cause = "provisioned as not registered"
		log.Info("member skipped: not registered (provisioning)")
		return true
	}
	if t.Trunk != nil {
		return false
	}
	dial := t.DialString()
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	ok, err := c.ms.Registered(ctx, dial)
	cancel()
	if err != nil {
		// Unknown registration is not "not registered": ring it and let the
		// media server say.
		log.Warn("registration check failed; ringing anyway", "endpoint", dial, "err", err)
		return false
	}
	if !ok {
		a.Outcome = hunt.NotRegistered
		a.Cause = "not registered"
		log.Info("member skipped: not registered", "endpoint", dial)
		return true
	}
	return false
}

// dialSpec is what to ring for t, as leg legID.
func (c *run) dialSpec(t *routing.Target, legID string) DialSpec {
	// The name goes with either number: a target over a trunk shows the
	// prefixed number and the same caller's name (SPEC §4).
	spec := DialSpec{LegID: legID, Target: t.DialString(), CallerIDNumber: t.CallerID, CallerIDName: c.dec.CallerIDName,
		Timeout: t.RingTimeout, Trunk: t.Trunk != nil, Withheld: c.dec.Withheld}
	if t.Trunk != nil && t.Trunk.Peer != nil {
		spec.MarkOrg = orgID(c.dec.Org)
		if t.Kind == provision.TargetSIP && c.dec.Org != nil {
			if m := c.dec.Org.SIPNumbers[t.Number]; m != nil {
				spec.MarkOrg = m.Org.ID
			}
		}
	}
	return spec
}

// note records the answer.
func (c *run) note(t *routing.Target) {
	now := c.e.opt.Now()
	c.rec.Answer = &now
	c.rec.Answered = t.Number
	if t.Kind == provision.TargetExtension && t.Server != nil && t.Server.Name == c.rec.Server && c.dec.Org != nil {
		c.connectStory(t.Number, c.dec.Org.Domain, c.answered.leg.ID())
	}
	// After the story: a call shown as answered is one a transfer by the
	// user who took it can be linked to.
	c.e.note(c.call.ID(), func(cs *callState) { cs.answered = t.Number })
	c.rec.CallerID = t.CallerID
	c.log.Info("answered: connected", "target", t.Number, "leg", c.answered.leg.ID())
}

// connected waits for the end of an answered call (noting transfers of it
// meanwhile).
func (c *run) connected() {
	leg := c.answered.leg
	var noted <-chan struct{}
	tn, _ := c.call.(TransferNoter)
	if tn != nil {
		noted = tn.Transferred()
	}
	for waiting := true; waiting; {
		select {
		case <-noted:
			noted = nil
			aside.Do(func() { c.noteTransfer(tn.TransferNote()) })
		case <-c.ctx.Done():
			waiting = false
		case <-leg.Ended():
			waiting = false
		case <-c.e.stopCtx.Done():
			waiting = false
		}
	}
	c.afterConnected()
}

// afterConnected ends the caller's side when the leg went first (or the
// engine stops), then releases the leg's counts once its channel is gone.
// An attended transfer joins channels of two calls without callctl (SPEC
// §4, §5): the caller's channel joined to another call is not hung up and
// stays counted until it ends; the leg of a call whose caller was replaced
// stays counted until the leg ends. A frame of its own: the one that waits
// for the whole call stays small, so the goroutine's stack shrinks back to
// a few KiB.
func (c *run) afterConnected() {
	leg := c.answered.leg
	joined := false
	if c.call.Context().Err() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.call.Hangup(ctx, routing.CauseNormal)
		cancel()
		switch {
		case errors.Is(err, ErrCallJoined):
			joined = true
			c.log.Info("the caller was joined to another call (an attended transfer): counted until its channel ends")
		case err != nil && !errors.Is(err, ErrCallGone):
			c.log.Warn("hangup after the leg ended failed", "err", err)
		}
	}
	replaced := c.call.EndCause() == CauseAttendedTransfer
	if replaced {
		c.attendedTransfer()
	}
	select {
	case <-leg.Ended():
	default:
		if replaced {
			// The leg lives on, joined to the transferred party: its count
			// goes when its channel does.
			select {
			case <-leg.Ended():
			case <-c.e.stopCtx.Done():
				c.log.Warn("engine stopping: releasing the count of a leg joined by an attended transfer", "leg", leg.ID())
			}
			break
		}
		// Its count is released when the leg's channel is gone (SPEC §5),
		// which the media server has not said yet.
		c.log.Debug("waiting for the connected leg's end before releasing its count", "leg", leg.ID(), "grace", c.e.opt.LegGrace)
		timer := time.NewTimer(c.e.opt.LegGrace)
		select {
		case <-leg.Ended():
		case <-timer.C:
			c.log.Warn("connected leg did not report its end; releasing its count", "leg", leg.ID())
		}
		timer.Stop()
	}
	c.release(c.answered.held)
	if joined {
		select {
		case <-c.ctx.Done():
		case <-c.e.stopCtx.Done():
		}
	}
}

// attendedTransfer records that this call's caller, a phone user, was
// replaced by the party of the call it held (a REFER with Replaces): this
// call's target now talks to that party, shown as the transferring user it
// was called by (SPEC §4). The record links to the held call's.
func (c *run) attendedTransfer() {
	c.rec.Transfer = routing.Attended.String()
	u := c.dec.Caller
	if u == nil {
		return
	}
	c.rec.TransferBy = u.Ext
	if st, ok := c.storyConnectedTo(c.rec.Server, u.Org.Domain, u.Ext); ok {
		c.rec.TransferFrom = st.Record
	}
	c.log.Info("attended transfer: the caller was replaced; the connected leg stays counted until it ends",
		"transferer", u.Ext, "from_record", c.rec.TransferFrom)
}

// noteTransfer records that a transfer made this connected call carry
// another call's party: its record names the kind, links to the record of
// the call the party came from and names who transferred it (SPEC §4): the
// phone that call was connected to, unless the media server names another.
func (c *run) noteTransfer(n TransferNote) {
	if c.rec.Transfer != "" {
		return
	}
	switch n.Kind {
	case routing.Attended:
		c.rec.Transfer = "attended"
	case routing.Blind:
		c.rec.Transfer = "blind"
	default:
		return
	}
	by := n.By
	if st, ok := c.storyOf(c.rec.Server, n.FromCall); ok {
		c.rec.TransferFrom = st.Record
		if by == "" {
			by = st.User
		}
	}
	c.rec.TransferBy = by
	c.log.Info("transfer: the call now carries another call's party", "kind", c.rec.Transfer, "from_call", n.FromCall,
		"from_record", c.rec.TransferFrom, "by", by)
}

// dialStepDone times a dialed member's step from the timestamps its result
// carries: setup from when callctl could decide to dial it to the request
// leaving, member from then to its outcome or answer reaching callctl. The
// next step is timed from that outcome.
func (c *run) dialStepDone(res *DialResult) {
	if res.Sent.IsZero() {
		return
	}
	if m := c.e.opt.Metrics; m != nil {
		m.dialStep.WithLabelValues("setup").Observe(res.Sent.Sub(c.stepFrom).Seconds())
		if !res.At.IsZero() {
			m.dialStep.WithLabelValues("member").Observe(res.At.Sub(res.Sent).Seconds())
		}
	}
	c.stepFrom = res.At
	if c.stepFrom.IsZero() {
		c.stepFrom = time.Now()
	}
}

func (c *run) acquire(id, channel string, leg accounting.Leg) error {
	return c.hold(id, channel, leg, c.limitsOf(leg))
}

// limitsOf are the limits leg is held to.
func (c *run) limitsOf(leg accounting.Leg) accounting.Limits {
	limits := accounting.Limits{}
	p := c.router.Plan
	if s := p.Server(leg.Server); s != nil {
		limits.Server = s.ChannelLimit
	}
	if o := p.Org(leg.Org); o != nil {
		limits.Org = o.ChannelLimit
	}
	if c.dec.Emergency {
		// An emergency call is counted, never refused by a limit.
		limits = accounting.Limits{}
	}
	return limits
}

// hold counts leg within limits.
func (c *run) hold(id, channel string, leg accounting.Leg, limits accounting.Limits) error {
	lim := c.e.opt.Limiter
	if lim == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := lim.Acquire(ctx, accounting.Hold{ID: id, Leg: leg, Channel: channel, Limit: limits})
	if err != nil && c.dec.Emergency {
		// Nor by counts that cannot be reached: it goes out uncounted.
		c.log.Warn("emergency call placed although its leg could not be counted", "server", leg.Server, "org", leg.Org, "err", err)
		return nil
	}
	if err != nil {
		if m := c.e.opt.Metrics; m != nil {
			m.refusals.WithLabelValues(refusalScope(err)).Inc()
		}
		c.log.Warn("counted leg refused", "server", leg.Server, "org", leg.Org, "kind", leg.Kind, "err", err)
		return fmt.Errorf("leg %s on %s: %w", leg.Kind, leg.Server, err)
	}
	c.held = append(c.held, id)
	c.rec.Legs = append(c.rec.Legs, leg)
	return nil
}

func refusalScope(err error) string {
	var le *accounting.LimitError
	if errors.As(err, &le) {
		return le.Scope
	}
	return "unavailable"
}

func (c *run) release(ids []string) {
	for _, id := range ids {
		c.releaseOne(id)
	}
}

func (c *run) releaseOne(id string) {
	for i, h := range c.held {
		if h == id {
			c.held = append(c.held[:i], c.held[i+1:]...)
			break
		}
	}
	lim := c.e.opt.Limiter
	if lim == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := lim.Release(ctx, id); err != nil {
		// Reconciliation releases it once its channel is found gone; say so.
		c.log.Error("releasing a counted leg failed; it is released once its channel is found gone", "hold", id, "err", err)
	}
}

func (c *run) reject(cause routing.Cause, reason string) {
	if c.rec.Reason == "" {
		c.rec.Reason = reason
	}
	c.rec.HangupCause = cause.String()
	if c.call.Context().Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.call.Reject(ctx, cause)
	switch {
	case errors.Is(err, ErrCallJoined):
		c.joined = true
		c.log.Info("not refused: the media server joined the caller to another call; counted until its channel ends")
	case err != nil && !errors.Is(err, ErrCallGone):
		c.log.Warn("reject failed", "cause", cause, "err", err)
	}
}

// finish releases whatever is still held, and writes the record once.
func (c *run) finish() {
	if c.ended {
		return
	}
	c.ended = true
	c.release(append([]string(nil), c.held...))
	c.rec.End = c.e.opt.Now()
	c.endStory()
	if c.rec.HangupCause == "" {
		c.rec.HangupCause = c.call.EndCause()
	}
	if c.rec.HangupCause == "" {
		c.rec.HangupCause = routing.CauseNormal.String()
	}
	if m := c.e.opt.Metrics; m != nil {
		outcome := "unanswered"
		switch {
		case c.rec.Answered != "":
			outcome = "answered"
		case c.rec.Route == routing.Rejected.String():
			outcome = "rejected"
		}
		m.calls.WithLabelValues(c.rec.Route, outcome, c.rec.HangupCause).Inc()
	}
	c.log.Info("call record", "route", c.rec.Route, "org", c.rec.Org, "billing", c.rec.Billing,
		"attempts", len(c.rec.Attempts), "answered_by", c.rec.Answered, "hangup_cause", c.rec.HangupCause,
		"duration", c.rec.End.Sub(c.rec.Start).Round(time.Millisecond))
	if c.e.opt.Records == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.e.opt.Records.Write(ctx, &c.rec); err != nil {
		c.log.Error("writing the call record failed", "err", err)
	}
}
