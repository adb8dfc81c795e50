package sim

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// CallOptions shape a call placed by the lab.
type CallOptions struct {
	// CallerName is the display name (default: the number).
	CallerName string
	// Context overrides the context the call arrives in (the server's
	// default for its origin otherwise).
	Context string
	// Headers are SIP headers the call carries.
	Headers map[string]string
	// HangupAfterAnswer hangs the caller up that long after the answer.
	HangupAfterAnswer time.Duration
	// GiveUpAfter hangs the caller up (ORIGINATOR_CANCEL) if nobody
	// answered by then.
	GiveUpAfter time.Duration
}

// Call is a call placed by the lab: a handle to watch it and to act as its
// caller.
type Call struct {
	lab    *Lab
	server *Server
	uuid   string

	mu       sync.Mutex
	events   []callmodel.Event
	answered time.Time
	bridged  []callmodel.Snapshot
	ended    bool
	final    callmodel.Snapshot
	changed  chan struct{}
	hangupIn time.Duration
}

// Call places a call from phone fromExt of server to dialed. The server's
// dialplan hands it to the controller.
func (l *Lab) Call(ctx context.Context, server, fromExt, dialed string, opts CallOptions) (*Call, error) {
	return l.place(ctx, server, callmodel.InboundCall{
		Origin:      callmodel.OriginPhone,
		Caller:      callmodel.Party{Name: opts.CallerName, Number: fromExt},
		Destination: dialed,
		Context:     opts.Context,
		NetworkIP:   l.cfg.PhonesIP,
		FromExt:     fromExt,
	}, opts)
}

// CallFromPSTN places a call from the PSTN (callerNumber) to a DID of a
// server.
func (l *Lab) CallFromPSTN(ctx context.Context, server, did, callerNumber string, opts CallOptions) (*Call, error) {
	return l.place(ctx, server, callmodel.InboundCall{
		Origin:      callmodel.OriginPSTN,
		Caller:      callmodel.Party{Name: opts.CallerName, Number: callerNumber},
		Destination: did,
		Context:     opts.Context,
		NetworkIP:   l.cfg.PSTNIP,
	}, opts)
}

func (l *Lab) place(ctx context.Context, server string, call callmodel.InboundCall, opts CallOptions) (*Call, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := l.server(server)
	if err != nil {
		return nil, err
	}
	for name, value := range opts.Headers {
		call.Headers = append(call.Headers, callmodel.Var{Name: name, Value: value})
	}
	call.Plan = callmodel.CallerPlan{HangupAfterAnswer: opts.HangupAfterAnswer, GiveUpAfter: opts.GiveUpAfter}
	c := &Call{lab: l, server: s, changed: make(chan struct{})}
	call.UUID = l.fleet.NewUUID()
	c.uuid = call.UUID
	err = s.model.Do(func(tx *callmodel.Tx) error {
		// watch from before the channel exists: its first events are
		// queued in this transaction and delivered after it
		uuid, err := tx.Inbound(call)
		if err != nil {
			return err
		}
		return tx.Watch(uuid, c.observe)
	})
	if err != nil {
		return nil, fmt.Errorf("lab: call %s -> %s on %s: %w", call.Caller.Number, call.Destination, server, err)
	}
	l.log.Debug("call placed", "call", c.uuid, "server", server, "from", call.Caller.Number, "to", call.Destination)
	return c, nil
}

func (c *Call) observe(tx *callmodel.Tx, ev *callmodel.Event) bool {
	if ev.Kind == callmodel.Note {
		// a front's own facts (dialplan applications and the like)
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, *ev)
	switch ev.Kind {
	case callmodel.ChannelAnswered:
		if ev.Channel.UUID == c.uuid {
			c.answered = ev.Time
			if c.hangupIn > 0 {
				d := c.hangupIn
				tx.AfterFunc(c.uuid, d, func(tx *callmodel.Tx) {
					tx.Hangup(c.uuid, callmodel.CauseNormalClearing, callmodel.ByRemote)
				})
			}
		}
	case callmodel.ChannelBridged:
		other := ev.Other
		if other.UUID == c.uuid {
			other = ev.Channel
		}
		c.bridged = append(c.bridged, other)
	case callmodel.ChannelDestroyed:
		c.ended = true
		c.final = ev.Channel
	}
	close(c.changed)
	c.changed = make(chan struct{})
	return ev.Kind != callmodel.ChannelDestroyed
}

// UUID is the caller's channel.
func (c *Call) UUID() string { return c.uuid }

// Server is the server the call arrived on.
func (c *Call) Server() string { return c.server.Name }

// Events returns what happened to the caller's channel so far (the
// model's events; a front's notes are left out).
func (c *Call) Events() []callmodel.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]callmodel.Event(nil), c.events...)
}

// Answered reports whether the call was answered.
func (c *Call) Answered() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.answered.IsZero()
}

// Bridged returns the channels the caller was bridged with, in order.
func (c *Call) Bridged() []callmodel.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]callmodel.Snapshot(nil), c.bridged...)
}

// wait blocks until cond holds or ctx ends.
func (c *Call) wait(ctx context.Context, what string, cond func() bool) error {
	for {
		c.mu.Lock()
		ok := cond()
		ch := c.changed
		ended := c.ended
		c.mu.Unlock()
		if ok {
			return nil
		}
		if ended {
			return fmt.Errorf("call %s ended before it %s", c.uuid, what)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("call %s: waiting until it %s: %w", c.uuid, what, ctx.Err())
		case <-ch:
		}
	}
}

// WaitAnswered waits for the answer.
func (c *Call) WaitAnswered(ctx context.Context) error {
	return c.wait(ctx, "is answered", func() bool { return !c.answered.IsZero() })
}

// WaitBridged waits until the caller is bridged and returns the other
// channel.
func (c *Call) WaitBridged(ctx context.Context) (callmodel.Snapshot, error) {
	var got callmodel.Snapshot
	err := c.wait(ctx, "is bridged", func() bool {
		if len(c.bridged) == 0 {
			return false
		}
		got = c.bridged[len(c.bridged)-1]
		return true
	})
	return got, err
}

// Result is how a call ended.
type Result struct {
	Answered   bool
	AnsweredAt time.Time
	EndedAt    time.Time
	Cause      callmodel.Cause
	// SIPStatus is the final response the caller got: 200 if answered,
	// else the failure FreeSWITCH or Asterisk sends for the cause (or the
	// code of a "respond").
	SIPStatus int
	Bridged   []callmodel.Snapshot
}

// WaitEnded waits for the end of the call.
func (c *Call) WaitEnded(ctx context.Context) (Result, error) {
	c.mu.Lock()
	ch, ended := c.changed, c.ended
	c.mu.Unlock()
	for !ended {
		select {
		case <-ctx.Done():
			return Result{}, fmt.Errorf("call %s: waiting for its end: %w", c.uuid, ctx.Err())
		case <-ch:
		}
		c.mu.Lock()
		ch, ended = c.changed, c.ended
		c.mu.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r := Result{
		Answered:   !c.answered.IsZero(),
		AnsweredAt: c.answered,
		EndedAt:    c.final.Hungup,
		Cause:      c.final.Cause,
		Bridged:    append([]callmodel.Snapshot(nil), c.bridged...),
	}
	switch {
	case r.Answered:
		r.SIPStatus = 200
	case c.server.Kind == callmodel.Asterisk:
		r.SIPStatus = AsteriskSIPStatus(c.final.Cause)
	default:
		r.SIPStatus = SIPStatus(c.final.Cause)
		if v, ok := c.final.Vars.Get("sip_term_status"); ok {
			if n, err := strconv.Atoi(v); err == nil {
				r.SIPStatus = n
			}
		}
	}
	return r, nil
}

// Hangup makes the caller hang up now (CANCEL before the answer, BYE after).
func (c *Call) Hangup() error {
	return c.server.model.Do(func(tx *callmodel.Tx) error {
		snap, ok := tx.Snapshot(c.uuid)
		if !ok || snap.State == callmodel.StateHangup {
			return nil
		}
		cause := callmodel.CauseNormalClearing
		if snap.State != callmodel.StateUp {
			cause = callmodel.CauseOriginatorCancel
		}
		tx.Hangup(c.uuid, cause, callmodel.ByRemote)
		return nil
	})
}

// HangupAfterAnswer makes the caller hang up d after the answer (at once
// counting from now if already answered).
func (c *Call) HangupAfterAnswer(d time.Duration) error {
	return c.server.model.Do(func(tx *callmodel.Tx) error {
		c.mu.Lock()
		answered := !c.answered.IsZero()
		c.hangupIn = d
		c.mu.Unlock()
		if answered && tx.Exists(c.uuid) {
			tx.AfterFunc(c.uuid, d, func(tx *callmodel.Tx) {
				tx.Hangup(c.uuid, callmodel.CauseNormalClearing, callmodel.ByRemote)
			})
		}
		return nil
	})
}

// AsteriskSIPStatus is the SIP final response Asterisk's PJSIP channel
// driver sends for a hangup cause of an unanswered call (hangup_cause2sip in
// chan_pjsip.c); causes it has no mapping for end in 603.
func AsteriskSIPStatus(c callmodel.Cause) int {
	switch c.Code {
	case 1, 2, 3:
		return 404
	case 34, 42, 66:
		return 503
	case 18:
		return 408
	case 19, 20, 31:
		return 480
	case 21:
		return 403
	case 22:
		return 410
	case 28:
		return 484
	case 17:
		return 486
	case 38, 127:
		return 500
	case 29:
		return 501
	case 27:
		return 502
	case 58:
		return 488
	case 487:
		return 487
	}
	return 603
}

// SIPStatus is the SIP final response FreeSWITCH sends for a hangup cause
// (hangup_cause_to_sip).
func SIPStatus(c callmodel.Cause) int {
	switch c {
	case callmodel.CauseUnallocatedNumber, callmodel.CauseNoRouteTransitNet, callmodel.CauseNoRouteDestination:
		return 404
	case callmodel.CauseNormalClearing:
		return 200
	case callmodel.CauseUserBusy:
		return 486
	case callmodel.CauseNoUserResponse:
		return 408
	case callmodel.CauseNoAnswer, callmodel.CauseSubscriberAbsent:
		return 480
	case callmodel.CauseCallRejected:
		return 603
	case callmodel.CauseNumberChanged, callmodel.CauseRedirectionToNewDest:
		return 410
	case callmodel.CauseDestinationOutOfOrder:
		return 502
	case callmodel.CauseInvalidNumberFormat:
		return 484
	case callmodel.CauseFacilityRejected:
		return 501
	case callmodel.CauseNormalUnspecified:
		return 480
	case callmodel.CauseNormalCircuitCongestion, callmodel.CauseNetworkOutOfOrder,
		callmodel.CauseNormalTemporaryFailure, callmodel.CauseSwitchCongestion,
		callmodel.CauseRequestedChanUnavail, callmodel.CauseBearerCapNotAvail,
		callmodel.CauseServiceUnavailable:
		return 503
	case callmodel.CauseIncompatibleDestination:
		return 488
	case callmodel.CauseRecoveryOnTimerExpire:
		return 504
	case callmodel.CauseOriginatorCancel:
		return 487
	case callmodel.CauseUserNotRegistered:
		return 404
	case callmodel.CauseExchangeRoutingError:
		return 483
	}
	return 500
}
