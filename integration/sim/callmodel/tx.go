package callmodel

import (
	"errors"
	"fmt"
	"time"
)

// ErrNoChannel is returned for a uuid the server does not know (or that
// already hung up).
var ErrNoChannel = errors.New("callmodel: no such channel")

// Tx is one transaction on a server: everything a front or a timer does
// happens inside one. It is only valid during the Do call (or the observer
// or timer callback) that provided it.
type Tx struct {
	s        *Server
	pending  []*Event
	pos      int
	destroys []*channel
	gone     map[string][]*watcher
}

type watcher struct {
	fn  func(tx *Tx, ev *Event) bool
	off bool
}

// chanTimer is a timer owned by a channel (stopped when it hangs up) or by
// the server (uuid "").
type chanTimer struct {
	s    *Server
	uuid string
	t    Timer
	fn   func(*Tx)
	done bool
}

func (t *chanTimer) stop() {
	if t.done {
		return
	}
	t.done = true
	if t.t != nil {
		t.t.Stop()
	}
}

// Server returns the server of the transaction.
func (tx *Tx) Server() *Server { return tx.s }

// Fleet returns the server's fleet.
func (tx *Tx) Fleet() *Fleet { return tx.s.fleet }

// Now returns the fleet clock's time.
func (tx *Tx) Now() time.Time { return tx.s.fleet.clock.Now() }

// NewUUID returns a fresh uuid.
func (tx *Tx) NewUUID() string { return tx.s.fleet.NewUUID() }

func (tx *Tx) emit(ev *Event) *Event {
	tx.s.seq++
	ev.Seq = tx.s.seq
	ev.Server = tx.s.name
	if ev.Time.IsZero() {
		ev.Time = tx.Now()
	}
	tx.pending = append(tx.pending, ev)
	if st, ok := tx.s.hooks.(Stamper); ok {
		st.Stamp(tx, ev)
	}
	return ev
}

func (tx *Tx) emitChan(kind EventKind, ch *channel) *Event {
	return tx.emit(&Event{Kind: kind, Channel: ch.snapshot()})
}

// finish delivers the queued events, then destroys the channels that hung
// up, whose ChannelDestroyed events are delivered in turn.
func (tx *Tx) finish() {
	for {
		for tx.pos < len(tx.pending) {
			ev := tx.pending[tx.pos]
			tx.pending[tx.pos] = nil
			tx.pos++
			tx.dispatch(ev)
		}
		if len(tx.destroys) == 0 {
			break
		}
		list := tx.destroys
		tx.destroys = nil
		for _, ch := range list {
			tx.destroy(ch)
		}
	}
	tx.pending = tx.pending[:0]
	tx.pos = 0
}

func (tx *Tx) dispatch(ev *Event) {
	if ev.Channel.UUID != "" {
		var ws []*watcher
		if ch, ok := tx.s.chans[ev.Channel.UUID]; ok {
			ws = ch.watch
		} else if tx.gone != nil {
			ws = tx.gone[ev.Channel.UUID]
		}
		for _, w := range ws {
			if !w.off && !w.fn(tx, ev) {
				w.off = true
			}
		}
		if ev.Kind == ChannelBridged || ev.Kind == ChannelUnbridged {
			if ch, ok := tx.s.chans[ev.Other.UUID]; ok {
				for _, w := range ch.watch {
					if !w.off && !w.fn(tx, ev) {
						w.off = true
					}
				}
			}
		}
	}
	for _, o := range tx.s.observers {
		if !o.off {
			o.fn(tx, ev)
		}
	}
}

func (tx *Tx) destroy(ch *channel) {
	uuid := ch.snap.UUID
	if tx.s.chans[uuid] != ch {
		return
	}
	if tx.gone == nil {
		tx.gone = map[string][]*watcher{}
	}
	tx.gone[uuid] = ch.watch
	ch.watch = nil
	// queued while the channel is still there, so that a Stamper sees it
	tx.emit(&Event{Kind: ChannelDestroyed, Channel: ch.snapshot()})
	delete(tx.s.chans, uuid)
}

// get returns a live (not hung up) channel.
func (tx *Tx) get(uuid string) (*channel, error) {
	ch, ok := tx.s.chans[uuid]
	if !ok || ch.dead {
		return nil, fmt.Errorf("%w: %s", ErrNoChannel, uuid)
	}
	return ch, nil
}

// Exists reports whether the channel exists and has not hung up.
func (tx *Tx) Exists(uuid string) bool {
	ch, ok := tx.s.chans[uuid]
	return ok && !ch.dead
}

// Snapshot returns the channel's current state; it also finds a channel
// that hung up but is not destroyed yet.
func (tx *Tx) Snapshot(uuid string) (Snapshot, bool) {
	ch, ok := tx.s.chans[uuid]
	if !ok {
		return Snapshot{}, false
	}
	return ch.snapshot(), true
}

// Channels returns every channel, oldest first.
func (tx *Tx) Channels() []Snapshot {
	out := make([]Snapshot, 0, len(tx.s.chans))
	for _, ch := range tx.s.chans {
		out = append(out, ch.snapshot())
	}
	return sortedSnapshots(out)
}

// ChannelCount returns how many channels exist.
func (tx *Tx) ChannelCount() int { return len(tx.s.chans) }

// Ext returns the front's private state of a channel (nil if none).
func (tx *Tx) Ext(uuid string) any {
	if ch, ok := tx.s.chans[uuid]; ok {
		return ch.ext
	}
	return nil
}

// SetExt stores the front's private state of a channel; it lives as long
// as the channel.
func (tx *Tx) SetExt(uuid string, v any) error {
	ch, ok := tx.s.chans[uuid]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoChannel, uuid)
	}
	ch.ext = v
	return nil
}

// Var returns a channel variable.
func (tx *Tx) Var(uuid, name string) (string, bool) {
	ch, ok := tx.s.chans[uuid]
	if !ok {
		return "", false
	}
	return ch.vars.get(name)
}

// SetVar sets a channel variable.
func (tx *Tx) SetVar(uuid, name, value string) error {
	ch, ok := tx.s.chans[uuid]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoChannel, uuid)
	}
	ch.vars.set(name, value)
	return nil
}

// UnsetVar removes a channel variable.
func (tx *Tx) UnsetVar(uuid, name string) error {
	ch, ok := tx.s.chans[uuid]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoChannel, uuid)
	}
	ch.vars.unset(name)
	return nil
}

// SetName renames a channel.
func (tx *Tx) SetName(uuid, name string) error {
	ch, err := tx.get(uuid)
	if err != nil {
		return err
	}
	ch.snap.Name = name
	return nil
}

// SetCaller changes the caller id a channel carries.
func (tx *Tx) SetCaller(uuid string, p Party) error {
	ch, err := tx.get(uuid)
	if err != nil {
		return err
	}
	ch.snap.Caller = p
	return nil
}

// SetCallee changes the callee id a channel carries.
func (tx *Tx) SetCallee(uuid string, p Party) error {
	ch, err := tx.get(uuid)
	if err != nil {
		return err
	}
	ch.snap.Callee = p
	return nil
}

// SetRoute changes the destination and context (a transfer) and emits
// ChannelUpdated.
func (tx *Tx) SetRoute(uuid, destination, context string) error {
	ch, err := tx.get(uuid)
	if err != nil {
		return err
	}
	ch.snap.Destination = destination
	ch.snap.Context = context
	tx.emitChan(ChannelUpdated, ch)
	return nil
}

// Emit queues a Note event about a channel (uuid "" for the server). Fronts
// use notes for what only their product has (dialplan applications, park),
// so that those facts take their place in the server's single sequence.
func (tx *Tx) Emit(uuid, name string, data any) *Event {
	ev := &Event{Kind: Note, Name: name, Data: data}
	if uuid != "" {
		if ch, ok := tx.s.chans[uuid]; ok {
			ev.Channel = ch.snapshot()
		}
	}
	return tx.emit(ev)
}

// Watch calls fn with every later event of the channel (bridge events of
// either side included) until fn returns false or the channel has been
// destroyed (fn sees ChannelDestroyed).
func (tx *Tx) Watch(uuid string, fn func(tx *Tx, ev *Event) bool) error {
	ch, ok := tx.s.chans[uuid]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoChannel, uuid)
	}
	ch.watch = append(ch.watch, &watcher{fn: fn})
	return nil
}

// AfterFunc runs fn in a new transaction after d. A timer bound to a
// channel (uuid != "") is cancelled when the channel hangs up; uuid "" binds
// it to the server. The returned function cancels it; call it only inside
// a transaction of this server.
func (tx *Tx) AfterFunc(uuid string, d time.Duration, fn func(tx *Tx)) (cancel func()) {
	t := &chanTimer{s: tx.s, uuid: uuid, fn: fn}
	if uuid != "" {
		ch, ok := tx.s.chans[uuid]
		if !ok || ch.dead {
			return func() {}
		}
		if ch.timers == nil {
			ch.timers = map[*chanTimer]struct{}{}
		}
		ch.timers[t] = struct{}{}
	} else {
		tx.s.timers[t] = struct{}{}
	}
	s := tx.s
	t.t = s.fleet.clock.AfterFunc(d, func() {
		_ = s.Do(func(tx *Tx) error {
			if t.done {
				return nil
			}
			t.done = true
			if t.uuid == "" {
				delete(s.timers, t)
			} else {
				ch, ok := s.chans[t.uuid]
				if !ok {
					return nil
				}
				delete(ch.timers, t)
				if ch.dead {
					return nil
				}
			}
			t.fn(tx)
			return nil
		})
	})
	return func() {
		t.stop()
		if t.uuid == "" {
			delete(s.timers, t)
		} else if ch, ok := s.chans[t.uuid]; ok {
			delete(ch.timers, t)
		}
	}
}

// Post runs fn as a later transaction on the named server (this one
// included), after whatever was posted to it before.
func (tx *Tx) Post(server string, fn func(tx *Tx)) error {
	s := tx.s
	if server != s.name {
		s = tx.s.fleet.Server(server)
		if s == nil {
			return fmt.Errorf("callmodel: post: no server %q", server)
		}
	}
	if !s.post(fn) {
		return ErrStopped
	}
	return nil
}

func (tx *Tx) create(spec ChannelSpec, origin Origin) (*channel, error) {
	uuid := spec.UUID
	if uuid == "" {
		uuid = tx.NewUUID()
	}
	if _, dup := tx.s.chans[uuid]; dup {
		return nil, fmt.Errorf("callmodel: channel %s already exists", uuid)
	}
	dir := spec.Direction
	if dir == 0 {
		dir = Outbound
	}
	ch := &channel{snap: Snapshot{
		Server:      tx.s.name,
		UUID:        uuid,
		Name:        spec.Name,
		Direction:   dir,
		State:       StateDown,
		Caller:      spec.Caller,
		Callee:      spec.Callee,
		Destination: spec.Destination,
		Context:     spec.Context,
		NetworkIP:   spec.NetworkIP,
		Created:     tx.Now(),
		Origin:      origin,
	}}
	if len(spec.Headers) > 0 {
		ch.snap.Headers = append([]Var(nil), spec.Headers...)
	}
	ch.ext = spec.Ext
	for _, v := range spec.Vars {
		ch.vars.set(v.Name, v.Value)
	}
	tx.s.chans[uuid] = ch
	return ch, nil
}

// NewChannel creates a channel for a front (say, the leg an originate
// creates before knowing what it reaches).
func (tx *Tx) NewChannel(spec ChannelSpec) (string, error) {
	ch, err := tx.create(spec, OriginFront)
	if err != nil {
		return "", err
	}
	tx.emitChan(ChannelCreated, ch)
	return ch.snap.UUID, nil
}

// NewLocalPair creates the two halves of a local channel (FreeSWITCH
// loopback, Asterisk Local). a is the half the creator controls (outbound),
// b the half that runs the pair's dialplan (inbound): the front routes it.
// Ringing, early media and answer of b reach a; a hangup of either reaches
// the other with the same cause.
func (tx *Tx) NewLocalPair(a, b ChannelSpec) (string, string, error) {
	if a.Direction == 0 {
		a.Direction = Outbound
	}
	if b.Direction == 0 {
		b.Direction = Inbound
	}
	ca, err := tx.create(a, OriginFront)
	if err != nil {
		return "", "", err
	}
	cb, err := tx.create(b, OriginFront)
	if err != nil {
		delete(tx.s.chans, ca.snap.UUID)
		return "", "", err
	}
	ca.snap.Partner, ca.snap.Leg = cb.snap.UUID, LegA
	cb.snap.Partner, cb.snap.Leg = ca.snap.UUID, LegB
	tx.emitChan(ChannelCreated, ca)
	tx.emitChan(ChannelCreated, cb)
	return ca.snap.UUID, cb.snap.UUID, nil
}

// Dial creates an outbound channel from spec towards a phone, the PSTN or
// another server, and plays the far end's behaviour on it. It fails with a
// *CauseError, creating nothing, when the far end cannot be reached at all
// (unknown or unregistered phone, unallocated PSTN number, unknown server).
// Any other outcome (ringing, answer, busy, ...) arrives later as events of
// the returned channel.
func (tx *Tx) Dial(spec ChannelSpec, ep Endpoint) (string, error) {
	switch ep.Kind {
	case EndpointPhone:
		b, ok := tx.s.fleet.Phone(tx.s.name, ep.Target)
		if !ok {
			return "", &CauseError{CauseSubscriberAbsent}
		}
		if b.Mode == ModeUnregistered {
			return "", &CauseError{CauseUserNotRegistered}
		}
		return tx.dialRemote(spec, ep, b)
	case EndpointPSTN:
		b, ok := tx.s.fleet.PSTN(ep.Target)
		if !ok {
			return "", &CauseError{CauseUnallocatedNumber}
		}
		if b.Mode == ModeUnregistered {
			return "", &CauseError{CauseUnallocatedNumber}
		}
		return tx.dialRemote(spec, ep, b)
	case EndpointTrunk:
		return tx.dialTrunk(spec, ep)
	}
	return "", fmt.Errorf("callmodel: dial: unknown endpoint kind %d", ep.Kind)
}

// Inbound offers a call to this server: it creates the inbound channel
// (named by the front's PrepareInbound), starts the caller's plan, and
// hands the channel to the front's Route.
func (tx *Tx) Inbound(call InboundCall) (string, error) {
	if call.Origin == 0 {
		call.Origin = OriginPhone
	}
	spec := ChannelSpec{
		UUID:        call.UUID,
		Direction:   Inbound,
		Caller:      call.Caller,
		Destination: call.Destination,
		Context:     call.Context,
		Headers:     call.Headers,
		NetworkIP:   call.NetworkIP,
	}
	tx.s.hooks.PrepareInbound(tx, &spec, &call)
	ch, err := tx.create(spec, call.Origin)
	if err != nil {
		return "", err
	}
	uuid := ch.snap.UUID
	if call.Origin == OriginTrunk {
		ch.snap.PeerServer = call.FromServer
		ch.snap.PeerUUID = call.PeerUUID
	}
	if call.Plan != (CallerPlan{}) {
		ch.caller = &callerPlan{plan: call.Plan}
	}
	tx.emitChan(ChannelCreated, ch)
	if ch.caller != nil && ch.caller.plan.GiveUpAfter > 0 {
		ch.caller.giveUp = tx.AfterFunc(uuid, ch.caller.plan.GiveUpAfter, func(tx *Tx) {
			if c, err := tx.get(uuid); err == nil && c.snap.State != StateUp {
				tx.Hangup(uuid, CauseOriginatorCancel, ByRemote)
			}
		})
	}
	tx.s.hooks.Route(tx, uuid)
	return uuid, nil
}

// Ring marks the channel as alerting (first time: ChannelRinging). On the
// B half of a local pair or the receiving side of a trunk call it reaches
// the calling side too.
func (tx *Tx) Ring(uuid string) error {
	ch, err := tx.get(uuid)
	if err != nil {
		return err
	}
	if ch.snap.State != StateDown {
		return nil
	}
	ch.snap.State = StateRinging
	ch.snap.Ringing = tx.Now()
	tx.emitChan(ChannelRinging, ch)
	tx.propagate(ch, func(tx *Tx, uuid string) { _ = tx.Ring(uuid) })
	return nil
}

// EarlyMedia marks the channel as having early media (first time:
// ChannelEarlyMedia), propagating like Ring.
func (tx *Tx) EarlyMedia(uuid string) error {
	ch, err := tx.get(uuid)
	if err != nil {
		return err
	}
	if ch.snap.State == StateEarly || ch.snap.State == StateUp {
		return nil
	}
	ch.snap.State = StateEarly
	ch.snap.EarlyMedia = tx.Now()
	tx.emitChan(ChannelEarlyMedia, ch)
	tx.propagate(ch, func(tx *Tx, uuid string) { _ = tx.EarlyMedia(uuid) })
	return nil
}

// Answer answers the channel (ChannelAnswered), propagating like Ring.
func (tx *Tx) Answer(uuid string) error {
	ch, err := tx.get(uuid)
	if err != nil {
		return err
	}
	if ch.snap.State == StateUp {
		return nil
	}
	ch.snap.State = StateUp
	ch.snap.Answered = tx.Now()
	tx.emitChan(ChannelAnswered, ch)
	if ch.remote != nil {
		r := ch.remote.ring
		now := ch.snap.Answered
		tx.s.fleet.updateRing(func() { r.Answered = now; r.Outcome = OutcomeAnswered })
	}
	if cp := ch.caller; cp != nil {
		if cp.giveUp != nil {
			cp.giveUp()
			cp.giveUp = nil
		}
		if cp.plan.HangupAfterAnswer > 0 {
			tx.AfterFunc(uuid, cp.plan.HangupAfterAnswer, func(tx *Tx) {
				tx.Hangup(uuid, CauseNormalClearing, ByRemote)
			})
		}
	}
	tx.propagate(ch, func(tx *Tx, uuid string) { _ = tx.Answer(uuid) })
	return nil
}

// propagate applies a signalling step of a called side to its calling side:
// the A half of a local pair, or the sending channel of a trunk call.
func (tx *Tx) propagate(ch *channel, step func(tx *Tx, uuid string)) {
	if ch.snap.Leg == LegB && ch.snap.Partner != "" {
		step(tx, ch.snap.Partner)
	}
	if ch.snap.Origin == OriginTrunk && ch.snap.PeerUUID != "" {
		peer := ch.snap.PeerUUID
		_ = tx.Post(ch.snap.PeerServer, func(tx *Tx) { step(tx, peer) })
	}
}

// Bridge connects a (the side asking) and b: ChannelBridged. A channel
// already bridged elsewhere is unbridged first.
func (tx *Tx) Bridge(a, b string) error {
	if a == b {
		return fmt.Errorf("callmodel: bridge %s with itself", a)
	}
	ca, err := tx.get(a)
	if err != nil {
		return err
	}
	cb, err := tx.get(b)
	if err != nil {
		return err
	}
	if ca.snap.BridgedTo != "" {
		tx.Unbridge(a)
	}
	if cb.snap.BridgedTo != "" {
		tx.Unbridge(b)
	}
	now := tx.Now()
	ca.snap.BridgedTo, cb.snap.BridgedTo = b, a
	ca.snap.Bridged, cb.snap.Bridged = now, now
	ca.bridgeInitiator, cb.bridgeInitiator = true, false
	tx.emit(&Event{Kind: ChannelBridged, Channel: ca.snapshot(), Other: cb.snapshot()})
	return nil
}

// Unbridge ends the bridge of a channel (ChannelUnbridged, with Channel the
// side that asked for the bridge). It is a no-op for an unbridged channel.
func (tx *Tx) Unbridge(uuid string) {
	ch, ok := tx.s.chans[uuid]
	if !ok || ch.snap.BridgedTo == "" {
		return
	}
	other, ok := tx.s.chans[ch.snap.BridgedTo]
	ch.snap.BridgedTo = ""
	if !ok {
		return
	}
	other.snap.BridgedTo = ""
	a, b := ch, other
	if !ch.bridgeInitiator && other.bridgeInitiator {
		a, b = other, ch
	}
	tx.emit(&Event{Kind: ChannelUnbridged, Channel: a.snapshot(), Other: b.snapshot()})
}

// Hangup hangs the channel up with cause. It reports false when the
// channel does not exist or already hung up. The channel's timers stop, its
// bridge ends, the other half of a local pair and the far end of a trunk
// call hang up too, and ChannelDestroyed follows at the end of the
// transaction.
func (tx *Tx) Hangup(uuid string, cause Cause, reason HangupReason) bool {
	ch, ok := tx.s.chans[uuid]
	if !ok || ch.dead {
		return false
	}
	if cause.IsZero() {
		cause = CauseNormalClearing
	}
	tx.s.hooks.BeforeHangup(tx, uuid, cause, reason)
	if ch.dead { // the hook may have hung it up itself
		return false
	}
	ch.dead = true
	for t := range ch.timers {
		t.stop()
	}
	ch.timers = nil
	wasUp := ch.snap.State == StateUp
	ch.snap.State = StateHangup
	ch.snap.Cause = cause
	ch.snap.Hungup = tx.Now()
	ev := tx.emitChan(ChannelHangup, ch)
	ev.Reason = reason
	tx.Unbridge(uuid)
	if ch.remote != nil {
		tx.endRing(ch, wasUp, reason)
	}
	if ch.snap.Partner != "" {
		tx.Hangup(ch.snap.Partner, cause, ByPartner)
	}
	if ch.snap.PeerUUID != "" {
		peer := ch.snap.PeerUUID
		fromCalled := ch.snap.Origin == OriginTrunk
		_ = tx.Post(ch.snap.PeerServer, func(tx *Tx) {
			c, ok := tx.s.chans[peer]
			if !ok || c.dead {
				return
			}
			pc := cause
			if !fromCalled {
				// the caller went away: a CANCEL before the answer, a BYE after
				pc = CauseNormalClearing
				if c.snap.State != StateUp {
					pc = CauseOriginatorCancel
				}
			}
			tx.Hangup(peer, pc, ByRemote)
		})
	}
	tx.destroys = append(tx.destroys, ch)
	return true
}

// dropAll removes every channel without hangup events (restart, stop).
func (tx *Tx) dropAll() {
	for uuid, ch := range tx.s.chans {
		for t := range ch.timers {
			t.stop()
		}
		ch.timers = nil
		if ch.remote != nil && !ch.dead {
			r := ch.remote.ring
			now := tx.Now()
			tx.s.fleet.updateRing(func() {
				r.End = now
				r.Outcome = OutcomeLost
			})
		}
		if ch.snap.PeerUUID != "" && !ch.dead {
			peer := ch.snap.PeerUUID
			_ = tx.Post(ch.snap.PeerServer, func(tx *Tx) {
				c, ok := tx.s.chans[peer]
				if !ok || c.dead {
					return
				}
				// the far end vanished: an answered call ends on the media
				// timeout, a pending one on the transport error
				cause := CauseNormalTemporaryFailure
				if c.snap.State == StateUp {
					cause = CauseMediaTimeout
				}
				tx.Hangup(peer, cause, ByRemote)
			})
		}
		ch.dead = true
		delete(tx.s.chans, uuid)
	}
	tx.destroys = nil
}
