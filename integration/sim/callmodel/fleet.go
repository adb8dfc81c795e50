package callmodel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
)

// ErrStopped is returned for operations on a stopped server or fleet.
var ErrStopped = errors.New("callmodel: server stopped")

// Fleet is a set of simulated media servers plus the world around them: the
// phones registered on each server, the simulated PSTN, and the record of
// every ring.
type Fleet struct {
	clock Clock
	log   *slog.Logger

	mu          sync.Mutex // guards the fields below; never held while taking a server lock
	servers     map[string]*Server
	order       []string
	phones      map[phoneKey]Behaviour
	pstn        map[string]Behaviour
	pstnDefault *Behaviour
	rings       []*Ring
	closed      bool

	rngMu sync.Mutex
	rng   *rand.ChaCha8

	runners sync.WaitGroup // mailbox goroutines
}

type phoneKey struct{ server, ext string }

// Option configures a fleet.
type Option func(*Fleet)

// WithClock sets the clock (default: RealClock).
func WithClock(c Clock) Option { return func(f *Fleet) { f.clock = c } }

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(f *Fleet) { f.log = l } }

// WithSeed makes generated uuids reproducible.
func WithSeed(seed uint64) Option {
	return func(f *Fleet) {
		var s [32]byte
		binary.LittleEndian.PutUint64(s[:], seed)
		f.rng = rand.NewChaCha8(s)
	}
}

// NewFleet returns an empty fleet.
func NewFleet(opts ...Option) *Fleet {
	f := &Fleet{
		servers: map[string]*Server{},
		phones:  map[phoneKey]Behaviour{},
		pstn:    map[string]Behaviour{},
	}
	for _, o := range opts {
		o(f)
	}
	if f.clock == nil {
		f.clock = RealClock()
	}
	if f.log == nil {
		f.log = slog.Default()
	}
	if f.rng == nil {
		var s [32]byte
		binary.LittleEndian.PutUint64(s[:], rand.Uint64())
		binary.LittleEndian.PutUint64(s[8:], rand.Uint64())
		f.rng = rand.NewChaCha8(s)
	}
	return f
}

// Clock returns the fleet's clock.
func (f *Fleet) Clock() Clock { return f.clock }

// Logger returns the fleet's logger.
func (f *Fleet) Logger() *slog.Logger { return f.log }

// NewUUID returns a random (version 4) uuid from the fleet's generator.
func (f *Fleet) NewUUID() string {
	var b [16]byte
	f.rngMu.Lock()
	binary.LittleEndian.PutUint64(b[:8], f.rng.Uint64())
	binary.LittleEndian.PutUint64(b[8:], f.rng.Uint64())
	f.rngMu.Unlock()
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	out := make([]byte, 36)
	j := 0
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j] = hex[c>>4]
		out[j+1] = hex[c&0x0f]
		j += 2
	}
	return string(out)
}

// ServerConfig describes a server to add.
type ServerConfig struct {
	Name string
	Kind Kind
	// IP is the address the server's SIP traffic appears to come from, as
	// seen by the other servers (a distinct fake loopback address).
	IP string
}

// AddServer creates a server. Its fronts attach with SetHooks and Subscribe.
func (f *Fleet) AddServer(cfg ServerConfig) (*Server, error) {
	if cfg.Name == "" {
		return nil, errors.New("callmodel: server without a name")
	}
	if cfg.Kind != FreeSWITCH && cfg.Kind != Asterisk {
		return nil, fmt.Errorf("callmodel: server %s: unknown kind %q", cfg.Name, cfg.Kind)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, ErrStopped
	}
	if _, dup := f.servers[cfg.Name]; dup {
		return nil, fmt.Errorf("callmodel: server %s already exists", cfg.Name)
	}
	s := newServer(f, cfg)
	f.servers[cfg.Name] = s
	f.order = append(f.order, cfg.Name)
	return s, nil
}

// Server returns the named server or nil.
func (f *Fleet) Server(name string) *Server {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.servers[name]
}

// Servers returns the servers in the order they were added.
func (f *Fleet) Servers() []*Server {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*Server, 0, len(f.order))
	for _, n := range f.order {
		out = append(out, f.servers[n])
	}
	return out
}

// SetPhone registers (or re-scripts) phone ext on server. ModeUnregistered
// keeps the phone known but not registered.
func (f *Fleet) SetPhone(server, ext string, b Behaviour) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.phones[phoneKey{server, ext}] = b
}

// RemovePhone forgets a phone.
func (f *Fleet) RemovePhone(server, ext string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.phones, phoneKey{server, ext})
}

// Phone returns the behaviour of a phone.
func (f *Fleet) Phone(server, ext string) (Behaviour, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.phones[phoneKey{server, ext}]
	return b, ok
}

// PhoneRegistered reports whether the phone exists and is registered.
func (f *Fleet) PhoneRegistered(server, ext string) bool {
	b, ok := f.Phone(server, ext)
	return ok && b.Mode != ModeUnregistered
}

// SetPSTN scripts a PSTN number.
func (f *Fleet) SetPSTN(number string, b Behaviour) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pstn[number] = b
}

// SetPSTNDefault scripts every PSTN number without its own behaviour (nil:
// such numbers are unallocated).
func (f *Fleet) SetPSTNDefault(b *Behaviour) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b == nil {
		f.pstnDefault = nil
		return
	}
	c := *b
	f.pstnDefault = &c
}

// PSTN returns the behaviour of a PSTN number.
func (f *Fleet) PSTN(number string) (Behaviour, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b, ok := f.pstn[number]; ok {
		return b, true
	}
	if f.pstnDefault != nil {
		return *f.pstnDefault, true
	}
	return Behaviour{}, false
}

// Rings returns a copy of every ring recorded so far, oldest first.
func (f *Fleet) Rings() []Ring {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Ring, len(f.rings))
	for i, r := range f.rings {
		out[i] = *r
	}
	return out
}

// RingsOf returns the rings of one phone (server, ext) or, with server "",
// of a PSTN number.
func (f *Fleet) RingsOf(server, target string) []Ring {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Ring
	for _, r := range f.rings {
		if r.Target != target {
			continue
		}
		if server == "" && !r.PSTN {
			continue
		}
		if server != "" && (r.PSTN || r.Server != server) {
			continue
		}
		out = append(out, *r)
	}
	return out
}

// ResetRings forgets the recorded rings (rings still in progress are kept).
func (f *Fleet) ResetRings() {
	f.mu.Lock()
	defer f.mu.Unlock()
	kept := f.rings[:0]
	for _, r := range f.rings {
		if !r.Ended() {
			kept = append(kept, r)
		}
	}
	for i := len(kept); i < len(f.rings); i++ {
		f.rings[i] = nil
	}
	f.rings = kept
}

// NoteTransferProgress records a NOTIFY (sipfrag status) about a REFER the
// phone on channel uuid sent.
func (f *Fleet) NoteTransferProgress(uuid string, frag int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.rings {
		if r.UUID == uuid {
			r.Notifies = append(append([]int(nil), r.Notifies...), frag)
		}
	}
}

func (f *Fleet) addRing(r *Ring) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rings = append(f.rings, r)
}

func (f *Fleet) updateRing(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// PlaceCall offers a call to a server (a phone or the PSTN calling in) and
// returns the new channel's uuid. The server's hooks route it.
func (f *Fleet) PlaceCall(server string, call InboundCall) (string, error) {
	s := f.Server(server)
	if s == nil {
		return "", fmt.Errorf("callmodel: place call: no server %q", server)
	}
	var uuid string
	err := s.Do(func(tx *Tx) error {
		var err error
		uuid, err = tx.Inbound(call)
		return err
	})
	return uuid, err
}

// Close stops every server and waits for the fleet's goroutines.
func (f *Fleet) Close() {
	f.mu.Lock()
	f.closed = true
	servers := make([]*Server, 0, len(f.servers))
	for _, n := range f.order {
		servers = append(servers, f.servers[n])
	}
	f.mu.Unlock()
	for _, s := range servers {
		s.Stop()
	}
	f.runners.Wait()
}

// sortedSnapshots orders snapshots by creation time then uuid.
func sortedSnapshots(in []Snapshot) []Snapshot {
	sort.Slice(in, func(i, j int) bool {
		if in[i].Created.Equal(in[j].Created) {
			return in[i].UUID < in[j].UUID
		}
		return in[i].Created.Before(in[j].Created)
	})
	return in
}
