package ari

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config describes one simulated Asterisk.
type Config struct {
	// SystemName prefixes generated channel ids (ast1-1795306163.10).
	SystemName string
	// EntityID is the asterisk_id of every event (02:00:00:00:a5:01).
	EntityID string
	// Addr is the HTTP listen address; 127.0.0.1:0 when empty. Only
	// loopback addresses are accepted.
	Addr string
	// Username and Password of the ARI user (ari/ari when empty).
	Username string
	Password string
	// App is the application the dialplan hands inbound calls to with
	// Stasis(<App>,<context>,<exten>) ("controller" when empty).
	App string
	// StasisContexts are the inbound contexts that run Stasis
	// (from-sipp, from-trunk, from-pstn when empty).
	StasisContexts []string
	// PhoneContext is the context of phone endpoints, TrunkContext the one
	// of trunk endpoints, PSTNContext the one of the PSTN gateway
	// (from-sipp, from-trunk and from-pstn when empty).
	PhoneContext string
	TrunkContext string
	PSTNContext  string
	// PSTNEndpoint is the PJSIP endpoint of the PSTN gateway: PJSIP/<e164>@pstn
	// ("pstn" when empty).
	PSTNEndpoint string
	// TrunkServers maps trunk endpoint names to the simulated servers they
	// reach when they differ (PJSIP/2099@ast2 reaches server ast2 by default).
	TrunkServers map[string]string
	// Fallback is what the dialplan does after Stasis() fails because no
	// WebSocket serves the application (Congestion, cause 34, when zero).
	Fallback Fallback
	// Version is reported by GET /asterisk/info (22.10.1 when empty).
	Version string
	// TargetHangupAfter is how long a 1XX target stays up after answering
	// (30 s, the lab's Wait(30), when zero).
	TargetHangupAfter time.Duration
	// SIPAddr is the host:port of the server's SIP side, as it appears in
	// the Refer-To of a transfer (127.0.0.1:5080 when empty).
	SIPAddr string
	// HangupDelay is how long a channel in Stasis takes to go after a
	// hangup request (DELETE /channels/{id}): the Stasis thread acts on it
	// later, and a second request meanwhile is accepted and replaces the
	// cause, as integration/traces/asterisk/l-hangup-twice shows (2 ms when
	// zero).
	HangupDelay time.Duration
	// RTPStats adds the RTPAUDIOQOS* variables Asterisk sets when an
	// answered SIP channel hangs up.
	RTPStats bool
	Network  Network
	Logger   *slog.Logger
}

// Fallback is the dialplan priority after a failed Stasis().
type Fallback struct {
	App     string
	AppData string
	Cause   int
}

func (c *Config) defaults() error {
	if c.SystemName == "" {
		c.SystemName = "asterisk"
	}
	if c.EntityID == "" {
		c.EntityID = "02:00:00:00:00:01"
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("ari listen address %q: %w", c.Addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("ari listen address %q: only loopback addresses are allowed", c.Addr)
	}
	if c.Username == "" && c.Password == "" {
		c.Username, c.Password = "ari", "ari"
	}
	if c.App == "" {
		c.App = "controller"
	}
	if c.HangupDelay <= 0 {
		c.HangupDelay = 2 * time.Millisecond
	}
	if len(c.StasisContexts) == 0 {
		c.StasisContexts = []string{"from-sipp", "from-trunk", "from-pstn"}
	}
	if c.PhoneContext == "" {
		c.PhoneContext = "from-sipp"
	}
	if c.TrunkContext == "" {
		c.TrunkContext = "from-trunk"
	}
	if c.PSTNContext == "" {
		c.PSTNContext = "from-pstn"
	}
	if c.PSTNEndpoint == "" {
		c.PSTNEndpoint = "pstn"
	}
	if c.Fallback.App == "" {
		c.Fallback = Fallback{App: "Congestion", Cause: causeCongestion}
	}
	if c.TargetHangupAfter <= 0 {
		c.TargetHangupAfter = 30 * time.Second
	}
	if c.SIPAddr == "" {
		c.SIPAddr = "127.0.0.1:5080"
	}
	if c.Version == "" {
		c.Version = "22.10.1"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// Server is one simulated Asterisk: ARI over HTTP and WebSocket on a
// loopback port, and the SIP side through its Network.
type Server struct {
	cfg   Config
	eng   *engine
	net   Network
	log   *slog.Logger
	model *modelNet // set by Attach

	mu       sync.Mutex
	ln       net.Listener
	hsrv     *http.Server
	addr     string
	sessions map[*wsSession]struct{}
	fault    restFault
	stopped  bool
	serveErr chan error

	wg sync.WaitGroup
}

// restFault makes REST answer with an error status for a while.
type restFault struct {
	status int
	until  time.Time
	count  int // remaining failures when > 0 (until is ignored)
}

// New builds a server; Start makes it listen.
func New(cfg Config) (*Server, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("server", cfg.SystemName)
	s := &Server{cfg: cfg, net: cfg.Network, log: log}
	s.eng = newEngine(&s.cfg, cfg.Network, log)
	return s, nil
}

// Start listens on the configured address and serves until Close.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrClosed
	}
	if s.ln != nil {
		return errors.New("ari: server already started")
	}
	return s.listenLocked(s.cfg.Addr)
}

func (s *Server) listenLocked(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("ari listen %s: %w", addr, err)
	}
	s.ln = ln
	s.addr = ln.Addr().String()
	s.sessions = make(map[*wsSession]struct{})
	hsrv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.hsrv = hsrv
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := hsrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("ari http server stopped", "err", err)
		}
	}()
	s.log.Info("simulated asterisk listening", "addr", s.addr)
	return nil
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL is the ARI base URL, http://127.0.0.1:<port>/ari.
func (s *Server) URL() string { return "http://" + s.Addr() + "/ari" }

// WebSocketURL is the events URL for app, with credentials.
func (s *Server) WebSocketURL(app string) string {
	return "ws://" + s.Addr() + "/ari/events?app=" + url.QueryEscape(app) +
		"&api_key=" + url.QueryEscape(s.cfg.Username+":"+s.cfg.Password)
}

// Name is the server's system name.
func (s *Server) Name() string { return s.cfg.SystemName }

// App is the Stasis application inbound calls go to.
func (s *Server) App() string { return s.cfg.App }

// Close stops the server: every channel disappears, sockets close, timers
// stop. It waits for the server's goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()

	if s.model != nil {
		s.model.unsubscribe()
		s.model.cm.SetHooks(nil)
	}
	s.stopHTTP()
	e := s.eng
	e.lock()
	e.closed = true
	e.wipe(true)
	e.unlock()
	s.wg.Wait()
	e.inbox.close()
	e.disp.close()
	return nil
}

// stopHTTP closes the listener and every connection, and waits (a little)
// for the requests in progress.
func (s *Server) stopHTTP() {
	s.mu.Lock()
	hsrv := s.hsrv
	sessions := s.sessions
	s.sessions = nil
	s.hsrv, s.ln = nil, nil
	s.mu.Unlock()
	for sess := range sessions {
		sess.close()
	}
	if hsrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hsrv.Shutdown(ctx); err != nil {
			_ = hsrv.Close()
		}
	}
}

// wipe forgets every channel and bridge at once, without events, as a
// crashed Asterisk does. With hangupLegs, the SIP peers see their calls end
// (a model restart already ended them).
func (e *engine) wipe(hangupLegs bool) {
	for _, c := range e.channels {
		c.gone = true
		c.stopTimers()
		if c.leg != nil && hangupLegs {
			leg := c.leg
			e.later(func() { leg.Hangup(causeTemporaryFailure) })
		}
		c.leg = nil
	}
	e.channels = make(map[string]*channel)
	e.byEndpoint = make(map[string]map[string]*channel)
	e.bridges = make(map[string]*bridge)
	e.reserved = make(map[string]bool)
	for _, a := range e.apps {
		a.session = nil
	}
	e.epoch++
}

// forget drops every channel, bridge and application, as a restart does.
func (e *engine) forget(hangupLegs bool) {
	e.wipe(hangupLegs)
	e.apps = make(map[string]*stasisApp)
	e.localSeq, e.idSeq = 0, 0
	e.pjsipSeq.Store(0)
	now := e.now()
	e.startup, e.reload = now, now
}

func (s *Server) forget(hangupLegs bool) {
	e := s.eng
	e.lock()
	if !e.closed {
		e.forget(hangupLegs)
	}
	e.unlock()
	s.closeSessions()
}

// lostEverything is the model's restart (or stop): its channels are gone
// already. It runs inside a model transaction and does not block.
func (s *Server) lostEverything() { s.forget(false) }

// closeSessions drops every WebSocket without waiting.
func (s *Server) closeSessions() {
	s.mu.Lock()
	list := make([]*wsSession, 0, len(s.sessions))
	for sess := range s.sessions {
		list = append(list, sess)
	}
	s.mu.Unlock()
	for _, sess := range list {
		sess.close()
	}
}

// --- HTTP ------------------------------------------------------------------

// params merges the query string and the scalar fields of a JSON body, as
// Asterisk's generated handlers do.
type params struct {
	url.Values
	body map[string]json.RawMessage
}

func (p params) get(k string) string { return p.Values.Get(k) }

func (p params) has(k string) bool { _, ok := p.Values[k]; return ok }

func (p params) int(k string) (int, bool) {
	v := p.get(k)
	if v == "" {
		return 0, true
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}

func (p params) bool(k string) bool {
	v, _ := strconv.ParseBool(p.get(k))
	return v
}

// list reads a multi-valued parameter: repeated or comma separated.
func (p params) list(k string) []string {
	var out []string
	for _, v := range p.Values[k] {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// variables reads {"variables": {...}} from the body.
func (p params) variables() (map[string]string, *apiError) {
	raw, ok := p.body["variables"]
	if !ok {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, errf(400, "Only string values in the 'variables' object allowed")
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		s, ok := v.(string)
		if !ok {
			return nil, errf(400, "Only string values in the 'variables' object allowed")
		}
		out[k] = s
	}
	return out, nil
}

const maxBody = 1 << 20

func parseParams(r *http.Request) (params, *apiError) {
	p := params{Values: r.URL.Query()}
	if r.Body == nil || r.Method == http.MethodGet {
		return p, nil
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return p, errf(400, "Failed to read request body")
	}
	if len(data) > maxBody {
		return p, errf(400, "Request body too large")
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return p, nil
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(data, &body); err != nil {
		return p, errf(400, "Error parsing request body")
	}
	p.body = body
	for k, raw := range body {
		if k == "variables" {
			continue
		}
		var v any
		if json.Unmarshal(raw, &v) != nil {
			continue
		}
		switch x := v.(type) {
		case string:
			p.Values.Set(k, x)
		case float64:
			p.Values.Set(k, strconv.FormatFloat(x, 'f', -1, 64))
		case bool:
			p.Values.Set(k, strconv.FormatBool(x))
		}
	}
	return p, nil
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeError(w http.ResponseWriter, err *apiError) {
	b := append([]byte{'{'}, appendStrField(nil, "message", err.msg)...)
	writeJSON(w, err.status, append(b, '}'))
}

func writeNoContent(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }

func (s *Server) authorized(r *http.Request, q params) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		key := q.get("api_key")
		if key == "" {
			return false
		}
		user, pass, ok = strings.Cut(key, ":")
		if !ok {
			return false
		}
	}
	return subtle.ConstantTimeCompare([]byte(user), []byte(s.cfg.Username)) == 1 &&
		subtle.ConstantTimeCompare([]byte(pass), []byte(s.cfg.Password)) == 1
}

// injectedFault reports whether this request must fail (FailREST).
func (s *Server) injectedFault() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &s.fault
	switch {
	case f.count > 0:
		f.count--
		return f.status
	case !f.until.IsZero() && time.Now().Before(f.until):
		return f.status
	}
	return 0
}

// ServeHTTP is the ARI HTTP entry point.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if path != "/ari" && !strings.HasPrefix(path, "/ari/") {
		writeError(w, errf(404, "Not found"))
		return
	}
	q, perr := parseParams(r)
	if !s.authorized(r, q) {
		w.Header().Set("WWW-Authenticate", `Basic realm="Asterisk REST Interface"`)
		writeError(w, errf(401, "Authentication required"))
		return
	}
	if perr != nil {
		writeError(w, perr)
		return
	}
	segs := strings.Split(strings.Trim(strings.TrimPrefix(path, "/ari"), "/"), "/")
	if len(segs) == 1 && segs[0] == "events" && r.Method == http.MethodGet {
		if st := s.injectedFault(); st != 0 {
			writeError(w, errf(st, "Simulated failure"))
			return
		}
		s.handleEvents(w, r, q)
		return
	}
	if st := s.injectedFault(); st != 0 {
		writeError(w, errf(st, "Simulated failure"))
		return
	}
	s.route(w, r, segs, q)
}

// --- fault injection ---------------------------------------------------------

// DropWebSockets closes every ARI WebSocket abruptly, without a close
// frame. The applications become inactive; their channels stay in Stasis.
func (s *Server) DropWebSockets() {
	s.mu.Lock()
	var list []*wsSession
	for sess := range s.sessions {
		list = append(list, sess)
	}
	s.mu.Unlock()
	for _, sess := range list {
		s.dropSession(sess)
	}
}

// FailREST makes REST requests (and WebSocket upgrades) answer status for
// the next d. A zero d clears the fault.
func (s *Server) FailREST(status int, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		s.fault = restFault{}
		return
	}
	s.fault = restFault{status: status, until: time.Now().Add(d)}
}

// FailNextREST makes the next n REST requests answer status.
func (s *Server) FailNextREST(status, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = restFault{status: status, count: n}
}

// SendRaw writes frame, as is, on the WebSocket serving app: for
// malformed JSON, unknown event types, missing fields. It reports whether
// a socket was there to send it.
func (s *Server) SendRaw(app string, frame []byte) bool {
	e := s.eng
	e.lock()
	defer e.unlock()
	a := e.activeApp(app)
	if a == nil {
		return false
	}
	a.session.enqueue(append([]byte(nil), frame...))
	return true
}

// Restart simulates an Asterisk restart: the listener and every socket
// close, every channel and bridge vanishes without an event (SIP peers see
// their calls end), the applications are forgotten, and after down the
// server listens again on the same address with a new startup time. A
// non-empty entityID changes the asterisk_id.
func (s *Server) Restart(ctx context.Context, down time.Duration, entityID string) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return ErrClosed
	}
	addr := s.addr
	s.mu.Unlock()

	s.stopHTTP()
	if entityID != "" {
		s.eng.lock()
		s.cfg.EntityID = entityID
		s.eng.unlock()
	}
	if s.model != nil {
		// The model drops its channels and tells the far ends; its
		// ServerRestarted event makes this server forget everything.
		if err := s.model.cm.Restart(); err != nil {
			return fmt.Errorf("ari restart: %w", err)
		}
	} else {
		s.forget(true)
	}

	if down > 0 {
		t := time.NewTimer(down)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrClosed
	}
	var err error
	for i := 0; i < 50; i++ {
		if err = s.listenLocked(addr); err == nil {
			return nil
		}
		s.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		s.mu.Lock()
		if s.stopped {
			return ErrClosed
		}
	}
	return fmt.Errorf("ari restart: %w", err)
}
