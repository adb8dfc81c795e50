package ari

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// engine is the state of one simulated Asterisk: channels, bridges and Stasis
// applications. One mutex guards it all; events are encoded and queued to the
// WebSocket sessions while it is held, so every application sees the events
// of a server in the order they happened. Calls into the Network are never
// made with the mutex held (see unlock), so two simulated servers trunked to
// each other cannot deadlock.
type engine struct {
	mu  sync.Mutex
	cfg *Config
	log *slog.Logger
	net Network

	channels map[string]*channel
	bridges  map[string]*bridge
	apps     map[string]*stasisApp
	reserved map[string]bool // ids of channels being dialed over the network
	// epVars are the set_var lines of PJSIP endpoints (SetEndpointVar).
	epVars map[string][][2]string
	// byEndpoint indexes the SIP channels by PJSIP endpoint, for
	// GET /endpoints (a controller checks registrations per dial).
	byEndpoint map[string]map[string]*channel

	idSeq    int // the ".N" of generated unique ids
	localSeq int // Local/...-%08x
	// pjsipSeq numbers PJSIP/<endpoint>-%08x; atomic because the model
	// names inbound channels without taking the engine lock.
	pjsipSeq atomic.Int64

	startup time.Time
	reload  time.Time
	epoch   int // bumped by restart; stale timers check it

	closed bool
	after  []func() // network calls queued while mu was held
	disp   *dispatcher
	// inbox applies what the network reports (far end ringing, answering,
	// hanging up; calls arriving from the model) in order, on its own
	// goroutine, so a model transaction never waits for the engine lock.
	inbox *dispatcher
}

// stasisApp is a registered ARI application. It outlives its WebSocket: a
// closed socket only deactivates it, as in Asterisk, and the subscription
// model chosen when it was created stays.
type stasisApp struct {
	name         string
	subscribeAll bool
	// allChannels, allBridges: subscribed to eventSource "channel:" or
	// "bridge:" (no id), every channel or bridge of the server, as
	// subscribeAll but without endpoints and device states.
	allChannels, allBridges bool
	session                 *wsSession
	endpointSubs            map[string]bool
}

func newEngine(cfg *Config, net Network, log *slog.Logger) *engine {
	now := time.Now().UTC()
	return &engine{
		cfg:        cfg,
		log:        log,
		net:        net,
		channels:   make(map[string]*channel),
		bridges:    make(map[string]*bridge),
		apps:       make(map[string]*stasisApp),
		reserved:   make(map[string]bool),
		byEndpoint: make(map[string]map[string]*channel),
		startup:    now,
		reload:     now,
		disp:       newDispatcher(),
		inbox:      newDispatcher(),
	}
}

func (e *engine) lock() { e.mu.Lock() }

// unlock releases the engine and hands the network calls queued while it
// was held to the dispatcher.
func (e *engine) unlock() {
	after := e.after
	e.after = nil
	e.mu.Unlock()
	if len(after) > 0 {
		e.disp.push(after)
	}
}

// unlockSync releases the engine and waits until the network calls queued
// while it was held have run. REST handlers use it so that, as with a real
// server, what a request changed on the SIP side (the caller answered, two
// legs bridged, a leg hung up) is done when the reply arrives.
func (e *engine) unlockSync() {
	after := e.after
	e.after = nil
	e.mu.Unlock()
	if len(after) > 0 {
		e.disp.pushWait(after)
	}
}

// later queues f to run on the dispatcher goroutine once the engine is
// unlocked. Network calls never run under the engine lock nor on the
// caller's stack, so a Network may call back into the server while holding
// its own locks, and two servers trunked together cannot deadlock.
func (e *engine) later(f func()) { e.after = append(e.after, f) }

// dispatcher runs queued network calls in order on one goroutine.
type dispatcher struct {
	mu      sync.Mutex
	closing bool
	q       []func()
	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
}

func newDispatcher() *dispatcher {
	d := &dispatcher{wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	go d.run()
	return d
}

func (d *dispatcher) push(fs []func()) {
	d.mu.Lock()
	d.q = append(d.q, fs...)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// pushWait queues fs and waits until they ran (not at all once the
// dispatcher is closing).
func (d *dispatcher) pushWait(fs []func()) {
	done := make(chan struct{})
	d.mu.Lock()
	if d.closing {
		d.mu.Unlock()
		return
	}
	d.q = append(d.q, fs...)
	d.q = append(d.q, func() { close(done) })
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	<-done
}

func (d *dispatcher) drain() {
	for {
		d.mu.Lock()
		q := d.q
		d.q = nil
		d.mu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, f := range q {
			f()
		}
	}
}

func (d *dispatcher) run() {
	defer close(d.stopped)
	for {
		select {
		case <-d.wake:
			d.drain()
		case <-d.stop:
			d.drain()
			return
		}
	}
}

// close runs what is queued and stops the goroutine.
func (d *dispatcher) close() {
	d.mu.Lock()
	d.closing = true
	d.mu.Unlock()
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	<-d.stopped
}

// now is the time of events and snapshots: UTC, as on the recorded lab
// servers (+0000).
func (e *engine) now() time.Time { return time.Now().UTC() }

// newID generates an Asterisk unique id: <system name>-<unix time>.<n>.
func (e *engine) newID() string {
	id := fmt.Sprintf("%s-%d.%d", e.cfg.SystemName, time.Now().Unix(), e.idSeq)
	e.idSeq++
	return id
}

// afterFunc runs f with the engine locked after d, unless the server was
// restarted or closed in between, or the channel (if any) is gone.
func (e *engine) afterFunc(c *channel, d time.Duration, f func()) *time.Timer {
	epoch := e.epoch
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		e.lock()
		defer e.unlock()
		if e.closed || e.epoch != epoch || (c != nil && c.gone) {
			return
		}
		if c != nil {
			c.dropTimer(t)
		}
		f()
	})
	if c != nil {
		c.timers = append(c.timers, t)
	}
	return t
}

// --- applications and routing -------------------------------------------

func (e *engine) app(name string) *stasisApp {
	return e.apps[name]
}

func (e *engine) activeApp(name string) *stasisApp {
	a := e.apps[name]
	if a == nil || a.session == nil {
		return nil
	}
	return a
}

// deliver sends one encoded event body to every application in apps that
// has a live WebSocket. Events for inactive applications are dropped, as
// Asterisk drops them ("Inactive Stasis app missed message").
func (e *engine) deliver(body []byte, apps []*stasisApp) {
	for _, a := range apps {
		if a.session == nil {
			continue
		}
		frame := finishEvent(make([]byte, 0, len(body)+80), body, e.cfg.EntityID, a.name)
		a.session.enqueue(frame)
	}
}

// recipients lists the applications interested in an event about the given
// channels and bridge: explicit subscriptions, the Stasis application a
// channel is in, applications watching the bridge, subscribeAll ones and
// those subscribed to every channel or bridge.
func (e *engine) recipients(br *bridge, chans ...*channel) []*stasisApp {
	var out []*stasisApp
	add := func(name string) {
		a := e.apps[name]
		if a == nil {
			return
		}
		for _, x := range out {
			if x == a {
				return
			}
		}
		out = append(out, a)
	}
	for _, c := range chans {
		if c == nil {
			continue
		}
		for _, name := range c.subs {
			add(name)
		}
		if c.stasis != "" {
			add(c.stasis)
		}
	}
	if br != nil {
		for name := range br.subs {
			add(name)
		}
	}
	anyChannel := false
	for _, c := range chans {
		anyChannel = anyChannel || c != nil
	}
	for _, a := range e.apps {
		if a.subscribeAll || a.allChannels && anyChannel || a.allBridges && br != nil {
			add(a.name)
		}
	}
	return out
}

// emitToApp sends an event to one application only: Asterisk sends
// StasisStart and StasisEnd to the application the channel enters or
// leaves (app_send), not to others that watch the channel.
func (e *engine) emitToApp(body []byte, app string) {
	if a := e.apps[app]; a != nil {
		e.deliver(body, []*stasisApp{a})
	}
}

func (e *engine) emit(body []byte, br *bridge, chans ...*channel) {
	apps := e.recipients(br, chans...)
	if len(apps) == 0 {
		return
	}
	e.deliver(body, apps)
}

// --- lookups ---------------------------------------------------------------

func (e *engine) channelIDs() []string {
	ids := make([]string, 0, len(e.channels))
	for id := range e.channels {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// appChannelIDs lists the channels an application is subscribed to.
func (e *engine) appChannelIDs(app string) []string {
	var ids []string
	for id, c := range e.channels {
		if c.stasis == app || c.subscribed(app) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

func (e *engine) appBridgeIDs(app string) []string {
	var ids []string
	for id, b := range e.bridges {
		if b.subs[app] {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// addChannel registers c (and indexes a SIP channel by its endpoint).
func (e *engine) addChannel(c *channel) {
	e.channels[c.snap.ID] = c
	if c.tech != techPJSIP {
		return
	}
	ep := endpointOfName(c.snap.Name)
	m := e.byEndpoint[ep]
	if m == nil {
		m = make(map[string]*channel)
		e.byEndpoint[ep] = m
	}
	m[c.snap.ID] = c
}

func (e *engine) removeChannel(c *channel) {
	delete(e.channels, c.snap.ID)
	if c.tech != techPJSIP {
		return
	}
	ep := endpointOfName(c.snap.Name)
	if m := e.byEndpoint[ep]; m != nil {
		delete(m, c.snap.ID)
		if len(m) == 0 {
			delete(e.byEndpoint, ep)
		}
	}
}

// endpointChannelIDs lists the channels of a PJSIP endpoint, sorted.
func (e *engine) endpointChannelIDs(ep string) []string {
	ids := []string{}
	for id := range e.byEndpoint[ep] {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// endpointOfName is the endpoint of PJSIP/<endpoint>-<n>.
func endpointOfName(name string) string {
	name = strings.TrimPrefix(name, "PJSIP/")
	if i := strings.LastIndexByte(name, '-'); i >= 0 {
		return name[:i]
	}
	return name
}

// splitEndpoint splits "tech/resource" the way Asterisk does (first slash).
func splitEndpoint(ep string) (tech, resource string, ok bool) {
	tech, resource, ok = strings.Cut(ep, "/")
	if !ok || tech == "" || resource == "" {
		return "", "", false
	}
	return tech, resource, true
}
