package asterisk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Transfers under PJSIP_TRANSFER_HANDLING(ari-only): Asterisk answers the
// REFER with 202, reports it as ChannelTransfer and does nothing else; the
// controller moves the channels and reports how it went with
// POST /channels/{id}/transfer_progress (NOTIFY sipfrag 100, 200, 503,
// 603). callctl carries a blind transfer out as Asterisk's own (core)
// handling does, so that the rest of callctl sees the same thing in both
// modes: a Local channel (/n, so that it is never optimised away) stands
// in for the transferer in the call's bridge at once, and its ;2 half runs
// the dialplan at the Refer-To extension in the transferer's context, back
// into Stasis, where it is routed as dialed by the transferring party
// (SPEC §4). The transferer hears 200 once the transfer's call is
// connected. If it is refused (603 for busy or a refusal, 503 otherwise)
// the transferer is put back into the bridge, as a REFER that failed
// leaves the call as it was. An attended transfer (Replaces) links the
// transferer's call with the call of the dialog it replaces, again as core
// handling does: the stand-in's ;2 half, back in Stasis, takes the replaced
// party's place in that call's bridge.

// Transfer progress states (transfer_progress?states=...).
const (
	xferProgress    = "channel_progress"    // NOTIFY 100 Trying
	xferAnswered    = "channel_answered"    // NOTIFY 200 OK
	xferUnavailable = "channel_unavailable" // NOTIFY 503
	xferDeclined    = "channel_declined"    // NOTIFY 603
)

// xferTimeout is how long (s) the transfer's Local channel may ring: the
// transfer's own call decides when to give up (its hunt and ring
// timeouts); this only bounds a call that never ends.
const xferTimeout = 600

var xferSeq atomic.Uint64

// ariTransfer is a blind transfer callctl carries out itself.
type ariTransfer struct {
	cl      *Client
	id      string // the stand-in Local channel (its ;1 half)
	from    *call  // the call the transferer is a party of
	by      string // the transferer's channel (it sent the REFER)
	byLeg   *leg   // the transferer when it is a leg of from; nil: from's caller
	byName  string
	dest    string
	context string
	// An attended transfer (REFER with Replaces) links the transferer's
	// call with the one it replaces: the stand-in's ;2 half takes the
	// place of that call's party toCh (toLeg, or to's caller when nil).
	attended bool
	to       *call
	toCh     string
	toLeg    *leg

	mu       sync.Mutex
	done     bool // concluded: connected or failed
	swapped  bool // the stand-in is one of from's channels
	cause    int  // the cause callctl refused the transfer's call with
	standRef *chanRef
}

// onChannelTransfer handles a REFER reported under ari-only handling. It
// runs on the reader goroutine: the requests go in the background.
func (c *Client) onChannelTransfer(e *event) {
	t := e.Transfer
	if t == nil || t.State != "" {
		// transfer_progress re-publishes the event with its state: only
		// the first one asks for a transfer.
		return
	}
	src := t.Source.ID
	if src == "" {
		c.nBadFrames.Add(1)
		c.log.Warn("ARI: ChannelTransfer without a transferring channel")
		return
	}
	ref, half2 := c.lookup(src)
	if ref == nil || half2 || ref.standIn || ref.xfer != nil {
		c.log.Warn("ARI: transfer (REFER) from a channel no call of callctl owns; refused",
			"channel", src, "name", t.Source.Name, "destination", t.Destination)
		c.reportTransfer(src, xferUnavailable)
		return
	}
	x := ref.call
	lg := x.logger()
	var to *call
	var toLeg *leg
	if t.ProtocolID != "" {
		// Attended: the dialog to replace must be a party of one of
		// callctl's calls, connected in its bridge.
		rref, rhalf2 := c.lookup(t.Replaced)
		if t.Replaced == "" || rref == nil || rhalf2 || rref.standIn || rref.xfer != nil || rref.call == x {
			lg.Warn("attended transfer replacing a dialog no other call of callctl owns; refused", "transferer", src,
				"replaces", t.Replaced, "destination", t.Destination)
			c.reportTransfer(src, xferUnavailable)
			return
		}
		to, toLeg = rref.call, rref.leg
		if _, ok := to.connectedBridge(toLeg); !ok {
			lg.Warn("attended transfer replacing a party that is not connected; refused", "transferer", src, "replaces", t.Replaced)
			c.reportTransfer(src, xferUnavailable)
			return
		}
	}
	if !validDigits(t.Destination) {
		lg.Warn("transfer to a destination callctl does not dial; refused", "transferer", src, "destination", t.Destination)
		c.reportTransfer(src, xferDeclined)
		return
	}
	ctxName := t.Source.Context
	if !validName(ctxName) {
		ctxName = x.info.Domain
	}
	if !validName(ctxName) {
		lg.Warn("transfer from a channel without a usable dialplan context; refused", "transferer", src, "context", t.Source.Context)
		c.reportTransfer(src, xferUnavailable)
		return
	}
	if _, ok := x.connectedBridge(ref.leg); !ok {
		lg.Warn("transfer by a party that is not connected; refused", "transferer", src, "destination", t.Destination)
		c.reportTransfer(src, xferUnavailable)
		return
	}
	xt := &ariTransfer{cl: c, id: fmt.Sprintf("callctl-xfer-%s-%d", sanitizeID(x.id), xferSeq.Add(1)), from: x, by: src,
		byLeg: ref.leg, byName: t.Source.Name, dest: t.Destination, context: ctxName,
		attended: to != nil, to: to, toCh: t.Replaced, toLeg: toLeg}
	if !c.register(xt.id, &chanRef{call: x, xfer: xt}) {
		c.reportTransfer(src, xferUnavailable)
		return
	}
	lg.Info("transfer requested (ari-only): callctl carries it out", "transferer", src, "destination", xt.dest,
		"context", xt.context, "stand_in", xt.id, "attended", xt.attended, "replaces", xt.toCh)
	c.background(func(ctx context.Context) { xt.start(ctx) })
}

// sanitizeID keeps the characters of a channel id that a leg id may have.
func sanitizeID(id string) string {
	b := []byte(id)
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[len(b)-64:]
	}
	return string(b)
}

// reportTransfer tells the transferer how its REFER is going.
func (c *Client) reportTransfer(channel, state string) {
	c.background(func(ctx context.Context) { c.transferProgress(ctx, channel, state) })
}

func (c *Client) transferProgress(ctx context.Context, channel, state string) {
	err := c.rest.do(ctx, http.MethodPost, "/channels/"+seg(channel)+"/transfer_progress", url.Values{"states": {state}}, nil, nil)
	if err != nil && statusOf(err) != http.StatusNotFound {
		c.log.Warn("ARI: reporting transfer progress failed", "call", channel, "state", state, "err", err)
	}
}

// xferFor finds the transfer whose stand-in's ;2 half id is.
func (c *Client) xferFor(id string) *ariTransfer {
	if len(id) < 3 || id[len(id)-2:] != ";2" {
		return nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if r := c.chans[id[:len(id)-2]]; r != nil && r.xfer != nil {
		return r.xfer
	}
	return nil
}

// connectedBridge is the call's bridge if the party (l, or the caller when
// l is nil) is up and talking in it.
func (c *call) connectedBridge(l *leg) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone || c.bridge == "" || c.bridgeGone {
		return "", false
	}
	if l != nil {
		return c.bridge, l.isAnswered && !l.isEnded && l.replacedBy == ""
	}
	if c.callerReplaced {
		return "", false
	}
	for _, o := range c.legs {
		if o.isAnswered && !o.isEnded {
			return c.bridge, true
		}
	}
	return "", false
}

// addStandIn adds a channel just created by /channels/create to bridge.
// Asterisk answers the create before the channel has entered the
// application, and addChannel refuses it until then (422 "Channel not in
// Stasis application", seen on Asterisk 22 about one time in four): that
// refusal is retried for a short while.
func (c *Client) addStandIn(ctx context.Context, bridge, id string) error {
	deadline := time.Now().Add(standInWait)
	for {
		err := c.rest.do(ctx, http.MethodPost, "/bridges/"+seg(bridge)+"/addChannel", url.Values{"channel": {id}}, nil, nil)
		if err == nil || statusOf(err) != http.StatusUnprocessableEntity || time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// standInWait bounds how long a created stand-in may take to enter the
// application.
const standInWait = 2 * time.Second

// start puts the stand-in into the call's bridge in the transferer's place
// and dials the transfer's destination through it.
func (t *ariTransfer) start(ctx context.Context) {
	c, x := t.cl, t.from
	lg := x.logger()
	c.transferProgress(ctx, t.by, xferProgress)
	q := url.Values{"endpoint": {"Local/" + t.dest + "@" + t.context + "/n"}, "app": {c.cfg.App},
		"appArgs": {legMarker}, "channelId": {t.id}}
	if err := c.rest.do(ctx, http.MethodPost, "/channels/create", q, nil, nil); err != nil {
		lg.Warn("transfer: creating the stand-in channel failed", "stand_in", t.id, "err", err)
		t.abort(ctx, xferUnavailable)
		return
	}
	bridge, ok := x.connectedBridge(t.byLeg)
	if !ok {
		lg.Info("transfer: the transferer left before the transfer started", "transferer", t.by)
		t.abort(ctx, xferUnavailable)
		return
	}
	if !t.mark() {
		// Ended meanwhile (its end was handled as the transfer's failure).
		return
	}
	if err := c.addStandIn(ctx, bridge, t.id); err != nil {
		lg.Warn("transfer: adding the stand-in to the bridge failed", "bridge", bridge, "err", err)
		t.unmark()
		t.mu.Lock()
		ref := t.standRef
		t.mu.Unlock()
		c.unregister(t.id, ref)
		t.abort(ctx, xferUnavailable)
		return
	}
	if err := c.rest.do(ctx, http.MethodPost, "/bridges/"+seg(bridge)+"/removeChannel", url.Values{"channel": {t.by}}, nil, nil); err != nil &&
		statusOf(err) != http.StatusNotFound && statusOf(err) != http.StatusUnprocessableEntity {
		lg.Warn("transfer: taking the transferer out of the bridge failed", "transferer", t.by, "err", err)
	}
	lg.Info("transfer: a channel replaced a party in the call's bridge", "channel", t.id, "replaced", t.by)
	dq := url.Values{"timeout": {fmt.Sprint(xferTimeout)}}
	if err := c.rest.do(ctx, http.MethodPost, "/channels/"+seg(t.id)+"/dial", dq, nil, nil); err != nil {
		lg.Warn("transfer: dialing the destination failed", "stand_in", t.id, "err", err)
		// Its end (hung up now) puts the transferer back.
		t.setCause(causeUnknown)
		if err := c.deleteChannel(ctx, t.id, causeNormal); err != nil && statusOf(err) != http.StatusNotFound {
			lg.Warn("transfer: hanging up the stand-in failed", "stand_in", t.id, "err", err)
		}
	}
}

// mark makes the stand-in one of the call's channels: its end ends what it
// stands in for, as after a transfer Asterisk made (adoptStandIn). False
// when the transfer has concluded already.
func (t *ariTransfer) mark() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return false
	}
	x := t.from
	ref := &chanRef{call: x, standIn: true, xfer: t}
	t.cl.mu.Lock()
	if r := t.cl.chans[t.id]; r != nil {
		ref.gen = r.gen
	}
	t.cl.chans[t.id] = ref
	t.cl.mu.Unlock()
	x.mu.Lock()
	x.standIns = append(x.standIns, t.id)
	if t.byLeg != nil {
		t.byLeg.replacedBy = t.id
	} else {
		x.callerReplaced = true
	}
	x.mu.Unlock()
	t.swapped, t.standRef = true, ref
	return true
}

// unmark undoes mark: the transferer is the party again.
func (t *ariTransfer) unmark() {
	x := t.from
	x.mu.Lock()
	for i, s := range x.standIns {
		if s == t.id {
			x.standIns = append(x.standIns[:i], x.standIns[i+1:]...)
			break
		}
	}
	if t.byLeg != nil {
		if t.byLeg.replacedBy == t.id {
			t.byLeg.replacedBy = ""
		}
	} else {
		x.callerReplaced = false
	}
	x.mu.Unlock()
	t.mu.Lock()
	t.swapped = false
	t.mu.Unlock()
}

// abort ends a transfer that did not get as far as the bridge.
func (t *ariTransfer) abort(ctx context.Context, state string) {
	if !t.conclude() {
		return
	}
	if ref, _ := t.cl.lookup(t.id); ref != nil && ref.xfer == t {
		t.cl.unregister(t.id, ref)
	}
	if err := t.cl.deleteChannel(ctx, t.id, causeNormal); err != nil && statusOf(err) != http.StatusNotFound {
		t.from.logger().Warn("transfer: hanging up the stand-in failed", "stand_in", t.id, "err", err)
	}
	t.cl.transferProgress(ctx, t.by, state)
}

// conclude reports whether this is the transfer's first conclusion.
func (t *ariTransfer) conclude() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	return true
}

func (t *ariTransfer) setCause(cause int) {
	t.mu.Lock()
	if t.cause == 0 {
		t.cause = cause
	}
	t.mu.Unlock()
}

// link runs on the reader goroutine when the ;2 half of an attended
// transfer's stand-in entered the application: it takes the replaced
// party's place in the other call's bridge, and the two calls' remaining
// parties talk through the pair.
func (t *ariTransfer) link(id string) {
	c, y := t.cl, t.to
	lg := t.from.logger()
	y.adoptStandIn(id, t.toCh)
	bridge, ok := y.bridgeNow()
	c.background(func(ctx context.Context) {
		fail := func(step string, err error) {
			lg.Warn("attended transfer: "+step+" failed", "stand_in", id, "err", err)
			if err := c.deleteChannel(ctx, t.id, causeNormal); err != nil && statusOf(err) != http.StatusNotFound {
				lg.Warn("transfer: hanging up the stand-in failed", "stand_in", t.id, "err", err)
			}
		}
		if !ok {
			fail("finding the replaced call's bridge", errors.New("it is gone"))
			return
		}
		if err := c.rest.do(ctx, http.MethodPost, "/channels/"+seg(id)+"/answer", nil, nil, nil); err != nil {
			fail("answering the link", err)
			return
		}
		if err := c.rest.do(ctx, http.MethodPost, "/bridges/"+seg(bridge)+"/addChannel", url.Values{"channel": {id}}, nil, nil); err != nil {
			fail("adding the link to the bridge", err)
			return
		}
		if err := c.rest.do(ctx, http.MethodPost, "/bridges/"+seg(bridge)+"/removeChannel", url.Values{"channel": {t.toCh}}, nil, nil); err != nil &&
			statusOf(err) != http.StatusNotFound && statusOf(err) != http.StatusUnprocessableEntity {
			lg.Warn("attended transfer: taking the replaced party out of its bridge failed", "replaced", t.toCh, "err", err)
		}
		lg.Info("attended transfer: the calls are linked", "stand_in", t.id, "link", id, "replaced", t.toCh, "to_call", y.id)
		y.attendedFrom(t.from, t.byLeg)
		t.connected()
	})
}

// bridgeNow is the call's bridge while it has one.
func (c *call) bridgeNow() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bridge, c.bridge != "" && !c.bridgeGone
}

// connected runs when the transfer's call is connected to its destination.
func (t *ariTransfer) connected() {
	if !t.conclude() {
		return
	}
	t.from.logger().Info("transfer connected", "transferer", t.by, "destination", t.dest, "stand_in", t.id)
	t.cl.reportTransfer(t.by, xferAnswered)
}

// declined says whether a refusal cause is the destination's no (busy,
// rejected, no such number) rather than a failure.
func declined(cause int) bool {
	switch cause {
	case 1, 3, 17, 21, 22, 28:
		return true
	}
	return false
}

// ended runs on the reader goroutine when the stand-in left Stasis or was
// destroyed. Before the transfer's call was connected that is its failure:
// the transferer, if still there, gets its party back. It reports whether
// it handled the end; otherwise the stand-in's end is the call's
// (standInGone).
func (t *ariTransfer) ended(cause int) bool {
	if !t.conclude() {
		return false
	}
	t.mu.Lock()
	if t.cause != 0 {
		cause = t.cause
	}
	swapped := t.swapped
	t.mu.Unlock()
	state := xferUnavailable
	if declined(cause) {
		state = xferDeclined
	}
	c, x := t.cl, t.from
	lg := x.logger()
	lg.Info("transfer failed", "transferer", t.by, "destination", t.dest, "cause", causeName(cause), "notify", state)
	if !swapped {
		if ref, _ := c.lookup(t.id); ref != nil && ref.xfer == t {
			c.unregister(t.id, ref)
		}
		c.reportTransfer(t.by, state)
		return true
	}
	x.mu.Lock()
	back := !x.gone && x.bridge != "" && !x.bridgeGone
	if t.byLeg != nil {
		back = back && !t.byLeg.isEnded
	}
	bridge := x.bridge
	x.mu.Unlock()
	if !back {
		// Nobody to give the call back to: it ends as after a transfer.
		c.reportTransfer(t.by, state)
		return false
	}
	t.unmark()
	if ref, _ := c.lookup(t.id); ref != nil && ref.xfer == t {
		c.unregister(t.id, ref)
	}
	c.background(func(ctx context.Context) {
		if err := c.rest.do(ctx, http.MethodPost, "/bridges/"+seg(bridge)+"/addChannel", url.Values{"channel": {t.by}}, nil, nil); err != nil {
			lg.Warn("transfer: putting the transferer back into the bridge failed", "transferer", t.by, "err", err)
		} else {
			lg.Info("transfer: the transferer is back in the call", "transferer", t.by)
		}
		c.transferProgress(ctx, t.by, state)
	})
	return true
}
