package freeswitch

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/callctl/callctl/adapters/freeswitch/esl"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/hunt"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/controller/routing"
)

// call is one outbound-socket session: FreeSWITCH's `socket ... async full`
// handed the caller's channel to callctl. It implements controller.Call.
//
// Two goroutines serve it: the connection's reader, which applies every event
// to the call's state in the order FreeSWITCH sent them, and the handler
// (controller.Engine.Handle), which blocks in Dial and friends on channels the
// reader closes. Neither ever waits for the other while holding mu.
type call struct {
	srv  *Server
	ms   *MediaServer
	conn socket
	id   string
	peer netip.Addr // the address the connection comes from
	info controller.CallInfo
	log  callLog
	// connectSeq is the Event-Sequence of the connect reply: an event fired
	// before it (an earlier socket application's end, still in FreeSWITCH's
	// dispatch queue when this connection subscribed) is not about this
	// connection.
	connectSeq uint64
	// xferSource is the channel's transfer source when it was handed over:
	// a bridge that ends with another one ended because the channel was
	// transferred (uuid_transfer, a REFER).
	xferSource string

	ctx    context.Context
	cancel context.CancelFunc

	mu          sync.Mutex
	endCause    string
	hungup      bool // a hangup event or the linger notice was seen
	sockClosed  bool
	transferred bool // the channel moved on to another owner
	detached    bool // the socket application ended under the call (see detach)
	handedOff   bool // callctl gave the call back to the dialplan
	foreign     bool // refused: another connection owns the channel
	handoffTo   string
	hangupSent  bool
	varsSet     bool // continue_on_fail and hangup_after_bridge are set
	handlerDone bool
	finalized   bool
	dial        *dialState
	legs        []*legWatch
	lingerTimer *time.Timer
	handled     chan struct{} // closed when the handler has returned
}

// callLog logs about one call: every line carries call=<uuid> and the
// server. It adds the attributes at each (rare) line instead of cloning a
// handler per call, which would cost every active call half a kilobyte.
type callLog struct {
	l          *slog.Logger
	id, server string
}

func (g callLog) with(args []any) []any {
	return append([]any{"call", g.id, "server", g.server}, args...)
}

func (g callLog) Debug(msg string, args ...any) { g.l.Debug(msg, g.with(args)...) }
func (g callLog) Info(msg string, args ...any)  { g.l.Info(msg, g.with(args)...) }
func (g callLog) Warn(msg string, args ...any)  { g.l.Warn(msg, g.with(args)...) }
func (g callLog) Error(msg string, args ...any) { g.l.Error(msg, g.with(args)...) }

// dialState is one bridge in progress.
type dialState struct {
	legID    string
	appUUID  string
	arg      string
	answered chan struct{} // CHANNEL_BRIDGE with our leg
	complete chan struct{} // CHANNEL_EXECUTE_COMPLETE of our bridge
	vars     BridgeVars    // written before complete is closed
	// sentAt is when the bridge command was written; answeredAt and doneAt
	// when its CHANNEL_BRIDGE and CHANNEL_EXECUTE_COMPLETE were read.
	sentAt, answeredAt, doneAt time.Time
	leg                        *legWatch

	answeredSeen, completeSeen bool

	// several is set for a bridge that rings several targets one after
	// the other (DialHunt); a pointer, so that the bridge of every other
	// call, kept while the call is up, stays small.
	several *severalLegs
}

// severalLegs are the legs of a bridge that rings several targets one after
// the other: answered is the one that answered, causes the
// originate_causes its CHANNEL_BRIDGE carried, endCauses those of the
// bridge's end (written before complete is closed). Not in BridgeVars,
// which every bridge copies onto the stack.
type severalLegs struct {
	ids                         []string
	answered, causes, endCauses string
}

var _ controller.Call = (*call)(nil)

func (c *call) ID() string                { return c.id }
func (c *call) Info() controller.CallInfo { return c.info }
func (c *call) Context() context.Context  { return c.ctx }
func (c *call) String() string            { return "freeswitch call " + c.id }

// EndCause is FreeSWITCH's hangup cause once the call is gone (TRANSFERRED
// when it moved on to another owner, CONNECTION_LOST when the socket dropped
// without a hangup).
func (c *call) EndCause() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endCause
}

// --- events (reader goroutine) ---

// OnEvent applies the call's events to its state (OnEvent, OnNotice and
// OnClose make the call its socket's esl.Handler).
func (c *call) OnEvent(ev *esl.Event, at time.Time) {
	if !ev.Is("Unique-ID", c.id) {
		return
	}
	switch {
	case ev.Is("Event-Name", "CHANNEL_BRIDGE"):
		c.mu.Lock()
		if d := c.dial; d != nil && !d.answeredSeen && d.bridgedWith(ev) {
			d.answeredSeen = true
			d.answeredAt = at
			close(d.answered)
		}
		c.mu.Unlock()
	case ev.Is("Event-Name", "CHANNEL_EXECUTE_COMPLETE"):
		c.onExecuteComplete(ev, at)
	case ev.Is("Event-Name", "CHANNEL_HANGUP"), ev.Is("Event-Name", "CHANNEL_HANGUP_COMPLETE"):
		c.mu.Lock()
		if !c.hungup && !c.transferred {
			c.endCause = ev.Get("Hangup-Cause")
			if ev.Is("variable_transfer_disposition", "replaced") {
				// A REFER with Replaces named this channel's dialog: its
				// connected leg now talks to the transferred party (the
				// hangup cause itself says NORMAL_CLEARING).
				c.endCause = controller.CauseAttendedTransfer
			}
		}
		c.hungup = true
		c.mu.Unlock()
		c.cancel()
		c.closeIfDone()
	}
}

func (c *call) onExecuteComplete(ev *esl.Event, at time.Time) {
	switch {
	case ev.Is("Application", "bridge"):
		c.mu.Lock()
		d := c.dial
		if d != nil && !d.completeSeen && (ev.Is("Application-UUID", d.appUUID) || ev.Is("Application-Data", d.arg)) {
			d.vars = BridgeVars{
				Disposition:     ev.Get("variable_originate_disposition"),
				DialStatus:      ev.Get("variable_DIALSTATUS"),
				LastBridgeCause: ev.Get("variable_last_bridge_hangup_cause"),
				BridgeCause:     ev.Get("variable_bridge_hangup_cause"),
				FailedCause:     ev.Get("variable_originate_failed_cause"),
			}
			if d.several != nil {
				d.several.endCauses = ev.Get("variable_originate_causes")
			}
			d.doneAt = at
			d.completeSeen = true
		} else {
			d = nil
		}
		c.mu.Unlock()
		if d == nil {
			return
		}
		// The bridge ended because the channel was transferred: the
		// transfer is already on the bridge's last event (a new transfer
		// source). The handler must see the call gone before it sees the
		// bridge's end, or it would take the end for "nobody answered"
		// and refuse a call that lives on.
		if src := ev.Get("variable_transfer_source"); src != "" && src != c.xferSource && !ev.Is("Answer-State", "hangup") {
			if strings.Contains(src, ":uuid_br:") {
				// Joined to another channel (an attended transfer: the
				// REFER with Replaces bridged the caller with the replaced
				// dialog's leg): it stays up, but not in the dialplan.
				c.detach()
			} else {
				c.transferredAway("the channel was transferred while its bridge ran")
			}
		}
		close(d.complete)
	case ev.Is("Application", "socket"):
		// The socket application ended while the channel is up: something
		// (uuid_transfer, a SIP REFER, our own Handoff) sent the channel back
		// into the dialplan. This connection is no longer its controller; it
		// stays open until FreeSWITCH's linger notice, because closing it now
		// would end the next socket application's park and kill the call
		// (transfers trace, case 1 exit/close).
		if ev.Is("Answer-State", "hangup") {
			return
		}
		if seq, err := strconv.ParseUint(ev.Get("Event-Sequence"), 10, 64); err == nil && seq < c.connectSeq {
			c.log.Debug("an earlier socket application's end: not this connection's",
				"application_data", ev.Get("Application-Data"), "event_sequence", seq, "connect_sequence", c.connectSeq)
			return
		}
		c.mu.Lock()
		handedOff, hungup := c.handedOff, c.hungup
		c.mu.Unlock()
		if !handedOff && !hungup {
			c.detach()
		}
	}
}

// OnNotice handles text/disconnect-notice: FreeSWITCH is done with the
// channel (linger) or with the connection (disconnect).
func (c *call) OnNotice(f *esl.Frame, at time.Time) {
	if f.ContentType() != esl.TypeDisconnect && f.ContentType() != esl.TypeRudeReject {
		return
	}
	c.mu.Lock()
	c.hungup = true
	if c.endCause == "" {
		c.endCause = "NORMAL_CLEARING"
	}
	c.mu.Unlock()
	c.cancel()
	c.closeIfDone()
}

// OnClose runs once the socket is closed, on the reader goroutine.
func (c *call) OnClose(err error) {
	c.mu.Lock()
	c.sockClosed = true
	// A detached call (joined to another by an attended transfer) is still
	// up and counted: losing its socket loses sight of its end, so it is
	// ended like any other call whose socket went.
	orphan := !c.hungup && !c.transferred && !c.handedOff && !c.foreign
	if orphan && c.endCause == "" {
		c.endCause = "CONNECTION_LOST"
	}
	var legs []string
	if orphan {
		for _, w := range c.legs {
			legs = append(legs, w.id)
		}
	}
	if c.lingerTimer != nil {
		c.lingerTimer.Stop()
	}
	c.mu.Unlock()
	c.cancel()
	if orphan {
		// The socket went while the call was ours: the caller and its legs
		// would otherwise stay up unaccounted. End them through the inbound
		// connection, waiting a little for it if it is down too.
		c.log.Warn("outbound connection lost while the call is up: ending the call through the inbound connection", "err", err)
		ctx, cancel := context.WithTimeout(context.Background(), c.srv.opt.OrphanKillWait)
		for _, id := range append(legs, c.id) {
			if kerr := c.ms.Kill(ctx, id, "NORMAL_TEMPORARY_FAILURE"); kerr != nil {
				c.log.Error("could not end the channel after the socket was lost", "channel", id, "err", kerr)
			}
		}
		cancel()
	}
	c.maybeFinalize()
}

// refuse drops a connection that names a channel another connection owns:
// it is not the channel's controller, so nothing is sent on it, and its end
// touches nothing of the channel.
func (c *call) refuse() {
	c.mu.Lock()
	c.foreign = true
	c.handlerDone = true
	close(c.handled)
	c.mu.Unlock()
	c.cancel()
	c.conn.Close()
}

// transferredAway records that the channel is no longer this connection's:
// the handler sees the call end (Context done, cause TRANSFERRED); once it has
// returned, the connection asks for no more events but stays open until the
// linger notice.
func (c *call) transferredAway(why string) {
	c.mu.Lock()
	if c.transferred || c.hungup {
		c.mu.Unlock()
		return
	}
	c.transferred = true
	c.endCause = "TRANSFERRED"
	c.mu.Unlock()
	c.log.Info("call transferred: this connection lets go of it", "reason", why)
	c.cancel()
}

// detach records that the socket application ended while the channel is up
// and callctl did not hand it off: FreeSWITCH moved the channel on by
// itself. Either a new connection for it follows at once (a transfer: it
// takes the call over, see Server.secondHandoff), or the channel was joined
// to another call (an attended transfer bridges the transferred party with
// the consulted target, uuid_bridge) or sent somewhere callctl is not. The
// call is not callctl's to hang up any more, but it is still up: it stays
// the handler's (and counted) until its channel ends or a new connection
// takes it.
func (c *call) detach() {
	c.mu.Lock()
	if c.detached || c.transferred || c.hungup {
		c.mu.Unlock()
		return
	}
	c.detached = true
	c.mu.Unlock()
	c.log.Info("the socket application ended while the call is up: the channel moved on without callctl; counted until it ends or comes back")
}

// --- controller.Call ---

// Dial bridges the caller to spec.Target and waits for the outcome: answer
// (CHANNEL_BRIDGE with the new leg), or the end of the bridge, mapped from the
// variables FreeSWITCH sets; a non-answer is returned only once the attempt's
// channel is gone. ctx cancelled (the caller left, the engine stops) cancels
// the ringing leg at once.
func (c *call) Dial(ctx context.Context, spec controller.DialSpec) (controller.Leg, controller.DialResult, error) {
	arg, dropped, err := BridgeArg(spec)
	if err != nil {
		c.log.Error("refusing to dial", "leg", spec.LegID, "err", err)
		return nil, controller.DialResult{Outcome: hunt.Failed, Cause: "INVALID_DIAL_STRING"}, fmt.Errorf("dial: %w", err)
	}
	if dropped != "" {
		c.log.Warn("caller id number is not digits: left out of the dial string", "leg", spec.LegID, "caller_id", dropped)
	}
	w := c.ms.watch(spec.LegID)
	d := &dialState{legID: spec.LegID, appUUID: controller.NewID(), arg: arg,
		answered: make(chan struct{}), complete: make(chan struct{}), leg: w}
	c.mu.Lock()
	if c.hungup || c.sockClosed || c.transferred || c.handedOff || c.detached {
		c.mu.Unlock()
		c.ms.unwatch(w)
		return nil, controller.DialResult{Outcome: hunt.Cancelled, Cause: "CALL_GONE"}, controller.ErrCallGone
	}
	c.dial = d
	c.legs = append(c.legs, w)
	first := !c.varsSet
	c.varsSet = true
	c.mu.Unlock()

	buf := esl.GetBuf()
	msg := *buf
	n := 1
	if first {
		// A failed bridge must leave the caller up for the next member, and an
		// answered one must end the call when it ends.
		msg, _ = esl.AppendExecute(msg, "", "set", "continue_on_fail=true", "")
		msg, _ = esl.AppendExecute(msg, "", "set", "hangup_after_bridge=true", "")
		n = 3
	}
	msg, err = esl.AppendExecute(msg, "", "bridge", arg, d.appUUID)
	*buf = msg
	if err != nil {
		esl.PutBuf(buf)
		c.abandonDial(d, w)
		return nil, controller.DialResult{Outcome: hunt.Failed, Cause: "INVALID_DIAL_STRING"}, fmt.Errorf("dial: %w", err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), c.srv.opt.CommandTimeout)
	d.sentAt = time.Now()
	replies, err := c.conn.Send(sctx, n, msg)
	scancel()
	esl.PutBuf(buf) // written: the buffer is free again
	for _, r := range replies {
		if err == nil && strings.HasPrefix(r.Text, "-ERR") {
			err = fmt.Errorf("%w: %s", ErrCommandFailed, strings.TrimSpace(r.Text))
		}
	}
	if err != nil {
		// The bridge may or may not be queued: make sure its leg does not stay.
		res := c.finishAttempt(d, w, true, hunt.Failed, "COMMAND_FAILED")
		return nil, res, fmt.Errorf("dial %s: %w", spec.Target, err)
	}

	limit := time.Duration(spec.BackstopSeconds()) * time.Second
	if limit <= 0 {
		limit = 60 * time.Second
	}
	timer := time.NewTimer(limit + c.srv.opt.DialGrace)
	defer timer.Stop()
	ctxDone := ctx.Done()
	answered := d.answered
	var legGone <-chan struct{} // watched once the attempt is being cancelled
	var retry <-chan time.Time
	var retryTicker *time.Ticker
	defer func() {
		if retryTicker != nil {
			retryTicker.Stop()
		}
	}()
	for {
		select {
		case <-answered:
			if legGone != nil {
				// Answered just as it was being cancelled: the kill is on
				// its way, so the attempt ends as cancelled.
				answered = nil
				continue
			}
			// The bridge stays current: its end (and what follows it) tells
			// a hangup from a transfer, see settle.
			c.ms.arm(w)
			return &leg{w: w}, controller.DialResult{Outcome: hunt.Answered, Cause: controller.AnswerCause,
				Sent: d.sentAt, At: d.answeredAt}, nil
		case <-d.complete:
			v := d.vars
			select {
			case <-w.gone:
				v.LegCause = w.cause
			default:
			}
			o, cause := v.Outcome()
			if o == hunt.Answered {
				// Answered and already unbridged (the leg hung up at once).
				c.ms.arm(w)
				return &leg{w: w}, controller.DialResult{Outcome: hunt.Answered, Cause: cause, Sent: d.sentAt, At: d.doneAt}, nil
			}
			return nil, c.finishAttempt(d, w, false, o, cause), nil
		case <-ctxDone:
			if isClosed(answered) {
				// Ready together: the caller's CHANNEL_BRIDGE was read
				// before its hangup, so the member answered and was
				// connected before the caller left. The next turn takes the
				// answer.
				ctxDone = nil
				continue
			}
			// The caller left or the engine gives up: cancel the leg now, and
			// again until the bridge reports its end (the leg may not exist
			// yet when the first kill arrives).
			ctxDone = nil
			legGone = w.gone
			c.cancelLeg(w.id)
			retryTicker = time.NewTicker(250 * time.Millisecond)
			retry = retryTicker.C
			timer.Reset(c.srv.opt.LegGoneWait)
		case <-retry:
			c.cancelLeg(w.id)
		case <-legGone:
			// Cancelled and its leg is gone: the attempt is over even if the
			// bridge's own end is not seen here (a transfer ends it silently).
			cause := w.cause
			if cause == "" {
				cause = "ORIGINATOR_CANCEL"
			}
			return nil, c.finishAttempt(d, w, false, hunt.Cancelled, cause), nil
		case <-c.conn.Done():
			// The socket is gone: the bridge's end cannot be seen here.
			res := c.finishAttempt(d, w, true, hunt.Cancelled, "CONNECTION_LOST")
			return nil, res, fmt.Errorf("dial %s: %w", spec.Target, controller.ErrCallGone)
		case <-timer.C:
			c.log.Warn("bridge did not report its end in time: cancelling its leg", "leg", w.id)
			return nil, c.finishAttempt(d, w, true, hunt.Failed, "BRIDGE_TIMEOUT"), nil
		}
	}
}

// sendBridge sends d's bridge (after the variables every bridge of the call
// needs, the first time) and waits for its replies; d.sentAt is when it
// was written. (Dial writes its own: a frame less under it keeps every
// call's stack small.)
func (c *call) sendBridge(d *dialState, first bool) error {
	buf := esl.GetBuf()
	defer esl.PutBuf(buf) // written or failed: the buffer is free again after
	msg := *buf
	n := 1
	if first {
		// A failed bridge must leave the caller up for the next member, and an
		// answered one must end the call when it ends.
		msg, _ = esl.AppendExecute(msg, "", "set", "continue_on_fail=true", "")
		msg, _ = esl.AppendExecute(msg, "", "set", "hangup_after_bridge=true", "")
		n = 3
	}
	msg, err := esl.AppendExecute(msg, "", "bridge", d.arg, d.appUUID)
	*buf = msg
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnsafeInput, err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), c.srv.opt.CommandTimeout)
	d.sentAt = time.Now()
	replies, err := c.conn.Send(sctx, n, msg)
	scancel()
	for _, r := range replies {
		if err == nil && strings.HasPrefix(r.Text, "-ERR") {
			err = fmt.Errorf("%w: %s", ErrCommandFailed, strings.TrimSpace(r.Text))
		}
	}
	return err
}

// bridgedWith says whether a CHANNEL_BRIDGE of the caller is with a leg
// of d (recording which, for a bridge of several).
func (d *dialState) bridgedWith(ev *esl.Event) bool {
	if d.several == nil {
		return ev.Is("Other-Leg-Unique-ID", d.legID)
	}
	other := ev.Get("Other-Leg-Unique-ID")
	for _, id := range d.several.ids {
		if id == other {
			d.several.answered = other
			d.several.causes = ev.Get("variable_originate_causes")
			return true
		}
	}
	return false
}

// leg is an answered leg; Ended closes on its CHANNEL_HANGUP_COMPLETE.
type leg struct{ w *legWatch }

func (l *leg) ID() string             { return l.w.id }
func (l *leg) Ended() <-chan struct{} { return l.w.gone }
func (l *leg) String() string         { return "leg " + l.w.id }
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (c *call) clearDial(d *dialState) {
	c.mu.Lock()
	if c.dial == d {
		c.dial = nil
	}
	c.mu.Unlock()
}

func (c *call) abandonDial(d *dialState, w *legWatch) {
	c.clearDial(d)
	c.dropWatch(w)
}

// finishAttempt ends a non-answered attempt: the leg is cancelled if asked,
// awaited until gone, and forgotten. Its outcome is known once the bridge
// ended and its leg is gone, whichever was read last.
func (c *call) finishAttempt(d *dialState, w *legWatch, kill bool, o hunt.Outcome, cause string) controller.DialResult {
	if kill {
		c.cancelLeg(w.id)
	}
	c.awaitGone(w)
	c.clearDial(d)
	c.dropWatch(w)
	at := d.doneAt
	if w.at.After(at) {
		at = w.at
	}
	if at.IsZero() {
		at = time.Now()
	}
	return controller.DialResult{Outcome: o, Cause: cause, Sent: d.sentAt, At: at}
}

// awaitGone returns once the leg's channel is known to be gone: its hangup
// event, or the server saying it does not exist. It is bounded: a server
// that cannot answer does not hold the hunt forever.
func (c *call) awaitGone(w *legWatch) {
	if isClosed(w.gone) {
		return
	}
	if ok, err := c.exists(w.id); err == nil && !ok {
		// The answer to uuid_exists is the outcome's last piece.
		c.ms.markGone(w, "")
		return
	}
	t := time.NewTimer(c.srv.opt.LegGoneWait)
	defer t.Stop()
	select {
	case <-w.gone:
		return
	case <-t.C:
	}
	// Still there (or the server cannot say): end it, and check once more.
	c.cancelLeg(w.id)
	if ok, err := c.exists(w.id); err == nil && !ok {
		c.ms.markGone(w, "")
		return
	}
	t.Reset(c.srv.opt.LegGoneWait)
	select {
	case <-w.gone:
	case <-t.C:
		c.log.Error("the attempt's leg did not go away; giving up on it", "leg", w.id)
	}
}

// exists asks the server whether a channel exists, on the call's own
// connection when it is up, else on the inbound one.
func (c *call) exists(id string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.opt.CommandTimeout)
	defer cancel()
	if !c.conn.Closed() {
		buf := esl.GetBuf()
		*buf, _ = esl.AppendCommand(*buf, "api", "uuid_exists", id)
		r, err := c.conn.Command(ctx, *buf)
		esl.PutBuf(buf)
		if err == nil {
			return strings.TrimSpace(r.Text) == "true", nil
		}
	}
	return c.ms.Exists(ctx, id)
}

// cancelLeg hangs up a ringing leg (ORIGINATOR_CANCEL), on the call's own
// connection when it is up, else on the inbound one.
func (c *call) cancelLeg(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.opt.CommandTimeout)
	defer cancel()
	if !c.conn.Closed() {
		buf := esl.GetBuf()
		*buf, _ = esl.AppendCommand(*buf, "api", "uuid_kill", id, "ORIGINATOR_CANCEL")
		_, err := c.conn.Send(ctx, 1, *buf)
		esl.PutBuf(buf)
		if err == nil {
			return
		}
	}
	if err := c.ms.Kill(ctx, id, "ORIGINATOR_CANCEL"); err != nil {
		c.log.Warn("cancelling a leg failed", "leg", id, "err", err)
	}
}

func (c *call) dropWatch(w *legWatch) {
	c.ms.unwatch(w)
	c.mu.Lock()
	for i, x := range c.legs {
		if x == w {
			c.legs = append(c.legs[:i], c.legs[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
}

// Reject ends the unanswered call with cause, and the caller gets the cause's
// SIP code (USER_BUSY 486, UNALLOCATED_NUMBER 404, CALL_REJECTED 403,
// NORMAL_CIRCUIT_CONGESTION 503). FreeSWITCH derives the SIP code from the
// hangup cause by itself, but not always the code callctl means: it answers
// CALL_REJECTED with 603 and NORMAL_TEMPORARY_FAILURE with 503 (mod_sofia's
// hangup_cause_to_sip). For those, "respond <code>" sends the code first.
func (c *call) Reject(ctx context.Context, cause routing.Cause) error {
	return c.hangup(ctx, cause, "reject")
}

// fsSIP is the SIP response FreeSWITCH sends to an unanswered caller hung up
// with a cause (mod_sofia hangup_cause_to_sip), for the causes callctl uses.
var fsSIP = map[string]int{
	"UNALLOCATED_NUMBER": 404, "USER_BUSY": 486, "NO_ANSWER": 480, "CALL_REJECTED": 603,
	"DESTINATION_OUT_OF_ORDER": 502, "INVALID_NUMBER_FORMAT": 484, "NORMAL_CIRCUIT_CONGESTION": 503,
	"NORMAL_TEMPORARY_FAILURE": 503,
}

// respondCode is the SIP code to send before hanging up with cause, or 0
// when FreeSWITCH's own mapping already gives the code callctl means.
func respondCode(cause routing.Cause) int {
	want := cause.SIP()
	if want < 400 || want > 699 {
		return 0
	}
	if fsSIP[cause.String()] == want {
		return 0
	}
	return want
}

// Hangup ends the call with cause; with hangup_after_bridge the bridged leg
// goes with it.
func (c *call) Hangup(ctx context.Context, cause routing.Cause) error {
	return c.hangup(ctx, cause, "hangup")
}

func (c *call) hangup(ctx context.Context, cause routing.Cause, what string) error {
	name := cause.String()
	if cause == routing.CauseNone || name == "UNKNOWN" {
		name = routing.CauseNormal.String()
	}
	c.settle(ctx)
	c.mu.Lock()
	if c.hungup || c.sockClosed || c.transferred {
		c.mu.Unlock()
		return controller.ErrCallGone
	}
	if c.detached {
		c.mu.Unlock()
		return controller.ErrCallJoined
	}
	c.hangupSent = true
	c.mu.Unlock()
	buf := esl.GetBuf()
	defer esl.PutBuf(buf)
	n := 1
	code := 0
	if what == "reject" {
		code = respondCode(cause)
	}
	if code != 0 {
		// respond sends the code and hangs the caller up; the hangup after it
		// ends the call anyway if respond could not (an answered channel).
		*buf, _ = esl.AppendExecute(*buf, "", "respond", strconv.Itoa(code), "")
		n = 2
	}
	var err error
	if *buf, err = esl.AppendHangup(*buf, "", name); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	rs, err := c.conn.Send(ctx, n, *buf)
	if err == nil {
		for _, r := range rs {
			if strings.HasPrefix(r.Text, "-ERR") {
				err = fmt.Errorf("%w: %s", ErrCommandFailed, strings.TrimSpace(r.Text))
				break
			}
		}
	}
	if err != nil {
		if c.conn.Closed() || isGoneErr(err) {
			return controller.ErrCallGone
		}
		return fmt.Errorf("%s %s: %w", what, name, err)
	}
	if code == 0 {
		code = fsSIP[name]
	}
	c.log.Info("hangup sent", "cause", name, "sip", code)
	return nil
}

// settle: when the connected leg has just ended, FreeSWITCH decides what
// becomes of the caller (hangup_after_bridge hangs it up; a REFER or a
// uuid_transfer sends it back into the dialplan, which the leg's hangup on the
// inbound connection may overtake). Wait for the bridge's end and the event
// after it, briefly, so that a transferred call is not hung up.
func (c *call) settle(ctx context.Context) {
	c.mu.Lock()
	d := c.dial
	c.mu.Unlock()
	if d == nil || !d.answeredSeen || d.leg == nil || !isClosed(d.leg.gone) {
		return
	}
	t := time.NewTimer(c.srv.opt.SettleWait)
	defer t.Stop()
	select {
	case <-d.complete:
	case <-c.ctx.Done():
		return
	case <-ctx.Done():
		return
	case <-t.C:
		return
	}
	t.Reset(c.srv.opt.SettleWait)
	select {
	case <-c.ctx.Done():
	case <-ctx.Done():
	case <-t.C:
	}
}

// isGoneErr recognises FreeSWITCH's answers about a channel that no longer
// exists ("-ERR invalid session id [...]", "-ERR No such channel!").
func isGoneErr(err error) bool {
	s := err.Error()
	return strings.Contains(s, "invalid session id") || strings.Contains(s, "No such channel")
}

// Handoff sends the call back into FreeSWITCH's dialplan: transfer <dialed>
// XML <context>. The context must not hand calls to callctl again for the
// same digits (see dialplans/freeswitch).
func (c *call) Handoff(ctx context.Context, dialed string) error {
	if !provision.ValidDialed(dialed) {
		return fmt.Errorf("handoff: %w: dialed %q", ErrUnsafeInput, dialed)
	}
	dpCtx := c.ms.cfg.Context
	if !validName(dpCtx) {
		return fmt.Errorf("handoff: %w: context %q", ErrUnsafeInput, dpCtx)
	}
	c.mu.Lock()
	if c.hungup || c.sockClosed || c.transferred {
		c.mu.Unlock()
		return controller.ErrCallGone
	}
	c.handedOff = true
	c.handoffTo = dialed
	c.mu.Unlock()
	msg, err := esl.AppendExecute(make([]byte, 0, 128), "", "transfer", dialed+" XML "+dpCtx, "")
	if err != nil {
		return fmt.Errorf("handoff: %w", err)
	}
	if _, err := c.conn.Command(ctx, msg); err != nil {
		c.mu.Lock()
		// The dialplan may hand the channel to a new connection before the
		// reply arrives (that connection takes the call and ends this one's
		// context): the transfer then happened.
		done := c.transferred
		if !done {
			c.handedOff = false
		}
		c.mu.Unlock()
		if done {
			c.log.Info("call handed back to the dialplan", "dialed", dialed, "context", dpCtx)
			return nil
		}
		return fmt.Errorf("handoff %s: %w", dialed, err)
	}
	c.log.Info("call handed back to the dialplan", "dialed", dialed, "context", dpCtx)
	return nil
}

// --- end of the session ---

// handlerReturned runs when the handler is done with the call (err is what
// it returned): the socket is closed once FreeSWITCH is done with the
// channel.
func (c *call) handlerReturned(err error) {
	if err != nil {
		c.log.Info("handler returned", "err", err)
	}
	c.mu.Lock()
	c.handlerDone = true
	close(c.handled)
	up := !c.hungup && !c.sockClosed
	keep := c.transferred || c.handedOff || c.detached
	safety := up && !keep && !c.hangupSent
	c.mu.Unlock()
	switch {
	case !up:
		c.closeIfDone()
	case keep:
		// The channel lives on elsewhere: stop its events (they now belong to
		// its new owner) and wait for the linger notice at its hangup.
		msg, _ := esl.AppendCommand(nil, "noevents")
		_ = c.conn.Post(msg)
	default:
		if safety {
			// Nothing must stay up that callctl no longer handles.
			c.log.Warn("handler returned with the caller still up: hanging up")
			msg, _ := esl.AppendHangup(nil, "", routing.CauseNormal.String())
			_ = c.conn.Post(msg)
		}
		c.mu.Lock()
		if !c.sockClosed {
			c.lingerTimer = time.AfterFunc(c.srv.opt.LingerWait, func() {
				c.log.Warn("no hangup from FreeSWITCH after the call ended: closing the connection")
				c.conn.Close()
			})
		}
		c.mu.Unlock()
	}
	c.maybeFinalize()
}

// closeIfDone closes the connection once the handler returned and the
// channel is gone.
func (c *call) closeIfDone() {
	c.mu.Lock()
	done := c.handlerDone && c.hungup && !c.sockClosed
	c.mu.Unlock()
	if done {
		c.conn.Close()
	}
}

// maybeFinalize releases what the call holds once both its handler and its
// socket are done.
func (c *call) maybeFinalize() {
	c.mu.Lock()
	if c.finalized || !c.handlerDone || !c.sockClosed {
		c.mu.Unlock()
		return
	}
	c.finalized = true
	legs := c.legs
	c.legs = nil
	c.mu.Unlock()
	for _, w := range legs {
		c.ms.unwatch(w)
	}
	c.cancel()
	c.srv.forget(c)
}
