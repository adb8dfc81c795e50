package ari

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// waitTimeout is generous: tests run on loaded 2-core machines.
const waitTimeout = 15 * time.Second

// --- a raw ARI client --------------------------------------------------------

type client struct {
	t    testing.TB
	base string // http://127.0.0.1:port/ari
	srv  *Server
	hc   *http.Client
}

func newClient(t testing.TB, s *Server) *client {
	return &client{t: t, base: s.URL(), srv: s, hc: &http.Client{Timeout: waitTimeout}}
}

// do sends a request with basic auth; path is relative to /ari.
func (c *client) do(method, path string, q url.Values, body any) (int, []byte) {
	c.t.Helper()
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		c.t.Fatalf("request %s %s: %v", method, u, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.SetBasicAuth("ari", "ari")
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return resp.StatusCode, data
}

// must sends a request and requires the status.
func (c *client) must(status int, method, path string, q url.Values, body any) []byte {
	c.t.Helper()
	st, b := c.do(method, path, q, body)
	if st != status {
		c.t.Fatalf("%s %s %v: status %d (%s), want %d", method, path, q, st, b, status)
	}
	return b
}

func vals(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// --- an event stream ---------------------------------------------------------

type recEvent struct {
	raw []byte
	ev  jEvent
}

type stream struct {
	t      testing.TB
	conn   *websocket.Conn
	mu     sync.Mutex
	events []recEvent
	closed bool
	notify chan struct{}
	done   chan struct{}
}

func dialEvents(t testing.TB, s *Server, app string, extra string) *stream {
	t.Helper()
	u := s.WebSocketURL(app) + extra
	conn, resp, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("websocket %s: %v", u, err)
	}
	if resp.Body != nil {
		resp.Body.Close()
	}
	st := &stream{t: t, conn: conn, notify: make(chan struct{}, 1), done: make(chan struct{})}
	go st.read()
	t.Cleanup(st.close)
	// The application is registered once the upgrade completed, which
	// happens before Dial returns.
	return st
}

func (s *stream) read() {
	defer close(s.done)
	for {
		_, data, err := s.conn.ReadMessage()
		if err != nil {
			s.mu.Lock()
			s.closed = true
			s.mu.Unlock()
			s.signal()
			return
		}
		var ev jEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			ev.Type = "<invalid json>"
		}
		s.mu.Lock()
		s.events = append(s.events, recEvent{raw: data, ev: ev})
		s.mu.Unlock()
		s.signal()
	}
}

func (s *stream) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *stream) close() {
	_ = s.conn.Close()
	<-s.done
}

func (s *stream) snapshot() []recEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recEvent(nil), s.events...)
}

// waitN waits until pred matched n events (counting from the start) and
// returns the last match.
func (s *stream) waitN(what string, n int, pred func(*jEvent) bool) *jEvent {
	s.t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		count := 0
		var last *jEvent
		for i := range s.events {
			if pred(&s.events[i].ev) {
				count++
				last = &s.events[i].ev
			}
		}
		closed := s.closed
		s.mu.Unlock()
		if count >= n {
			return last
		}
		if closed {
			s.t.Fatalf("websocket closed while waiting for %s", what)
		}
		select {
		case <-s.notify:
		case <-deadline.C:
			s.t.Fatalf("timed out waiting for %s; got %s", what, s.summary())
		}
	}
}

func (s *stream) wait(what string, pred func(*jEvent) bool) *jEvent {
	s.t.Helper()
	return s.waitN(what, 1, pred)
}

func (s *stream) waitClosed() {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(waitTimeout):
		s.t.Fatal("websocket did not close")
	}
}

func (s *stream) summary() string {
	var b strings.Builder
	for _, e := range s.snapshot() {
		b.WriteString("\n  ")
		b.WriteString(eventLine(&e.ev))
	}
	return b.String()
}

func eventLine(e *jEvent) string {
	id := ""
	switch {
	case e.Channel != nil:
		id = e.Channel.ID + "(" + e.Channel.State + ")"
	case e.Peer != nil:
		id = "peer=" + e.Peer.ID
	case e.Bridge != nil:
		id = "bridge=" + e.Bridge.ID
	}
	extra := ""
	if e.Cause != nil {
		extra += fmt.Sprintf(" cause=%d", *e.Cause)
	}
	if e.DialStatus != nil {
		extra += " dialstatus=" + *e.DialStatus
	}
	if e.Variable != "" {
		extra += " " + e.Variable + "=" + e.Value
	}
	return e.Type + " " + id + extra
}

func isType(typ, id string) func(*jEvent) bool {
	return func(e *jEvent) bool {
		if e.Type != typ {
			return false
		}
		if id == "" {
			return true
		}
		switch {
		case e.Channel != nil:
			return e.Channel.ID == id
		case e.Peer != nil:
			return e.Peer.ID == id
		case e.Bridge != nil:
			return e.Bridge.ID == id
		}
		return false
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// --- servers -------------------------------------------------------------------

func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// checkNoLeak fails if goroutines started during the test are still
// running once cleanup ran; it polls, since goroutines exit asynchronously.
func checkNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(waitTimeout)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutines: %d before, %d after\n%s", before, n, buf)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// --- a test network: phones and trunks ---------------------------------------

type phoneMode int

const (
	phoneAnswer phoneMode = iota
	phoneRing
	phoneBusy
	phoneReject
	phoneUnregistered
)

type phone struct {
	mode      phoneMode
	ringFor   time.Duration
	hangAfter time.Duration
}

// ringRecord is what a test phone saw.
type ringRecord struct {
	ext     string
	caller  Party
	headers map[string]string
	cause   int
	ended   bool
	bridged []string
}

type testNet struct {
	mu      sync.Mutex
	name    string
	phones  map[string]phone
	servers map[string]*Server // trunk name -> receiving server
	rings   []*ringRecord
	from    *Server // the server this network serves (for trunk caller names)
}

func newTestNet(name string) *testNet {
	return &testNet{name: name, phones: map[string]phone{}, servers: map[string]*Server{}}
}

func (n *testNet) setPhone(ext string, p phone) {
	n.mu.Lock()
	n.phones[ext] = p
	n.mu.Unlock()
}

func (n *testNet) records() []ringRecord {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]ringRecord, len(n.rings))
	for i, r := range n.rings {
		out[i] = *r
	}
	return out
}

func (n *testNet) Endpoint(resource string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if p, ok := n.phones[resource]; ok {
		if p.mode == phoneUnregistered {
			return "offline", true
		}
		return "online", true
	}
	if _, ok := n.servers[resource]; ok {
		return "online", true
	}
	return "", false
}

func (n *testNet) Endpoints() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for k := range n.phones {
		out = append(out, k)
	}
	for k := range n.servers {
		out = append(out, k)
	}
	return out
}

func (n *testNet) Dial(req DialRequest, ev LegEvents) (Leg, error) {
	resource := req.Resource
	if ep, _, ok := strings.Cut(resource, "/"); ok {
		resource = ep // PJSIP/<endpoint>/<uri>
	} else if dest, trunk, ok := strings.Cut(resource, "@"); ok {
		n.mu.Lock()
		peer := n.servers[trunk]
		n.mu.Unlock()
		if peer == nil {
			return nil, fmt.Errorf("no trunk %s", trunk)
		}
		p := &pipe{caller: ev}
		in, err := peer.Inbound(InboundCall{
			Endpoint: n.name, Trunk: true, Context: "from-trunk", Exten: dest,
			Caller: req.Caller, Headers: req.Headers, CallID: req.CallID, Leg: &pipeCallee{p},
		})
		if err != nil {
			return nil, err
		}
		p.mu.Lock()
		p.callee = in
		p.mu.Unlock()
		return &pipeCaller{p}, nil
	}
	n.mu.Lock()
	ph, ok := n.phones[resource]
	if !ok || ph.mode == phoneUnregistered {
		n.mu.Unlock()
		return nil, fmt.Errorf("endpoint %s not registered", resource)
	}
	rec := &ringRecord{ext: resource, caller: req.Caller, headers: req.Headers}
	n.rings = append(n.rings, rec)
	n.mu.Unlock()
	l := &phoneLeg{n: n, rec: rec, ev: ev}
	l.start(ph)
	return l, nil
}

// phoneLeg plays a phone's behaviour with timers.
type phoneLeg struct {
	n      *testNet
	rec    *ringRecord
	ev     LegEvents
	mu     sync.Mutex
	timers []*time.Timer
	done   bool
}

func (l *phoneLeg) after(d time.Duration, f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return
	}
	l.timers = append(l.timers, time.AfterFunc(d, func() {
		l.mu.Lock()
		done := l.done
		l.mu.Unlock()
		if !done {
			f()
		}
	}))
}

func (l *phoneLeg) finish(cause int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return false
	}
	l.done = true
	for _, t := range l.timers {
		t.Stop()
	}
	l.n.mu.Lock()
	l.rec.ended, l.rec.cause = true, cause
	l.n.mu.Unlock()
	return true
}

func (l *phoneLeg) start(p phone) {
	switch p.mode {
	case phoneAnswer:
		l.after(0, l.ev.Ringing)
		l.after(p.ringFor, func() {
			l.ev.Answered()
			if p.hangAfter > 0 {
				l.after(p.hangAfter, func() {
					if l.finish(causeNormalClearing) {
						l.ev.Hangup(causeNormalClearing)
					}
				})
			}
		})
	case phoneRing:
		l.after(0, l.ev.Ringing)
	case phoneBusy, phoneReject:
		cause := causeUserBusy
		if p.mode == phoneReject {
			cause = causeCallRejected
		}
		l.after(p.ringFor, func() {
			if l.finish(cause) {
				l.ev.Hangup(cause)
			}
		})
	}
}

func (l *phoneLeg) Ring()   {}
func (l *phoneLeg) Answer() {}
func (l *phoneLeg) Hangup(cause int) {
	l.finish(cause)
}

func (l *phoneLeg) Bridged(_ string, others []Leg) {
	l.n.mu.Lock()
	defer l.n.mu.Unlock()
	l.rec.bridged = nil
	for _, o := range others {
		l.rec.bridged = append(l.rec.bridged, fmt.Sprintf("%T", o))
	}
}

// pipe joins the two servers of a trunk call.
type pipe struct {
	mu     sync.Mutex
	caller LegEvents // the dialing server's channel
	callee LegEvents // the receiving server's channel
}

type pipeCaller struct{ p *pipe }

func (l *pipeCaller) Ring()   {}
func (l *pipeCaller) Answer() {}
func (l *pipeCaller) Hangup(cause int) {
	l.p.mu.Lock()
	c := l.p.callee
	l.p.mu.Unlock()
	if c != nil {
		c.Hangup(cause)
	}
}

type pipeCallee struct{ p *pipe }

func (l *pipeCallee) Ring()            { l.p.caller.Ringing() }
func (l *pipeCallee) Answer()          { l.p.caller.Answered() }
func (l *pipeCallee) Hangup(cause int) { l.p.caller.Hangup(cause) }

// sipCaller is a phone that calls into a server (like sipp -sn uac).
type sipCaller struct {
	mu       sync.Mutex
	ringing  bool
	answered bool
	cause    int
	ended    chan struct{}
	in       LegEvents
}

func newSIPCaller() *sipCaller { return &sipCaller{ended: make(chan struct{})} }

func (c *sipCaller) Ring() {
	c.mu.Lock()
	c.ringing = true
	c.mu.Unlock()
}

func (c *sipCaller) Answer() {
	c.mu.Lock()
	c.answered = true
	c.mu.Unlock()
}

func (c *sipCaller) Hangup(cause int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.ended:
	default:
		c.cause = cause
		close(c.ended)
	}
}

func (c *sipCaller) waitEnded(t testing.TB) int {
	t.Helper()
	select {
	case <-c.ended:
	case <-time.After(waitTimeout):
		t.Fatal("caller's call did not end")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}

func (c *sipCaller) state() (ringing, answered bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ringing, c.answered
}

func callIn(t testing.TB, s *Server, call InboundCall) *sipCaller {
	t.Helper()
	sc := newSIPCaller()
	call.Leg = sc
	in, err := s.Inbound(call)
	if err != nil {
		t.Fatalf("inbound call: %v", err)
	}
	sc.in = in
	return sc
}
