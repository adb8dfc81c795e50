package asterisk

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/CyCoreSystems/ari/v5"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/hunt"
	"github.com/callctl/callctl/controller/routing"
)

// markVariable reads the org mark another server's callctl puts on a trunk
// call (SPEC §2: the receiving node trusts it only from a known trunk).
const (
	markHeader = "X-Callctl-Org"
	markRead   = "PJSIP_HEADER(read," + markHeader + ")"
	markAdd    = "PJSIP_HEADER(add," + markHeader + ")"
	// presSet restricts the presentation of a leg's caller ID.
	presSet = "CALLERID(pres)"
)

// call is one caller channel in the Stasis application, and the legs
// callctl originated for it.
type call struct {
	cl   *Client
	id   string
	info controller.CallInfo
	// lg is made on the first line logged about the call: most calls log
	// nothing here (the engine logs them), and a logger per call costs.
	lg     *slog.Logger
	lgOnce sync.Once

	ctx    context.Context
	cancel context.CancelFunc

	mu          sync.Mutex
	gone        bool
	endCause    string
	hangupCause int
	handedOff   bool
	// watched: the application subscribed to the caller's channel before
	// handing it to the dialplan, so its ChannelDestroyed still arrives after
	// StasisEnd, and the call ends only then.
	watched bool
	lost    bool // gone for callctl because the server is lost
	// sentCause is the cause callctl hung the caller up with (0: none yet).
	// Asterisk keeps the cause of the last hangup request, so a second one
	// sent before the channel is gone would change what the caller gets.
	sentCause int
	// callerReplaced: a transfer took the caller's place in the bridge.
	callerReplaced bool
	// name is the caller channel's name (PJSIP/sipp-00000001), by which a
	// transfer names its transferer.
	name       string
	up         bool
	rung       bool
	bridge     string
	bridgeGone bool
	legs       []*leg
	standIns   []string
	finished   bool
	// xfer is the transfer (ari-only handling) this call carries out: its
	// caller is the ;2 half of the transfer's stand-in.
	xfer *ariTransfer
	// noted closes once an attended transfer linked this call with
	// another (note says which); see controller.TransferNoter.
	noted chan struct{}
	note  controller.TransferNote
	// hangupAsked: a hangup of the caller was requested (its StasisEnd is
	// then its end, not a move elsewhere in the dialplan).
	hangupAsked bool
	// prev is the call the caller's channel was in before the media server
	// sent it back (reenter.go); handled is done once the handler returned.
	prev    *call
	handled sync.WaitGroup
	// entry counts the times the caller's channel came back (0: the first
	// time in the application).
	entry int
	// left: the caller's channel left the application without a hangup.
	left bool
}

func newCall(cl *Client, ch *channelData, args []string, at time.Time) *call {
	c := &call{cl: cl, id: ch.ID, name: ch.Name, hangupCause: -1, noted: make(chan struct{})}
	c.info = controller.CallInfo{
		Server:     cl.cfg.Server,
		Source:     pjsipEndpoint(ch.Name),
		Caller:     ch.CallerNumber,
		CallerName: ch.CallerName,
		Dialed:     ch.Exten,
		Domain:     ch.Context,
		Start:      ch.Created,
		Arrived:    at,
	}
	// Stasis(app,<context>,<exten>) as the dialplan of dialplans/asterisk
	// (and the lab) passes them: the exten the caller dialed, before any
	// pattern match rewrote the channel's own. Asterisk splits application
	// arguments at commas, so a dialed "1000,user/3998" arrives as three
	// arguments: they are joined back, and the dialed-string gate refuses
	// the comma, rather than routing "1000".
	if len(args) >= 2 {
		c.info.Domain, c.info.Dialed = args[0], strings.Join(args[1:], ",")
	}
	if c.info.Start.IsZero() {
		c.info.Start = time.Now()
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// pjsipEndpoint is the endpoint of a PJSIP channel name
// (PJSIP/<endpoint>-<8 hex digits>); "" for other technologies.
func pjsipEndpoint(name string) string {
	rest, ok := strings.CutPrefix(name, "PJSIP/")
	if !ok {
		return ""
	}
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 {
		return ""
	}
	return rest[:i]
}

// logger is the call's logger, with call=<channel id> on every line.
func (c *call) logger() *slog.Logger {
	c.lgOnce.Do(func() { c.lg = c.cl.log.With("call", c.id) })
	return c.lg
}

func (c *call) ID() string                { return c.id }
func (c *call) Info() controller.CallInfo { return c.info }
func (c *call) Context() context.Context  { return c.ctx }
func (c *call) String() string            { return c.id }
func (c *call) rest() *restClient         { return c.cl.rest }
func (c *call) timeout() time.Duration    { return c.cl.cfg.RequestTimeout }
func (c *call) path(parts ...string) string {
	return "/channels/" + seg(c.id) + strings.Join(parts, "")
}
func (c *call) bg() (context.Context, func()) {
	return context.WithTimeout(context.Background(), c.timeout())
}

// EndCause is the caller channel's hangup cause once it is gone.
func (c *call) EndCause() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endCause
}

// readMark reads the org mark header of calls from endpoints that may send
// one. It runs before the handler sees the call.
func (c *call) readMark() {
	src := c.info.Source
	if src == "" || (c.cl.cfg.MarkFrom != nil && !c.cl.cfg.MarkFrom(src)) {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.timeout())
	defer cancel()
	var r struct {
		Value string `json:"value"`
	}
	err := c.rest().do(ctx, http.MethodGet, c.path("/variable"), url.Values{"variable": {markRead}}, nil, &r)
	switch {
	case statusOf(err) == http.StatusNotFound:
		return
	case err != nil:
		c.logger().Warn("reading the org mark failed", "source", src, "err", err)
		return
	}
	if r.Value == "" {
		return
	}
	if !validName(r.Value) {
		c.logger().Warn("ignoring a malformed org mark", "source", src, "mark", r.Value)
		return
	}
	c.info.MarkOrg = r.Value
}

// readTransfer recognises the ;2 half of the Local pair Asterisk creates
// for a blind transfer (core transfer handling: it re-enters Stasis through
// the dialplan with the transfer's destination). BLINDTRANSFER names the
// transferer's channel; if that is a party of one of callctl's calls, the
// call routes as dialed by the transferring user, passing the transferred
// party through (SPEC §4), and its channel counts as it did.
func (c *call) readTransfer() {
	if !strings.HasPrefix(c.name, "Local/") {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.timeout())
	defer cancel()
	var r struct {
		Value string `json:"value"`
	}
	err := c.rest().do(ctx, http.MethodGet, c.path("/variable"), url.Values{"variable": {"BLINDTRANSFER"}}, nil, &r)
	if err != nil || r.Value == "" {
		if err != nil && statusOf(err) != http.StatusNotFound {
			c.logger().Warn("reading the transfer variable failed", "err", err)
		}
		return
	}
	x, l := c.cl.findParty(r.Value)
	if x == nil {
		c.logger().Info("transfer by a channel callctl does not know", "transferer", r.Value)
		return
	}
	c.transferredFrom(x, l, r.Value)
}

// transferredFrom makes the call the blind transfer of a party of x by
// transferer (l, or x's caller when l is nil): it routes as dialed by the
// transferring user, passing the transferred party through (SPEC §4), and
// its channel counts as it did.
func (c *call) transferredFrom(x *call, l *leg, transferer string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	c.info.Transfer = routing.Blind
	c.info.TransferredFrom = x.id
	if l != nil {
		// The far end of x transferred x's caller. x's caller stays in x's
		// bridge, counted by x (its PSTN or trunk leg): this call counts
		// only the legs it opens itself, so it is not a call from x's
		// source.
		c.info.Caller, c.info.CallerName = l.number, ""
		c.info.OriginalCaller, c.info.OriginalName = x.info.Caller, x.info.CallerName
		c.info.Source = ""
	} else {
		// x's caller transferred its far end. That party's leg stays x's,
		// counted by x until its channel ends (a PSTN or trunk leg): this
		// call counts only the legs it opens itself, so it is not a call
		// from that leg's trunk either.
		c.info.Caller, c.info.CallerName = x.info.Caller, x.info.CallerName
		c.info.Source = ""
		for _, o := range x.legs {
			if o.isAnswered && !o.isEnded {
				c.info.OriginalCaller = o.number
			}
		}
	}
	c.logger().Info("blind transfer", "transferer", transferer, "from_call", x.id, "user", c.info.Caller,
		"transferred", c.info.OriginalCaller, "dialed", c.info.Dialed)
}

// Transferred and TransferNote are controller.TransferNoter.
func (c *call) Transferred() <-chan struct{} { return c.noted }

func (c *call) TransferNote() controller.TransferNote {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.note
}

// attendedFrom notes that an attended transfer linked this call with x:
// this call's connected party now talks to the party of x that the
// transferer (byLeg of x, or x's caller when nil) talked to.
func (c *call) attendedFrom(x *call, byLeg *leg) {
	by := ""
	if byLeg == nil {
		x.mu.Lock()
		by = x.info.Caller
		x.mu.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.noted:
		return
	default:
	}
	c.note = controller.TransferNote{Kind: routing.Attended, FromCall: x.id, By: by}
	close(c.noted)
}

// noteHangupRequest notes a hangup request about the caller, and keeps its
// cause when it has one.
func (c *call) noteHangupRequest(hasCause bool, cause int) {
	c.mu.Lock()
	c.hangupAsked = true
	if hasCause {
		c.hangupCause = cause
	}
	c.mu.Unlock()
}

// callerGone ends the call: the caller's channel left the application or
// was destroyed. cause is ChannelDestroyed's, -1 when unknown. Answered
// legs and the bridge are torn down unless a transfer put a stand-in
// channel into the bridge.
func (c *call) callerGone(cause int, at time.Time) {
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return
	}
	c.gone = true
	switch {
	case c.callerReplaced:
		c.endCause = "TRANSFERRED"
	case cause > 0:
		c.endCause = causeName(cause)
	case c.hangupCause > 0:
		c.endCause = causeName(c.hangupCause)
	default:
		c.endCause = causeName(causeNormal)
	}
	var legs []*leg
	var standIns []string
	bridge := ""
	if !c.callerReplaced {
		// Everything the caller was connected to goes with it, including
		// a transfer's stand-in (its other half is another call).
		for _, l := range c.legs {
			if l.isAnswered && !l.isEnded {
				legs = append(legs, l)
			}
		}
		standIns = append(standIns, c.standIns...)
		bridge = c.bridge
	}
	// A transfer put a stand-in in the caller's place: the party the caller
	// was talking to is now in the transfer, and its leg stays this call's
	// (counted, SPEC §5) until its channel ends. The call is over for
	// callctl only then (the engine waits on the leg).
	carriedOn := c.callerReplaced && len(c.liveLegs()) > 0
	c.mu.Unlock()
	if carriedOn {
		c.logger().Info("the caller left after a transfer took its place; the call's leg stays until its channel ends")
		return
	}
	c.cancel()
	if len(legs) > 0 || len(standIns) > 0 || bridge != "" {
		// The handler may be waiting on the connected leg: end it now.
		c.cl.background(func(context.Context) { c.cleanup(legs, standIns, bridge) })
	}
}

// lose ends the call because the server is lost: nothing will report its
// channels' ends any more.
func (c *call) lose(at time.Time) {
	c.mu.Lock()
	legs := append([]*leg(nil), c.legs...)
	c.mu.Unlock()
	for _, l := range legs {
		l.lost(at, false)
	}
	c.mu.Lock()
	if !c.gone {
		c.gone = true
		c.lost = true
		c.endCause = "ARI_SERVER_LOST"
	}
	c.mu.Unlock()
	c.cancel()
}

// teardown hangs legs up and deletes the bridge, once each; errors are
// logged (a channel that is already gone answers 404).
func (c *call) teardown(ctx context.Context, legs []*leg, bridge string, standIns ...string) {
	for _, id := range standIns {
		if err := c.cl.deleteChannel(ctx, id, causeNormal); err != nil && statusOf(err) != http.StatusNotFound {
			c.logger().Warn("hanging up a transfer's stand-in failed", "channel", id, "err", err)
		}
	}
	for _, l := range legs {
		if err := c.hangupLeg(ctx, l); err != nil {
			c.logger().Warn("hanging up a leg failed", "leg", l.id, "err", err)
		}
	}
	if bridge != "" {
		if err := c.removeBridge(ctx, bridge); err != nil {
			c.logger().Warn("deleting the bridge failed", "bridge", bridge, "err", err)
		}
	}
}

// cleanup is teardown that insists: ARI may answer 5xx for a while, and a
// leg or bridge left behind would live on in Asterisk.
func (c *call) cleanup(legs []*leg, standIns []string, bridge string) {
	for _, id := range standIns {
		c.persist("hanging up stand-in "+id, nil, func(ctx context.Context) error {
			err := c.cl.deleteChannel(ctx, id, causeNormal)
			if statusOf(err) == http.StatusNotFound {
				return nil
			}
			return err
		})
	}
	for _, l := range legs {
		c.mu.Lock()
		var done <-chan struct{} = l.endedCh
		if l.unknown || (l.endedClosed && !l.isEnded) {
			// Unknown: it may still be up. Replaced by a transfer's stand-in
			// that is gone now: the call no longer waits for it, but its
			// channel is still up in callctl's application, with nobody else
			// to end it.
			done = nil
		}
		c.mu.Unlock()
		c.persist("hanging up leg "+l.id, done, func(ctx context.Context) error { return c.hangupLeg(ctx, l) })
	}
	if bridge != "" {
		c.persist("deleting bridge "+bridge, nil, func(ctx context.Context) error { return c.removeBridge(ctx, bridge) })
	}
}

// hangupLeg DELETEs a leg unless that was done already or it is gone.
func (c *call) hangupLeg(ctx context.Context, l *leg) error {
	c.mu.Lock()
	skip := (l.isEnded && !l.unknown) || l.hangupSent
	c.mu.Unlock()
	if skip {
		return nil
	}
	err := c.cl.deleteChannel(ctx, l.id, causeNormal)
	if err == nil || statusOf(err) == http.StatusNotFound {
		c.mu.Lock()
		l.hangupSent = true
		c.mu.Unlock()
		return nil
	}
	return err
}

// removeBridge deletes the call's bridge unless that was done already.
func (c *call) removeBridge(ctx context.Context, id string) error {
	c.mu.Lock()
	skip := c.bridgeGone && c.bridge == id
	c.mu.Unlock()
	if skip {
		return nil
	}
	err := c.cl.deleteBridge(ctx, id)
	if err == nil || statusOf(err) == http.StatusNotFound {
		c.mu.Lock()
		if c.bridge == id {
			c.bridgeGone = true
		}
		c.mu.Unlock()
		return nil
	}
	return err
}

// persist repeats op until it succeeds, done is closed, or three request
// timeouts have passed, backing off between tries.
func (c *call) persist(what string, done <-chan struct{}, op func(ctx context.Context) error) {
	budget := time.Now().Add(3 * c.timeout())
	wait := 100 * time.Millisecond
	for {
		select {
		case <-done:
			return
		default:
		}
		ctx, cancel := c.bg()
		err := op(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(budget) {
			c.logger().Error(what+" failed; giving up", "err", err)
			return
		}
		c.logger().Warn(what+" failed; retrying", "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-done:
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// adoptStandIn records a channel a transfer swapped into this call's
// bridge in place of replaced (the Local ;1 half Asterisk creates for a
// blind transfer, or the link of an attended one). The bridge now carries
// the transfer: it stays until the stand-in or the party left with it goes.
//   - replaced is the caller (the caller transferred the far end away): the
//     call ends for callctl when the caller hangs up (cause TRANSFERRED),
//     and the bridge is left to the transfer.
//   - replaced is a leg (the far end transferred the caller): the leg ends
//     for callctl only when the stand-in goes (the transfer target hung
//     up), and the caller is then hung up as after any connected leg.
func (c *call) adoptStandIn(id, replaced string) {
	ref := &chanRef{call: c, standIn: true}
	if !c.cl.register(id, ref) {
		return
	}
	c.mu.Lock()
	c.standIns = append(c.standIns, id)
	role := "caller"
	if replaced == c.id {
		c.callerReplaced = true
	} else {
		role = "leg"
		for _, l := range c.legs {
			if l.id == replaced {
				l.replacedBy = id
			}
		}
	}
	c.mu.Unlock()
	c.logger().Info("transfer: a channel replaced a party in the call's bridge", "channel", id, "replaced", replaced, "role", role)
}

// standInGone ends what the transfer left once its stand-in is gone: the
// legs it stood in for end, and if the caller is gone too the bridge and
// what is left in it are torn down.
func (c *call) standInGone(id string) {
	c.mu.Lock()
	for i, s := range c.standIns {
		if s == id {
			c.standIns = append(c.standIns[:i], c.standIns[i+1:]...)
			break
		}
	}
	for _, l := range c.legs {
		if l.replacedBy == id {
			l.closeEnded()
		}
	}
	end := len(c.standIns) == 0 && c.gone
	var legs []*leg
	bridge := ""
	if end {
		legs = c.liveLegs()
		bridge = c.bridge
	}
	finished := c.finished
	c.mu.Unlock()
	if ref, _ := c.cl.lookup(id); ref != nil && ref.standIn {
		c.cl.unregister(id, ref)
	}
	if end {
		c.cl.background(func(context.Context) {
			c.cleanup(legs, nil, bridge)
			if finished {
				c.waitLegs(legs, c.timeout())
				c.release()
			}
		})
	}
}

// legGone runs when a leg's channel is destroyed: after a transfer of the
// caller, the leg that stayed is the last party of the bridge, and the
// stand-ins left with nobody to talk to are hung up.
func (c *call) legGone(l *leg) {
	c.mu.Lock()
	orphaned := c.callerReplaced && len(c.standIns) > 0 && len(c.liveLegs()) == 0
	standIns := append([]string(nil), c.standIns...)
	bridge := c.bridge
	c.mu.Unlock()
	if orphaned {
		c.cl.background(func(context.Context) { c.cleanup(nil, standIns, bridge) })
	}
}

// liveLegs lists the legs whose channels are up; c.mu is held.
func (c *call) liveLegs() []*leg {
	var out []*leg
	for _, l := range c.legs {
		if !l.isEnded {
			out = append(out, l)
		}
	}
	return out
}

func (c *call) isGone() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gone
}

// --- legs -----------------------------------------------------------------

// leg is a channel callctl originated for a call. Its fields under "mu" are
// guarded by the call's mutex; the channels are closed once.
type leg struct {
	c     *call
	id    string
	ref   *chanRef
	local bool

	answeredCh chan struct{}
	endedCh    chan struct{}
	ended2Ch   chan struct{} // Local only: the ;2 half is gone

	// mu
	status     string
	cause      int
	cause2     int
	isAnswered bool
	isEnded    bool
	isEnded2   bool
	vanished   bool
	unknown    bool // ended for callctl, but maybe still up on the server
	// replacedBy is the stand-in a transfer put in this leg's place: the
	// leg ends for callctl when that channel goes, not its own.
	replacedBy  string
	endedClosed bool
	// name is the channel's name, number what was dialed (the resource of
	// the endpoint), at the endpoint's trunk part: a transfer by this leg
	// routes as dialed by number.
	name       string
	number     string
	at         string
	hangupSent bool
	lastAt     time.Time
	// sentAt is when the originate request left (the dialing goroutine's
	// own: nothing else reads it).
	sentAt time.Time
}

func (l *leg) ID() string             { return l.id }
func (l *leg) Ended() <-chan struct{} { return l.endedCh }
func (l *leg) String() string         { return l.id }

// answered records the leg's StasisStart: it answered and is in the
// application. It reports whether this was news.
func (l *leg) answered(at time.Time, name string) bool {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	if l.isAnswered || l.isEnded {
		return false
	}
	l.isAnswered = true
	l.lastAt = at
	if name != "" {
		l.name = name
	}
	close(l.answeredCh)
	return true
}

// destroyed records a ChannelDestroyed of the leg (or of its ;2 half). It
// reports whether that completed the attempt's end: the channel Dial waits
// on last was closed.
func (l *leg) destroyed(half2 bool, cause int, at time.Time) bool {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	if half2 {
		if l.ended2Ch != nil && !l.isEnded2 {
			l.isEnded2 = true
			l.cause2 = cause
			l.lastAt = at
			close(l.ended2Ch)
			return l.isEnded
		}
		return false
	}
	if !l.isEnded {
		l.isEnded = true
		l.cause = cause
		l.lastAt = at
		if l.replacedBy != "" {
			// A transfer's stand-in carries on for this leg.
			l.c.logger().Info("the party a transfer replaced has left; the call goes on with the stand-in",
				"leg", l.id, "stand_in", l.replacedBy)
			return false
		}
		l.closeEnded()
		return !l.local || l.isEnded2
	}
	return false
}

// closeEnded closes Ended() once; the call's mutex is held.
func (l *leg) closeEnded() {
	if !l.endedClosed {
		l.endedClosed = true
		close(l.endedCh)
	}
}

// lost ends the leg without its events: it vanished while the WebSocket
// was down (confirmed: the server no longer has it), or the server is lost
// and the channel may still be up there.
func (l *leg) lost(at time.Time, confirmed bool) {
	l.c.mu.Lock()
	if !l.isEnded {
		l.vanished = true
		l.unknown = !confirmed
	}
	l.c.mu.Unlock()
	l.destroyed(false, causeUnknown, at)
	l.destroyed(true, causeUnknown, at)
	if !confirmed {
		// The server is lost: no stand-in will report its end either.
		l.c.mu.Lock()
		l.closeEnded()
		l.c.mu.Unlock()
	}
}

func (l *leg) dialStatus(s string) {
	l.c.mu.Lock()
	l.status = s
	l.c.mu.Unlock()
}

func (c *call) newLeg(id string, local bool) (*leg, error) {
	l := &leg{c: c, id: id, local: local, answeredCh: make(chan struct{}), endedCh: make(chan struct{})}
	if local {
		l.ended2Ch = make(chan struct{})
	}
	l.ref = &chanRef{call: c, leg: l}
	// Registered before the originate request leaves, so that no event of
	// the new channel (they can arrive before the reply) is missed.
	if !c.cl.register(id, l.ref) {
		return nil, fmt.Errorf("leg id %s already in use", id)
	}
	c.mu.Lock()
	c.legs = append(c.legs, l)
	c.mu.Unlock()
	return l, nil
}

// dropLeg forgets a leg whose channels are gone.
func (c *call) dropLeg(l *leg) {
	c.cl.unregister(l.id, l.ref)
	c.mu.Lock()
	for i, x := range c.legs {
		if x == l {
			c.legs = append(c.legs[:i], c.legs[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
}

func validLegID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		ch := id[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.') {
			return false
		}
	}
	return true
}

type originateBody struct {
	Variables map[string]string `json:"variables"`
}

// originateQuery lays an originate request (ari/v5's model of POST
// /channels) out as the request's query parameters; the channel variables
// go in the JSON body, where ARI takes them.
func originateQuery(r ari.OriginateRequest) (url.Values, any) {
	q := url.Values{"endpoint": {r.Endpoint}, "app": {r.App}}
	for k, v := range map[string]string{"appArgs": r.AppArgs, "channelId": r.ChannelID,
		"originator": r.Originator, "callerId": r.CallerID} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if r.Timeout > 0 {
		q.Set("timeout", strconv.Itoa(r.Timeout))
	}
	if len(r.Variables) == 0 {
		return q, nil
	}
	return q, originateBody{Variables: r.Variables}
}

// Dial originates spec.Target into the application and, once it answers
// (its StasisStart), bridges it with the caller in a mixing bridge. A
// non-answer returns only once the attempt's channel is destroyed, with the
// outcome Asterisk's signals give (see outcomeOf).
func (c *call) Dial(ctx context.Context, spec controller.DialSpec) (controller.Leg, controller.DialResult, error) {
	ep, err := parseEndpoint(spec.Target)
	if err != nil {
		return nil, controller.DialResult{Outcome: hunt.Failed, Cause: "UNSAFE_TARGET"}, fmt.Errorf("dial: %w", err)
	}
	cid, err := callerID(spec.CallerIDNumber, spec.CallerIDName)
	if spec.Withheld {
		// Nothing of the caller's own caller ID (which may be anything) is
		// used: with no number the leg would take the caller's (the
		// originator's), and an endpoint that trusts identities outbound
		// sends even a restricted one as it is. So the number is
		// "anonymous", and the presentation restricted for the rest.
		cid, err = `"Anonymous" <anonymous>`, nil
	}
	if err != nil {
		return nil, controller.DialResult{Outcome: hunt.Failed, Cause: "UNSAFE_CALLER_ID"}, fmt.Errorf("dial %s: %w", ep, err)
	}
	if !validLegID(spec.LegID) {
		return nil, controller.DialResult{Outcome: hunt.Failed, Cause: "BAD_LEG_ID"}, fmt.Errorf("dial %s: leg id %q: %w", ep, spec.LegID, ErrUnsafe)
	}
	var vars map[string]string
	if spec.MarkOrg != "" && ep.trunk() {
		if !validName(spec.MarkOrg) {
			return nil, controller.DialResult{Outcome: hunt.Failed, Cause: "UNSAFE_MARK"}, fmt.Errorf("dial %s: org mark %q: %w", ep, spec.MarkOrg, ErrUnsafe)
		}
		vars = map[string]string{markAdd: spec.MarkOrg}
	}
	if spec.Withheld {
		if vars == nil {
			vars = map[string]string{}
		}
		vars[presSet] = "prohib"
	}
	if ctx.Err() != nil || c.isGone() {
		return nil, controller.DialResult{Outcome: hunt.Cancelled, Cause: "CALLER_GONE"}, nil
	}
	l, err := c.newLeg(spec.LegID, ep.tech == "Local")
	if err == nil {
		c.mu.Lock()
		l.number, l.at = strings.TrimSuffix(ep.resource, "T"), ""
		if ep.trunk() {
			l.at = ep.at
		}
		c.mu.Unlock()
	}
	if err != nil {
		return nil, controller.DialResult{Outcome: hunt.Failed, Cause: "BAD_LEG_ID"}, fmt.Errorf("dial %s: %w", ep, err)
	}
	req := ari.OriginateRequest{Endpoint: ep.String(), App: c.cl.cfg.App, AppArgs: legMarker, ChannelID: l.id,
		Originator: c.id, CallerID: cid, Variables: vars}
	// A backstop only: the engine cancels the leg at the ring timeout.
	req.Timeout = spec.BackstopSeconds()
	q, body := originateQuery(req)
	// The originate runs to its end even if the caller leaves meanwhile, so
	// that callctl knows whether the channel exists.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout())
	l.sentAt = time.Now()
	err = c.rest().do(rctx, http.MethodPost, "/channels", q, body, nil)
	cancel()
	if err != nil {
		if st := statusOf(err); st != 0 {
			c.dropLeg(l)
			o := hunt.Failed
			if st >= 500 {
				// "Allocation failed": the endpoint cannot be reached.
				o = hunt.Unreachable
			}
			return nil, controller.DialResult{Outcome: o, Cause: "ORIGINATE_" + strconv.Itoa(st)}, fmt.Errorf("dial %s: %w", ep, err)
		}
		// The request may have reached Asterisk: make sure nothing rings.
		c.abandon(l)
		if ctx.Err() != nil {
			return nil, controller.DialResult{Outcome: hunt.Cancelled, Cause: "CALLER_GONE"}, nil
		}
		return nil, controller.DialResult{Outcome: hunt.Failed, Cause: "ORIGINATE_FAILED"}, fmt.Errorf("dial %s: %w", ep, err)
	}
	c.ringCaller(ctx)

	// The engine ends the attempt at the ring timeout, Asterisk after its
	// backstop (cause 19); this bound only covers events lost with a
	// WebSocket that did not come back.
	limit := spec.Timeout
	if limit <= 0 {
		limit = 30 * time.Second
	}
	safety := time.NewTimer(limit + 15*time.Second)
	defer safety.Stop()
	select {
	case <-l.answeredCh:
		return c.connect(ctx, l)
	case <-l.endedCh:
		return c.unanswered(l)
	case <-ctx.Done():
		c.abandon(l)
		return nil, controller.DialResult{Outcome: hunt.Cancelled, Cause: "CALLER_GONE", Sent: l.sentAt}, nil
	case <-safety.C:
		c.logger().Warn("leg neither answered nor ended in time; hanging it up", "leg", l.id)
		c.abandon(l)
		return nil, controller.DialResult{Outcome: hunt.NoAnswer, Cause: "CALLCTL_TIMEOUT", Sent: l.sentAt}, nil
	}
}

// unanswered finishes an attempt whose channel was destroyed.
func (c *call) unanswered(l *leg) (controller.Leg, controller.DialResult, error) {
	if l.local {
		// The ;2 half follows at once (traces b, c, j): wait for it so that
		// nothing of the attempt remains, and for its cause.
		t := time.NewTimer(2 * time.Second)
		select {
		case <-l.ended2Ch:
		case <-t.C:
			c.logger().Warn("local leg's second half did not report its end", "leg", l.id)
		}
		t.Stop()
	}
	c.mu.Lock()
	o, cause := outcomeOf(l.cause, l.status, l.cause2)
	if l.vanished {
		o, cause = hunt.Failed, "VANISHED"
	}
	at := l.lastAt
	c.mu.Unlock()
	c.dropLeg(l)
	return nil, controller.DialResult{Outcome: o, Cause: cause, Sent: l.sentAt, At: at}, nil
}

// abandon hangs up a leg that must not ring on and waits until it is gone.
func (c *call) abandon(l *leg) {
	ctx, cancel := c.bg()
	defer cancel()
	err := c.cl.deleteChannel(ctx, l.id, causeNormal)
	if statusOf(err) == http.StatusNotFound {
		// Never created, or already gone; its events may still be on the
		// way, but nothing rings.
		l.lost(time.Now(), true)
	} else if err != nil {
		c.logger().Warn("hanging up a leg failed", "leg", l.id, "err", err)
	}
	t := time.NewTimer(c.timeout())
	defer t.Stop()
	select {
	case <-l.endedCh:
	case <-t.C:
		if err := c.rest().do(ctx, http.MethodGet, "/channels/"+seg(l.id), nil, nil, nil); statusOf(err) == http.StatusNotFound {
			l.lost(time.Now(), true)
		} else {
			c.logger().Error("leg did not end after hangup", "leg", l.id, "err", err)
		}
	}
	if l.local {
		t2 := time.NewTimer(time.Second)
		select {
		case <-l.ended2Ch:
		case <-t2.C:
		}
		t2.Stop()
	}
	c.dropLeg(l)
}

// ringCaller tells the caller that it rings (SIP 180), once.
func (c *call) ringCaller(ctx context.Context) {
	c.mu.Lock()
	if c.rung || c.up {
		c.mu.Unlock()
		return
	}
	c.rung = true
	c.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	if err := c.rest().do(rctx, http.MethodPost, c.path("/ring"), nil, nil, nil); err != nil && ctx.Err() == nil {
		c.logger().Debug("ring indication failed", "err", err)
	}
}

// connect bridges an answered leg with the caller. Once the caller is up
// (callctl answered it for this leg), the member and the caller were
// connected as far as either can tell: a party that hangs up before the
// bridge is made leaves an answered call with no talk time, not a
// cancelled attempt (a caller that hangs up once it hears the answer, as
// a Local channel's ;1 half can within a millisecond, makes every bridge
// request after the answer fail).
func (c *call) connect(ctx context.Context, l *leg) (controller.Leg, controller.DialResult, error) {
	c.mu.Lock()
	at := l.lastAt
	ended := l.isEnded
	c.mu.Unlock()
	if ended {
		return c.unanswered(l)
	}
	cancelled := func() (controller.Leg, controller.DialResult, error) {
		c.abandon(l)
		return nil, controller.DialResult{Outcome: hunt.Cancelled, Cause: "CALLER_GONE", Sent: l.sentAt, At: at}, nil
	}
	if ctx.Err() != nil {
		return cancelled()
	}
	connected := func() (controller.Leg, controller.DialResult, error) {
		return l, controller.DialResult{Outcome: hunt.Answered, Cause: controller.AnswerCause, Sent: l.sentAt, At: at}, nil
	}
	up := false
	failed := func(step string, err error) (controller.Leg, controller.DialResult, error) {
		switch {
		case up && c.leftMeanwhile(err, l.endedCh):
			// The leg is hung up with the caller (callerGone), or the
			// caller after the leg (the engine, on its end).
			return connected()
		case !up && c.leftMeanwhile(err, nil):
			return cancelled()
		}
		c.abandon(l)
		return nil, controller.DialResult{Outcome: hunt.Failed, Cause: "BRIDGE_FAILED", Sent: l.sentAt, At: at}, fmt.Errorf("connect leg %s: %s: %w", l.id, step, err)
	}
	// These requests run to their end even if the caller leaves meanwhile:
	// a bridge created by a request cut off halfway would be nobody's.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout())
	defer cancel()
	c.mu.Lock()
	up = c.up
	c.mu.Unlock()
	if !up {
		if err := c.rest().do(rctx, http.MethodPost, c.path("/answer"), nil, nil, nil); err != nil {
			return failed("answer caller", err)
		}
		c.mu.Lock()
		c.up = true
		c.mu.Unlock()
		up = true
	}
	bid := "callctl-" + l.id
	err := c.rest().do(rctx, http.MethodPost, "/bridges", url.Values{"type": {"mixing"}, "bridgeId": {bid}, "name": {"callctl"}}, nil, nil)
	if err != nil {
		return failed("create bridge", err)
	}
	c.mu.Lock()
	c.bridge, c.bridgeGone = bid, false
	gone := c.gone
	c.mu.Unlock()
	if gone {
		// callerGone may have run before the bridge existed.
		c.teardown(rctx, nil, bid)
		return connected()
	}
	err = c.rest().do(rctx, http.MethodPost, "/bridges/"+seg(bid)+"/addChannel", url.Values{"channel": {c.id + "," + l.id}}, nil, nil)
	if err != nil {
		c.teardown(rctx, nil, bid)
		return failed("add to bridge", err)
	}
	if c.xfer != nil {
		c.xfer.connected()
	}
	return connected()
}

// leftMeanwhile says whether a request of connect failed because the
// caller (or, when legEnded is not nil, the leg) left meanwhile. Asterisk
// refuses a channel that is going (400 Channel not found, 404, 422 not in
// Stasis) before its end reaches callctl: after such a refusal the end is
// awaited, up to the request timeout.
func (c *call) leftMeanwhile(err error, legEnded <-chan struct{}) bool {
	select {
	case <-c.ctx.Done():
		return true
	case <-legEnded:
		return true
	default:
	}
	if st := statusOf(err); st < 400 || st >= 500 {
		return false
	}
	t := time.NewTimer(c.timeout())
	defer t.Stop()
	select {
	case <-c.ctx.Done():
		return true
	case <-legEnded:
		return true
	case <-t.C:
		return false
	}
}

// Reject ends the unanswered call with cause: Asterisk answers the caller
// with the SIP code of the Q.850 cause (17 → 486, 1 → 404, 21 → 403,
// 34 → 503).
func (c *call) Reject(ctx context.Context, cause routing.Cause) error {
	if c.xfer != nil {
		// Before the request: the stand-in's end may arrive before its reply.
		c.xfer.setCause(cause.Q850())
	}
	err := c.cl.deleteChannel(ctx, c.id, cause.Q850())
	if statusOf(err) == http.StatusNotFound {
		return fmt.Errorf("reject %s: %w", c.id, controller.ErrCallGone)
	}
	if err != nil {
		return fmt.Errorf("reject %s with %s: %w", c.id, cause, err)
	}
	c.hungUpWith(cause.Q850())
	return nil
}

// hungUpWith notes the cause of a hangup request Asterisk accepted.
func (c *call) hungUpWith(cause int) {
	c.mu.Lock()
	if c.sentCause == 0 {
		c.sentCause = cause
	}
	c.mu.Unlock()
}

// Hangup ends the call: its legs, the caller and the bridge.
func (c *call) Hangup(ctx context.Context, cause routing.Cause) error {
	if c.xfer != nil {
		c.xfer.setCause(cause.Q850())
	}
	c.mu.Lock()
	var legs []*leg
	for _, l := range c.legs {
		if !l.isEnded {
			legs = append(legs, l)
		}
	}
	bridge := c.bridge
	standIns := append([]string(nil), c.standIns...)
	c.mu.Unlock()
	c.teardown(ctx, legs, "", standIns...)
	err := c.cl.deleteChannel(ctx, c.id, cause.Q850())
	if err == nil {
		c.hungUpWith(cause.Q850())
	}
	if bridge != "" {
		if berr := c.cl.deleteBridge(ctx, bridge); berr != nil && statusOf(berr) != http.StatusNotFound {
			c.logger().Warn("deleting the bridge failed", "bridge", bridge, "err", berr)
		}
	}
	if statusOf(err) == http.StatusNotFound {
		return fmt.Errorf("hangup %s: %w", c.id, controller.ErrCallGone)
	}
	if err != nil {
		return fmt.Errorf("hangup %s: %w", c.id, err)
	}
	return nil
}

// Handoff continues the caller in the server's own dialplan (context from
// the plan) at extension dialed. The call stays callctl's until its channel
// ends: the application subscribes to the channel first, because once it
// left Stasis nothing else would report its end (StasisEnd is the last
// event of a channel the application is not subscribed to).
func (c *call) Handoff(ctx context.Context, dialed string) error {
	if !validDigits(dialed) {
		return fmt.Errorf("handoff %s to %q: %w", c.id, dialed, ErrUnsafe)
	}
	sub := url.Values{"eventSource": {"channel:" + c.id}}
	watched := true
	if err := c.rest().do(ctx, http.MethodPost, "/applications/"+seg(c.cl.cfg.App)+"/subscription", sub, nil, nil); err != nil {
		// Handed off all the same; its end is then its StasisEnd.
		watched = false
		c.logger().Warn("subscribing to the channel before the hand-off failed: its count ends when it leaves the application", "err", err)
	}
	c.mu.Lock()
	c.handedOff = true
	c.watched = watched
	c.mu.Unlock()
	q := url.Values{"context": {c.cl.cfg.Context}, "extension": {dialed}, "priority": {"1"}}
	err := c.rest().do(ctx, http.MethodPost, c.path("/continue"), q, nil, nil)
	if err != nil {
		c.mu.Lock()
		c.handedOff = false
		c.watched = false
		c.mu.Unlock()
		if statusOf(err) == http.StatusNotFound {
			return fmt.Errorf("handoff %s: %w", c.id, controller.ErrCallGone)
		}
		return fmt.Errorf("handoff %s: %w", c.id, err)
	}
	return nil
}

// leftStasis handles the caller's StasisEnd: the end of the call, unless it
// was handed to the dialplan with its channel watched (its ChannelDestroyed
// ends it then).
func (c *call) leftStasis(at time.Time) {
	c.mu.Lock()
	watched := c.handedOff && c.watched
	alive := !c.hangupAsked && c.sentCause == 0 && !c.gone
	c.mu.Unlock()
	if watched {
		c.logger().Info("in the dialplan: the call stays counted until its channel ends")
		return
	}
	if alive {
		// Sent on in the dialplan by something else: it may come back.
		c.mu.Lock()
		c.left = true
		c.mu.Unlock()
		c.cl.noteLeft(c, at)
	}
	c.callerGone(-1, at)
}

// finish runs when the handler returned: whatever of the call is still up
// is ended (the handler normally did), then the call is forgotten once its
// channels are gone.
func (c *call) finish() {
	c.mu.Lock()
	c.finished = true
	gone, handedOff, lost, sent := c.gone, c.handedOff, c.lost, c.sentCause
	keep := len(c.standIns) > 0
	var legs []*leg
	for _, l := range c.legs {
		if !l.isEnded || l.unknown {
			legs = append(legs, l)
		}
	}
	bridge := c.bridge
	c.mu.Unlock()
	if sent != 0 && !gone && !lost && !handedOff {
		// The handler hung the caller up already: its ChannelDestroyed is on
		// the way. Asking again now would replace the cause the caller
		// hears (a 404 turned into 603 NORMAL_CLEARING), so wait for it
		// first and ask again only if it does not come.
		t := time.NewTimer(c.timeout())
		select {
		case <-c.ctx.Done():
		case <-t.C:
		}
		t.Stop()
		c.mu.Lock()
		gone, lost = c.gone, c.lost
		c.mu.Unlock()
	}
	if sent == 0 {
		sent = causeNormal
	}
	if (!gone || lost) && !handedOff {
		var done <-chan struct{}
		if !lost {
			done = c.ctx.Done()
		}
		c.persist("hanging up the caller", done, func(ctx context.Context) error {
			err := c.cl.deleteChannel(ctx, c.id, sent)
			if statusOf(err) == http.StatusNotFound {
				return nil
			}
			return err
		})
	}
	if keep {
		// A transfer owns the bridge now; standInGone cleans up.
		return
	}
	c.cleanup(legs, nil, bridge)
	c.waitLegs(legs, c.timeout())
	if !handedOff && !lost {
		t := time.NewTimer(c.timeout())
		select {
		case <-c.ctx.Done():
		case <-t.C:
			ctx, cancel := c.bg()
			if err := c.rest().do(ctx, http.MethodGet, c.path(), nil, nil, nil); statusOf(err) != http.StatusNotFound {
				c.logger().Error("caller's channel still up after the call ended", "err", err)
			}
			cancel()
		}
		t.Stop()
	}
	c.release()
}

// waitLegs waits, up to d in all, for legs to be destroyed.
func (c *call) waitLegs(legs []*leg, d time.Duration) {
	if len(legs) == 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for _, l := range legs {
		select {
		case <-l.endedCh:
		case <-t.C:
			c.logger().Warn("leg did not report its end", "leg", l.id)
			return
		}
	}
}

// release forgets the call and its channels.
func (c *call) release() {
	c.cancel()
	cl := c.cl
	cl.mu.Lock()
	if ref := cl.chans[c.id]; ref != nil && ref.call == c {
		delete(cl.chans, c.id)
	}
	c.mu.Lock()
	for _, l := range c.legs {
		if cl.chans[l.id] == l.ref {
			delete(cl.chans, l.id)
		}
	}
	c.legs = nil
	for _, s := range c.standIns {
		if ref := cl.chans[s]; ref != nil && ref.call == c {
			delete(cl.chans, s)
		}
	}
	c.mu.Unlock()
	delete(cl.calls, c)
	cl.mu.Unlock()
}

var (
	_ controller.Call = (*call)(nil)
	_ controller.Leg  = (*leg)(nil)
)
