package esl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// Config describes the FreeSWITCH front of one simulated server.
type Config struct {
	// Listen is the inbound event socket address (default 127.0.0.1:0).
	Listen string
	// Password is the event socket password (default ClueCon).
	Password string
	// Switchname is FreeSWITCH-Switchname and instance_name (default: the
	// model server's name).
	Switchname string
	// Hostname is FreeSWITCH-Hostname (default "sim").
	Hostname string
	// IPv4 and IPv6 are the FreeSWITCH-IPv4/-IPv6 headers (informational).
	IPv4, IPv6 string
	// Controllers are the outbound socket addresses the dialplan tries in
	// order for every call handed to the controller (public and default
	// contexts). None: such calls get DESTINATION_OUT_OF_ORDER.
	Controllers []string
	// Gateways maps a sofia gateway name to the model server it reaches
	// ("pstn" is the simulated PSTN and needs no entry).
	Gateways map[string]string
	// Heartbeat is the HEARTBEAT period (default 20 s; negative: none).
	Heartbeat time.Duration
	// ConnectTimeout bounds the TCP connect of the socket application
	// (default 2 s).
	ConnectTimeout time.Duration
	// ConnectWait is how long an outbound connection may take to send
	// "connect" (default 25 s, as mod_event_socket).
	ConnectWait time.Duration
	// MaxQueue is the number of frames a connection may have pending
	// before it is dropped as too slow (default 100000, mod_event_socket's
	// MAX_QUEUE_LEN).
	MaxQueue int
	Logger   *slog.Logger
}

// Server is the FreeSWITCH front of one model server: its inbound event
// socket, its outbound socket connections to the controller, and the
// FreeSWITCH engine (dialplan, applications, originate, api) behind them.
type Server struct {
	cfg   Config
	model *callmodel.Server
	fleet *callmodel.Fleet
	log   *slog.Logger
	core  core

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// seq is the Event-Sequence counter; only used under the model lock.
	seq       uint64
	sessionID int64
	started   time.Time

	lnMu     sync.Mutex
	ln       net.Listener
	addr     string
	refusing bool
	closed   bool

	regMu  sync.RWMutex
	bound  map[string][]*conn // outbound connections per channel
	byUUID map[string][]*conn // myevents subscribers per channel
	global []*conn            // "event" subscribers (copy on write)
	conns  map[*conn]struct{}

	unsubscribe func()
	hbCancel    func()
}

// New attaches a FreeSWITCH front to a model server. Start opens its event
// socket.
func New(model *callmodel.Server, cfg Config) (*Server, error) {
	if model.Kind() != callmodel.FreeSWITCH {
		return nil, fmt.Errorf("esl: server %s is a %s, not freeswitch", model.Name(), model.Kind())
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Password == "" {
		cfg.Password = "ClueCon"
	}
	if cfg.Switchname == "" {
		cfg.Switchname = model.Name()
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "sim"
	}
	if cfg.IPv4 == "" {
		cfg.IPv4 = model.IP()
		if cfg.IPv4 == "" {
			cfg.IPv4 = "127.0.0.1"
		}
	}
	if cfg.IPv6 == "" {
		cfg.IPv6 = "::1"
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 20 * time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 2 * time.Second
	}
	if cfg.ConnectWait <= 0 {
		cfg.ConnectWait = 25 * time.Second
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 100000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		cfg:    cfg,
		model:  model,
		fleet:  model.Fleet(),
		log:    cfg.Logger.With("sim", "esl", "server", model.Name()),
		byUUID: map[string][]*conn{},
		conns:  map[*conn]struct{}{},
	}
	s.core = core{
		uuid:       s.fleet.NewUUID(),
		hostname:   cfg.Hostname,
		switchname: cfg.Switchname,
		ipv4:       cfg.IPv4,
		ipv6:       cfg.IPv6,
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Model returns the model server behind the front.
func (s *Server) Model() *callmodel.Server { return s.model }

// CoreUUID returns the current Core-UUID (it changes on restart).
func (s *Server) CoreUUID() string {
	var id string
	_ = s.model.Do(func(*callmodel.Tx) error { id = s.core.uuid; return nil })
	return id
}

// Start installs the engine on the model server and opens the inbound
// event socket.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("esl %s: listen %s: %w", s.model.Name(), s.cfg.Listen, err)
	}
	s.lnMu.Lock()
	s.ln = ln
	s.addr = ln.Addr().String()
	s.lnMu.Unlock()
	s.started = s.now()
	s.model.SetHooks(s)
	s.unsubscribe = s.model.Subscribe(s.observe)
	if s.cfg.Heartbeat > 0 {
		_ = s.model.Do(func(tx *callmodel.Tx) error { s.scheduleHeartbeat(tx); return nil })
	}
	s.wg.Add(1)
	go s.acceptLoop(ln)
	s.log.Info("event socket listening", "addr", s.addr)
	return nil
}

// Addr returns the inbound event socket address.
func (s *Server) Addr() string {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	return s.addr
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept failed", "err", err)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		s.lnMu.Lock()
		refusing, closed := s.refusing, s.closed
		s.lnMu.Unlock()
		if refusing || closed {
			_ = nc.Close()
			continue
		}
		c := s.newConn(nc, false, "")
		c.start()
	}
}

// Close closes every connection and the listener and waits for all the
// front's goroutines. The model server is left to its owner.
func (s *Server) Close() error {
	s.lnMu.Lock()
	if s.closed {
		s.lnMu.Unlock()
		return nil
	}
	s.closed = true
	ln := s.ln
	s.lnMu.Unlock()
	s.cancel()
	if ln != nil {
		_ = ln.Close()
	}
	if s.unsubscribe != nil && !s.model.Stopped() {
		s.unsubscribe()
	}
	_ = s.model.Do(func(tx *callmodel.Tx) error {
		if s.hbCancel != nil {
			s.hbCancel()
			s.hbCancel = nil
		}
		return nil
	})
	s.dropAll()
	s.wg.Wait()
	return nil
}

func (s *Server) register(c *conn) bool {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	s.lnMu.Lock()
	closed := s.closed
	s.lnMu.Unlock()
	if closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) unregister(c *conn) {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	delete(s.conns, c)
	s.unindexLocked(c)
	s.unbindLocked(c)
}

// reindex files a connection under the events it subscribed to.
func (s *Server) reindex(c *conn, myevents bool, uuid string, enabled bool) {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	s.unindexLocked(c)
	if !enabled {
		return
	}
	if myevents && uuid != "" {
		s.byUUID[uuid] = append(s.byUUID[uuid], c)
		c.indexedUUID = uuid
		return
	}
	g := make([]*conn, len(s.global), len(s.global)+1)
	copy(g, s.global)
	s.global = append(g, c)
	c.indexedGlobal = true
}

func (s *Server) unindexLocked(c *conn) {
	if u := c.indexedUUID; u != "" {
		list := s.byUUID[u]
		out := list[:0:0]
		for _, x := range list {
			if x != c {
				out = append(out, x)
			}
		}
		if len(out) == 0 {
			delete(s.byUUID, u)
		} else {
			s.byUUID[u] = out
		}
		c.indexedUUID = ""
	}
	if c.indexedGlobal {
		g := make([]*conn, 0, len(s.global))
		for _, x := range s.global {
			if x != c {
				g = append(g, x)
			}
		}
		s.global = g
		c.indexedGlobal = false
	}
}

// observe is the front's model observer: the engine reacts to the event,
// then the FreeSWITCH events it stands for go to the connections that
// want them.
func (s *Server) observe(tx *callmodel.Tx, ev *callmodel.Event) {
	switch ev.Kind {
	case callmodel.ServerRestarted:
		s.core.uuid = s.fleet.NewUUID()
		s.seq = 0
		s.dropAll()
		return
	case callmodel.ServerStopped:
		s.dropAll()
		return
	}
	for _, fe := range s.render(ev, s.nextSeq) {
		s.deliver(fe)
	}
	s.react(tx, ev)
}

func (s *Server) nextSeq() uint64 {
	s.seq++
	return s.seq
}

// deliver offers an event to the connections subscribed to it.
func (s *Server) deliver(fe *fsEvent) {
	s.regMu.RLock()
	targets := s.global
	var mine []*conn
	if fe.uuid != "" {
		mine = s.byUUID[fe.uuid]
	}
	s.regMu.RUnlock()
	for _, c := range targets {
		c.offer(fe)
	}
	for _, c := range mine {
		c.offer(fe)
	}
	if fe.name == "CHANNEL_HANGUP_COMPLETE" && fe.snap != nil {
		// mod_event_socket notices the channel is down once it reached
		// CS_REPORTING: the controlling connections get their linger or
		// goodbye notice now, and no later event of the channel
		s.channelGone(fe.uuid, fe.snap.Name)
	}
}

// scheduleHeartbeat raises HEARTBEAT every Heartbeat period.
func (s *Server) scheduleHeartbeat(tx *callmodel.Tx) {
	s.hbCancel = tx.AfterFunc("", s.cfg.Heartbeat, func(tx *callmodel.Tx) {
		s.heartbeat(tx)
		s.scheduleHeartbeat(tx)
	})
}

func (s *Server) heartbeat(tx *callmodel.Tx) {
	up := s.now().Sub(s.started)
	d := up
	yr := d / (365 * 24 * time.Hour)
	d -= yr * 365 * 24 * time.Hour
	day := d / (24 * time.Hour)
	d -= day * 24 * time.Hour
	hr := d / time.Hour
	d -= hr * time.Hour
	mn := d / time.Minute
	d -= mn * time.Minute
	sec := d / time.Second
	d -= sec * time.Second
	ms := d / time.Millisecond
	d -= ms * time.Millisecond
	us := d / time.Microsecond
	n := tx.ChannelCount()
	s.emitServer(tx, "HEARTBEAT", []header{
		{"Event-Info", "System Ready"},
		{"Up-Time", fmt.Sprintf("%d years, %d days, %d hours, %d minutes, %d seconds, %d milliseconds, %d microseconds", yr, day, hr, mn, sec, ms, us)},
		{"FreeSWITCH-Version", "1.10.12-release~64bit"},
		{"Uptime-msec", fmt.Sprint(up.Milliseconds())},
		{"Session-Count", fmt.Sprint(n)},
		{"Max-Sessions", "100000"},
		{"Session-Per-Sec", "1000"},
		{"Session-Per-Sec-Last", "0"},
		{"Session-Per-Sec-Max", "0"},
		{"Session-Per-Sec-FiveMin", "0"},
		{"Session-Since-Startup", fmt.Sprint(s.sessionID)},
		{"Session-Peak-Max", fmt.Sprint(n)},
		{"Session-Peak-FiveMin", fmt.Sprint(n)},
		{"Idle-CPU", "99.000000"},
	}, "", false)
}

// dropAll closes every connection at once, without notice.
func (s *Server) dropAll() {
	s.regMu.RLock()
	list := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		list = append(list, c)
	}
	s.regMu.RUnlock()
	for _, c := range list {
		c.abort()
	}
}
