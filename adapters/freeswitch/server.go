// Package freeswitch connects callctl to FreeSWITCH over the Event Socket.
//
// FreeSWITCH's dialplan hands each call to callctl with
// `socket <callctl-addr> async full` (an outbound connection). Server accepts
// those connections, maps each to the MediaServer it comes from, and gives the
// call to a Handler (the controller's Engine), which owns it until it ends and
// drives it with sendmsg. MediaServer is the inbound connection to each
// server (:8021): api/bgapi, registration checks, and the hangup events of the
// legs callctl creates.
//
// The Event Socket itself (frames, connections, commands and their replies,
// bgapi jobs) is package esl, which says what it takes from eslgo v1.5.2
// and why not the rest. Each connection has one reader goroutine that applies
// frames in the order FreeSWITCH sent them (so a call's events are handled in
// Event-Sequence order without sorting). The adapter sees a connection
// through the small interfaces it needs (socket for a call, inbound for a
// MediaServer), so that its state machines are tested with esltest's fakes;
// it decides when the inbound connection reconnects, and both sides can be
// shut down.
//
// Events of one call arrive on two connections (the caller's channel on its
// outbound connection, the legs' hangups on the inbound one), whose relative
// order is not guaranteed: where it matters the adapter asks FreeSWITCH
// (uuid_exists) or waits, bounded, for the other side's event rather than
// assume an order.
//
// One call, one owner: when a channel this node owns arrives on a second
// connection (after a transfer FreeSWITCH runs the dialplan, hence socket,
// again), the first owner lets go without hanging up and keeps its
// connection open until FreeSWITCH's linger notice, and the second
// connection is handed to the handler as a transferred call once the first
// handler has returned.
//
// Per call the adapter costs one reader goroutine (about 2 KiB of stack) and
// a few KiB of heap; the handler's goroutine is the engine's. Frame buffers
// are pooled and held only while a connection has unread bytes.
package freeswitch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/callctl/callctl/adapters/freeswitch/esl"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/routing"
)

// Handler owns a call until it ends; *controller.Engine is one.
type Handler interface {
	Handle(ms controller.MediaServer, call controller.Call) error
}

// Options tune a Server. Zero values take the defaults shown.
type Options struct {
	Logger *slog.Logger
	// HandshakeTimeout bounds connect/myevents/linger (5s).
	HandshakeTimeout time.Duration
	// CommandTimeout bounds one command's reply (5s).
	CommandTimeout time.Duration
	// DialGrace is added to a member's ring timeout before a bridge that
	// reported nothing is given up (30s).
	DialGrace time.Duration
	// LegGoneWait bounds each wait for a failed attempt's channel to be gone
	// (10s).
	LegGoneWait time.Duration
	// LingerWait is how long, after the handler ended the call, the connection
	// waits for FreeSWITCH's hangup before closing (10s).
	LingerWait time.Duration
	// TransferWait bounds how long a second connection for a channel waits for
	// the first owner's handler to let go (15s).
	TransferWait time.Duration
	// SettleWait bounds each wait, when the connected leg ended and the
	// handler hangs the caller up, for FreeSWITCH to end the bridge and say
	// whether the caller hangs up or is transferred (1s).
	SettleWait time.Duration
	// OrphanKillWait bounds the attempt to end a call whose socket was lost
	// through the inbound connection (10s).
	OrphanKillWait time.Duration
	// Allow lists addresses besides the servers' own that may connect (the
	// node's listen.esl_allow): a server behind NAT, a second interface.
	Allow []netip.Prefix
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&o.HandshakeTimeout, 5*time.Second)
	set(&o.CommandTimeout, 5*time.Second)
	set(&o.DialGrace, 30*time.Second)
	set(&o.LegGoneWait, 10*time.Second)
	set(&o.LingerWait, 10*time.Second)
	set(&o.TransferWait, 15*time.Second)
	set(&o.OrphanKillWait, 10*time.Second)
	set(&o.SettleWait, time.Second)
}

// Server is the outbound-socket listener.
type Server struct {
	h       Handler
	servers []*MediaServer
	opt     Options
	log     *slog.Logger
	gate    *peerGate

	mu       sync.Mutex
	ln       net.Listener
	calls    map[string]*call // the current owner of each channel
	conns    map[*call]struct{}
	closing  bool
	wg       sync.WaitGroup // one per accepted connection until finalized
	serveErr chan error
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("freeswitch: server closed")

// NewServer returns a Server handing calls from servers to h. Only the
// servers' own addresses (and opt.Allow) may connect.
//
// Each connection is mapped to a MediaServer by, in order: the channel
// variable callctl_server (set in the dialplan), the FreeSWITCH-Switchname
// (MediaServerConfig.Switchname, by default the server's name), and, when
// the Server has exactly one MediaServer, that one. One listener can
// therefore serve several FreeSWITCH servers as long as each sets
// callctl_server or has a distinct switchname.
func NewServer(h Handler, servers []*MediaServer, opt Options) *Server {
	opt.defaults()
	return &Server{h: h, servers: servers, opt: opt, log: opt.Logger, gate: newPeerGate(opt.Allow, opt.Logger),
		calls: map[string]*call{}, conns: map[*call]struct{}{}}
}

// Listen binds addr (use 127.0.0.1:0 in tests).
func (s *Server) Listen(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		_ = ln.Close()
		return errors.New("freeswitch: already listening")
	}
	s.ln = ln
	return nil
}

// Addr is the bound address (nil before Listen).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve accepts connections until Shutdown; it returns ErrServerClosed then.
func (s *Server) Serve() error {
	s.mu.Lock()
	ln := s.ln
	servers := s.servers
	s.mu.Unlock()
	if ln == nil {
		return errors.New("freeswitch: Serve before Listen")
	}
	// Connections are taken from the servers served from now on.
	s.gate.addServers(servers)
	s.log.Info("accepting FreeSWITCH outbound connections", "addr", ln.Addr().String())
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		delay = 0
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			_ = nc.Close()
			continue
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(nc)
	}
}

// Shutdown stops accepting (FreeSWITCH's dialplan falls over to the next
// node) and waits for the calls in progress to end. When ctx ends first, the
// remaining connections are closed (their calls are ended through the inbound
// connection) and Shutdown waits for them to finish, returning ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	ln := s.ln
	s.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	left := make([]*call, 0, len(s.conns))
	for c := range s.conns {
		left = append(left, c)
	}
	s.mu.Unlock()
	s.log.Warn("shutdown deadline: closing the remaining FreeSWITCH connections", "calls", len(left))
	for _, c := range left {
		c.conn.Close()
	}
	<-done
	return ctx.Err()
}

// closingNow reports whether Shutdown has begun.
func (s *Server) closingNow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// ActiveCalls is the number of outbound connections being served.
func (s *Server) ActiveCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// EventQueues is, per server, how many bytes of events FreeSWITCH has sent
// on the calls' own connections that callctl has not read yet, summed.
func (s *Server) EventQueues() map[string]int {
	s.mu.Lock()
	calls := make([]*call, 0, len(s.conns))
	for c := range s.conns {
		calls = append(calls, c)
	}
	s.mu.Unlock()
	out := make(map[string]int)
	for _, c := range calls {
		n, _ := c.conn.Unread()
		out[c.ms.Name()] += n
	}
	return out
}

func (s *Server) forget(c *call) {
	s.mu.Lock()
	if s.calls[c.id] == c {
		delete(s.calls, c.id)
	}
	_, was := s.conns[c]
	delete(s.conns, c)
	s.mu.Unlock()
	if was {
		s.wg.Done()
	}
}

// serveConn runs one outbound connection: handshake, hand the call to the
// handler, and let the call close the socket once FreeSWITCH is done with it.
func (s *Server) serveConn(nc net.Conn) {
	start := time.Now()
	peer := peerAddr(nc)
	if !s.gate.allowed(peer) {
		// Not a FreeSWITCH server of the plan: nothing is sent or read.
		// Counted before the close, so a peer that sees the close can
		// already read the refusal in the metrics.
		s.gate.refuse(peer, refusedPeer)
		_ = nc.Close()
		s.wg.Done()
		return
	}
	c, err := s.handshake(nc, peer)
	if err != nil {
		if !errors.Is(err, errSessionEnded) {
			s.log.Warn("FreeSWITCH outbound connection refused", "remote", nc.RemoteAddr().String(), "err", err)
			_ = nc.Close()
			s.wg.Done()
		}
		return
	}
	s.serveCall(c, start)
}

// serveCall hands a call whose connection is set up to the handler, or to
// the call already holding its channel (a transfer), or refuses it.
func (s *Server) serveCall(c *call, start time.Time) {
	// From here the call's own finalisation calls wg.Done.
	prev, ok := s.claim(c)
	if !ok {
		// A second connection for a channel another connection owns, from
		// another server: not a transfer, and not this channel's controller.
		s.gate.refuse(c.peer, refusedTakeover, "call", c.id, "server", c.ms.Name(), "owner_peer", prev.peer.String(),
			"owner_server", prev.ms.Name())
		c.refuse()
		return
	}
	if prev != nil && !s.secondHandoff(c, prev) {
		ctx, cancel := context.WithTimeout(context.Background(), s.opt.CommandTimeout)
		if err := c.Hangup(ctx, routing.CauseFailure); err != nil {
			c.log.Warn("hangup failed", "err", err)
		}
		cancel()
		c.handlerReturned(nil)
		return
	}
	c.log.Info("call handed over by FreeSWITCH", "dialed", c.info.Dialed, "caller", c.info.Caller,
		"source", c.info.Source, "handshake", time.Since(start).Round(time.Microsecond))
	// The handler runs on a goroutine of its own, started here so that the
	// handshake's deep frames are not under it for the whole call: the stack
	// that stays while the call is up is then a few frames, and the runtime
	// shrinks it back to a few KiB.
	go s.runHandler(c)
}

// runHandler hands the call to the handler until it returns. Its frame
// stays on the stack for the whole call, under the handler's: what it does
// besides is in calls of their own, so that it stays small.
func (s *Server) runHandler(c *call) {
	var err error
	defer func() { c.handlerReturned(err) }()
	defer c.recoverHandler()
	err = s.h.Handle(c.ms, c)
}

// recoverHandler, deferred, makes a panic of the handler cost its call only.
func (c *call) recoverHandler() {
	if r := recover(); r != nil {
		c.log.Error("call handler panicked", "panic", fmt.Sprint(r))
	}
}

// handshake sends connect, reads the channel data, subscribes to the
// channel's events and turns lingering on.
func (s *Server) handshake(nc net.Conn, peer netip.Addr) (*call, error) {
	ec, h, err := esl.Accept(nc, time.Now().Add(s.opt.HandshakeTimeout), s.log)
	if err != nil {
		return nil, err
	}
	c, err := s.newCall(ec, h, peer, time.Now())
	if err != nil {
		ec.Abort()
		return nil, err
	}
	return c, s.open(c)
}

// newCall makes the call of an outbound connection from its channel data
// (the connect reply's headers, read before the socket is started).
func (s *Server) newCall(sock socket, h esl.Headers, peer netip.Addr, arrived time.Time) (*call, error) {
	id := h.Get("Unique-ID")
	if !validUUID(id) {
		return nil, fmt.Errorf("connect reply without a usable Unique-ID (%q)", id)
	}
	ms := s.mediaServerFor(h)
	if ms == nil {
		// Nobody to hand it to: hang it up rather than leave it parked.
		msg, _ := esl.AppendHangup(nil, "", routing.CauseFailure.String())
		_ = sock.Post(msg)
		return nil, fmt.Errorf("call %s from switch %q (callctl_server %q) matches no configured server",
			id, h.Get("FreeSWITCH-Switchname"), h.Get("variable_callctl_server"))
	}
	info := callInfo(h, ms.Name())
	info.Arrived = arrived
	ctx, cancel := context.WithCancel(context.Background())
	c := &call{srv: s, ms: ms, id: id, peer: peer, info: info, cancel: cancel, handled: make(chan struct{}),
		log: callLog{l: s.log, id: id, server: ms.Name()}}
	c.connectSeq, _ = strconv.ParseUint(h.Get("Event-Sequence"), 10, 64)
	c.xferSource = transferSource(h)
	c.ctx = ctx
	c.conn = sock
	return c, nil
}

// open registers the call, starts reading its socket and subscribes to the
// channel's events (myevents, linger). On failure the call's own
// finalisation has cleaned up and the error is errSessionEnded.
func (s *Server) open(c *call) error {
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	c.conn.Start(c)
	if err := c.conn.Subscribe(c.ctx); err != nil {
		c.log.Warn("event subscription failed: ending the session", "err", err)
		c.conn.Close()
		c.mu.Lock()
		c.handlerDone = true
		close(c.handled)
		c.mu.Unlock()
		<-c.conn.Done()
		c.maybeFinalize()
		return errSessionEnded
	}
	return nil
}

// errSessionEnded: the handshake failed after the call was registered; its
// own finalisation already cleaned up.
var errSessionEnded = errors.New("session ended during the handshake")

// claim registers c as the owner of its channel and returns the previous
// owner, if the channel already had one on this node. A channel moves to a
// new connection only from the server that handed it over (a transfer
// makes that server run socket again): ok is false, and nothing changes,
// for a connection from another server or another address.
func (s *Server) claim(c *call) (prev *call, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev = s.calls[c.id]
	if prev != nil && (prev.ms != c.ms || prev.peer != c.peer) {
		return prev, false
	}
	s.calls[c.id] = c
	return prev, true
}

// secondHandoff handles a connection for a channel that already has one: the
// channel was transferred (uuid_transfer, a REFER, a transfer app) and the
// dialplan ran socket again. The first connection lets go (its handler sees
// the call end, its socket stays open until FreeSWITCH's linger notice, since
// closing it would end the new session's park and kill the call); the new one
// waits for the first handler to return, then is handled as a transferred
// call. It returns false when the new connection must not be handled.
func (s *Server) secondHandoff(c, prev *call) bool {
	prev.mu.Lock()
	loop := prev.handedOff && prev.handoffTo == c.info.Dialed
	prev.mu.Unlock()
	if loop {
		// callctl handed these digits to the dialplan and the dialplan handed
		// them straight back: the hand-off context runs socket. Stop here
		// rather than loop.
		c.log.Error("call came back for the digits callctl handed to the dialplan: the hand-off context must not run socket",
			"dialed", c.info.Dialed, "context", c.ms.cfg.Context)
	}
	c.log.Info("second connection for a channel this node owns: transfer recognised", "dialed", c.info.Dialed,
		"transfer", c.info.Transfer)
	prev.transferredAway("a new connection arrived for the channel")
	t := time.NewTimer(s.opt.TransferWait)
	defer t.Stop()
	select {
	case <-prev.handled:
	case <-t.C:
		c.log.Warn("the previous owner did not let go in time", "waited", s.opt.TransferWait)
	}
	return !loop
}

// mediaServerFor maps a connection's channel data to a configured server.
func (s *Server) mediaServerFor(h esl.Headers) *MediaServer {
	if name := h.Get("variable_callctl_server"); name != "" {
		for _, m := range s.servers {
			if m.cfg.Name == name {
				return m
			}
		}
		return nil
	}
	sw := h.Get("FreeSWITCH-Switchname")
	for _, m := range s.servers {
		if sw != "" && m.cfg.Switchname == sw {
			return m
		}
	}
	if len(s.servers) == 1 {
		return s.servers[0]
	}
	return nil
}

// callInfo reads what routing needs from the channel data.
func callInfo(h esl.Headers, server string) controller.CallInfo {
	info := controller.CallInfo{
		Server:     server,
		Caller:     h.Get("Caller-Caller-ID-Number"),
		CallerName: h.Get("Caller-Caller-ID-Name"),
		Withheld:   h.Get("Caller-Privacy-Hide-Number") == "true",
		Domain:     h.Get("variable_domain_name"),
		MarkOrg:    h.Get("variable_sip_h_X-Callctl-Org"),
		Dialed:     h.Get("Caller-Destination-Number"),
	}
	if ip := h.Get("variable_sip_network_ip"); ip != "" {
		info.Source = ip
		if port := h.Get("variable_sip_network_port"); port != "" {
			if strings.Contains(ip, ":") {
				info.Source = "[" + ip + "]"
			}
			info.Source += ":" + port
		}
	}
	if us, err := strconv.ParseInt(h.Get("Caller-Channel-Created-Time"), 10, 64); err == nil && us > 0 {
		info.Start = time.UnixMicro(us)
	}
	if h.Get("variable_loopback_leg") == "B" {
		// FreeSWITCH's att_xfer originates the consultation from the
		// phone's own channel, into callctl through loopback (the phones'
		// context); loopback names the channel that originated it on the -b
		// leg. A SIP peer cannot set channel variables, and the engine
		// believes the name only for a leg it connected to a user itself.
		info.ConsultationOf = h.Get("variable_other_loopback_from_uuid")
	}
	if src := transferSource(h); src != "" {
		// <epoch>:<uuid>:bl_xfer:<exten>/<context>/<dialplan>. Who moved the
		// call on decides how it routes (SPEC §4): a SIP REFER names its
		// sender (Refer-To, Referred-By) and is a user's transfer; without
		// them FreeSWITCH itself transferred it (uuid_transfer, an IVR, a
		// dialplan transfer), with no user.
		refer := h.Get("variable_sip_refer_to") != "" || h.Get("variable_sip_h_Referred-By") != ""
		switch {
		case strings.Contains(src, ":att_xfer"):
			info.Transfer = routing.Attended
		case refer:
			info.Transfer = routing.Blind
		default:
			info.Transfer = routing.IVR
		}
		info.OriginalCaller = info.Caller
		info.OriginalName = info.CallerName
		// Caller-RDNIS is the destination before the transfer: for an
		// external call, the DID whose org the transfer stays in.
		info.Previous = h.Get("Caller-RDNIS")
		// The transferring user is the REFER's Referred-By. Without a usable
		// one the engine asks who the channel was connected to.
		if u := sipUser(h.Get("variable_sip_h_Referred-By")); refer && validNumber(u) {
			info.Caller = u
		}
	}
	return info
}

// transferSource is the channel's latest transfer, as FreeSWITCH writes it
// on each transfer (<epoch>:<uuid>:bl_xfer:<exten>/<context>/<dialplan>).
func transferSource(h esl.Headers) string {
	if src := h.Get("variable_transfer_source"); src != "" {
		return src
	}
	return h.Get("Caller-Transfer-Source")
}

// sipUser returns the user part of "<sip:user@host>" or "Name <sip:user@host;...>".
func sipUser(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		v = v[i+1:]
	}
	v = strings.TrimPrefix(strings.TrimPrefix(v, "sips:"), "sip:")
	if i := strings.IndexAny(v, "@;>"); i >= 0 {
		v = v[:i]
	}
	return v
}
