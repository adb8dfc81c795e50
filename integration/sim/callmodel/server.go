package callmodel

import (
	"sync"
)

// Hooks is how a front plugs its product's behaviour into a server. The
// model calls them inside a transaction; they must not block.
type Hooks interface {
	// PrepareInbound names and decorates a channel the model is about to
	// create for a call offered to the server (phone, PSTN, trunk): channel
	// name, context, product-specific variables. It runs before the
	// ChannelCreated event.
	PrepareInbound(tx *Tx, spec *ChannelSpec, call *InboundCall)
	// Route runs the server's dialplan for that new channel.
	Route(tx *Tx, uuid string)
	// BeforeHangup runs just before a channel's ChannelHangup event, so a
	// front can emit what its product emits before the hangup itself.
	BeforeHangup(tx *Tx, uuid string, cause Cause, reason HangupReason)
}

// Stamper is an optional extension of Hooks: Stamp is called as each event
// is queued, before any watcher or observer sees it, so a front can record
// its own view of the channel at that instant in ev.Stamp (its product's
// channel state, say) and change that view in step with the event.
type Stamper interface {
	Stamp(tx *Tx, ev *Event)
}

// BaseHooks does nothing; embed it to implement only some hooks.
type BaseHooks struct{}

// PrepareInbound names the channel "inbound/<caller number>" when unnamed.
func (BaseHooks) PrepareInbound(_ *Tx, spec *ChannelSpec, call *InboundCall) {
	if spec.Name == "" {
		spec.Name = "inbound/" + call.Caller.Number
	}
}

// Route does nothing.
func (BaseHooks) Route(*Tx, string) {}

// BeforeHangup does nothing.
func (BaseHooks) BeforeHangup(*Tx, string, Cause, HangupReason) {}

// Observer receives every event of a server, in sequence order, inside the
// transaction that produced it. It may act through tx (its own events are
// queued behind the current one) but must not block or call Server.Do.
type Observer func(tx *Tx, ev *Event)

type observer struct {
	fn  Observer
	off bool
}

// Server is one simulated media server. All its state is guarded by one
// mutex and changed only inside Do, which makes its event sequence a total
// order.
type Server struct {
	fleet *Fleet
	name  string
	kind  Kind
	ip    string

	mu        sync.Mutex
	chans     map[string]*channel
	seq       uint64
	observers []*observer
	hooks     Hooks
	timers    map[*chanTimer]struct{} // server-level timers
	stopped   bool
	restarts  int

	mbMu      sync.Mutex
	mbQueue   []func(*Tx)
	mbRunning bool
	mbStopped bool
}

func newServer(f *Fleet, cfg ServerConfig) *Server {
	return &Server{
		fleet:  f,
		name:   cfg.Name,
		kind:   cfg.Kind,
		ip:     cfg.IP,
		chans:  map[string]*channel{},
		hooks:  BaseHooks{},
		timers: map[*chanTimer]struct{}{},
	}
}

// Name returns the server's name.
func (s *Server) Name() string { return s.name }

// Kind returns the product the server imitates.
func (s *Server) Kind() Kind { return s.kind }

// IP returns the server's (fake) SIP address.
func (s *Server) IP() string { return s.ip }

// Fleet returns the server's fleet.
func (s *Server) Fleet() *Fleet { return s.fleet }

// SetHooks installs the front's hooks (nil restores BaseHooks).
func (s *Server) SetHooks(h Hooks) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h == nil {
		h = BaseHooks{}
	}
	s.hooks = h
}

// Subscribe adds an observer. The returned function removes it; it must
// not be called from inside a transaction of this server.
func (s *Server) Subscribe(fn Observer) (unsubscribe func()) {
	o := &observer{fn: fn}
	s.mu.Lock()
	// copy on write: a drain in progress keeps iterating its old slice
	obs := make([]*observer, len(s.observers), len(s.observers)+1)
	copy(obs, s.observers)
	s.observers = append(obs, o)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		o.off = true
		obs := make([]*observer, 0, len(s.observers))
		for _, x := range s.observers {
			if x != o {
				obs = append(obs, x)
			}
		}
		s.observers = obs
	}
}

// Do runs fn as one transaction: under the server's lock, then delivers the
// events fn produced (and those the observers produce in turn) before
// returning. fn must not block. It returns ErrStopped once the server is
// stopped.
func (s *Server) Do(fn func(tx *Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	tx := &Tx{s: s}
	err := fn(tx)
	tx.finish()
	return err
}

// Stopped reports whether the server was stopped.
func (s *Server) Stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// ChannelCount returns how many channels exist.
func (s *Server) ChannelCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.chans)
}

// Snapshot returns a channel's current state.
func (s *Server) Snapshot(uuid string) (Snapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.chans[uuid]
	if !ok {
		return Snapshot{}, false
	}
	return ch.snapshot(), true
}

// Channels returns every channel, oldest first.
func (s *Server) Channels() []Snapshot {
	s.mu.Lock()
	out := make([]Snapshot, 0, len(s.chans))
	for _, ch := range s.chans {
		out = append(out, ch.snapshot())
	}
	s.mu.Unlock()
	return sortedSnapshots(out)
}

// Restart makes the server lose every channel at once, without hangup
// events, as a crashed and restarted media server does. Observers get
// ServerRestarted; calls over trunks to other servers are hung up there
// (their far end vanished).
func (s *Server) Restart() error {
	return s.Do(func(tx *Tx) error {
		s.restarts++
		tx.dropAll()
		tx.emit(&Event{Kind: ServerRestarted})
		return nil
	})
}

// Restarts counts the restarts.
func (s *Server) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// Stop shuts the server down for good: timers are cancelled, channels
// vanish, observers get ServerStopped, and Do fails from then on.
func (s *Server) Stop() {
	s.mbMu.Lock()
	s.mbStopped = true
	s.mbQueue = nil
	s.mbMu.Unlock()
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	tx := &Tx{s: s}
	tx.dropAll()
	tx.emit(&Event{Kind: ServerStopped})
	tx.finish()
	for t := range s.timers {
		t.stop()
	}
	s.stopped = true
	s.mu.Unlock()
}

// post queues fn to run as its own transaction on this server, after the
// work queued before it. Cross-server effects (trunks) go through here so
// that no transaction ever holds two server locks.
func (s *Server) post(fn func(*Tx)) bool {
	s.mbMu.Lock()
	defer s.mbMu.Unlock()
	if s.mbStopped {
		return false
	}
	s.mbQueue = append(s.mbQueue, fn)
	if s.mbRunning {
		return true
	}
	s.mbRunning = true
	s.fleet.runners.Add(1)
	go s.runMailbox()
	return true
}

func (s *Server) runMailbox() {
	defer s.fleet.runners.Done()
	for {
		s.mbMu.Lock()
		if len(s.mbQueue) == 0 || s.mbStopped {
			s.mbQueue = nil
			s.mbRunning = false
			s.mbMu.Unlock()
			return
		}
		fn := s.mbQueue[0]
		s.mbQueue[0] = nil
		s.mbQueue = s.mbQueue[1:]
		s.mbMu.Unlock()
		_ = s.Do(func(tx *Tx) error { fn(tx); return nil })
	}
}
