package esl

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// frame is one frame a client received, with its event parsed.
type frame struct {
	headers []header
	body    string
	event   map[string]string // the event's headers (decoded), nil if not an event
	order   []string          // the event's header names in order
}

func (f *frame) get(name string) string {
	for _, h := range f.headers {
		if strings.EqualFold(h.name, name) {
			return h.value
		}
	}
	return ""
}

func (f *frame) contentType() string { return f.get("Content-Type") }

// ev returns an event header (or "" for non-events).
func (f *frame) ev(name string) string {
	if f.event == nil {
		return ""
	}
	return f.event[name]
}

func (f *frame) String() string {
	if f.event != nil {
		return "event " + f.ev("Event-Name") + " " + f.ev("Channel-Name")
	}
	return f.contentType() + " " + f.get("Reply-Text") + strings.TrimSpace(f.body)
}

// readFrame reads one server frame: headers, then Content-Length bytes.
func readFrame(r *bufio.Reader) (*frame, error) {
	f := &frame{}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if len(f.headers) == 0 {
				continue
			}
			break
		}
		name, value, ok := strings.Cut(line, ": ")
		if !ok {
			name, value, _ = strings.Cut(line, ":")
		}
		f.headers = append(f.headers, header{name, value})
	}
	if cl := f.get("Content-Length"); cl != "" {
		n, err := strconv.Atoi(cl)
		if err != nil {
			return nil, fmt.Errorf("bad content-length %q", cl)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		f.body = string(b)
	}
	if err := f.parseEvent(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *frame) parseEvent() error {
	switch f.contentType() {
	case "text/event-plain":
		f.event = map[string]string{}
		hdr, rest, _ := strings.Cut(f.body, "\n\n")
		for _, line := range strings.Split(hdr, "\n") {
			name, value, ok := strings.Cut(line, ": ")
			if !ok {
				continue
			}
			f.event[name] = urlDecode(value)
			f.order = append(f.order, name)
		}
		if cl, ok := f.event["Content-Length"]; ok {
			n, _ := strconv.Atoi(cl)
			if n <= len(rest) {
				f.event["_body"] = rest[:n]
			}
		}
	case "text/event-json":
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(f.body))
		if err := dec.Decode(&m); err != nil {
			return fmt.Errorf("bad json event: %w", err)
		}
		f.event = map[string]string{}
		for k, v := range m {
			s, _ := v.(string)
			f.event[k] = s
		}
	case "command/reply":
		if f.get("Event-Name") != "" {
			// the outbound connect reply: channel data in the headers
			f.event = map[string]string{}
			for _, h := range f.headers {
				f.event[h.name] = urlDecode(h.value)
				f.order = append(f.order, h.name)
			}
		}
	}
	return nil
}

// rawClient speaks the event socket by hand, as the trace recorder did.
type rawClient struct {
	t      testing.TB
	nc     net.Conn
	frames chan *frame
	errc   chan error
	wg     sync.WaitGroup
}

func newRawClient(t testing.TB, nc net.Conn) *rawClient {
	c := &rawClient{t: t, nc: nc, frames: make(chan *frame, 100000), errc: make(chan error, 1)}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		r := bufio.NewReader(nc)
		for {
			f, err := readFrame(r)
			if err != nil {
				c.errc <- err
				close(c.frames)
				return
			}
			c.frames <- f
		}
	}()
	t.Cleanup(c.close)
	return c
}

func dialClient(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return newRawClient(t, nc)
}

func (c *rawClient) close() {
	_ = c.nc.Close()
	c.wg.Wait()
}

func (c *rawClient) send(cmd string) {
	c.t.Helper()
	if !strings.HasSuffix(cmd, "\n\n") {
		cmd = strings.TrimRight(cmd, "\n") + "\n\n"
	}
	if _, err := c.nc.Write([]byte(cmd)); err != nil {
		c.t.Fatalf("send %q: %v", cmd, err)
	}
}

const waitLong = 15 * time.Second

func (c *rawClient) next() *frame {
	c.t.Helper()
	select {
	case f, ok := <-c.frames:
		if !ok {
			c.t.Fatalf("connection closed: %v", <-c.errc)
		}
		return f
	case <-time.After(waitLong):
		c.t.Fatalf("no frame within %v", waitLong)
	}
	return nil
}

// until returns the frames up to and including the first that matches.
func (c *rawClient) until(match func(*frame) bool) []*frame {
	c.t.Helper()
	var got []*frame
	deadline := time.After(waitLong)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("connection closed before the expected frame (got %d frames): %v", len(got), <-c.errc)
			}
			got = append(got, f)
			if match(f) {
				return got
			}
		case <-deadline:
			var names []string
			for _, f := range got {
				names = append(names, f.String())
			}
			c.t.Fatalf("expected frame not seen within %v; got:\n%s", waitLong, strings.Join(names, "\n"))
		}
	}
}

// closed waits for the server to close the connection and returns the
// frames received before.
func (c *rawClient) closed() []*frame {
	c.t.Helper()
	var got []*frame
	deadline := time.After(waitLong)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				return got
			}
			got = append(got, f)
		case <-deadline:
			c.t.Fatalf("connection not closed within %v", waitLong)
		}
	}
}

func isEvent(name string, uuid ...string) func(*frame) bool {
	return func(f *frame) bool {
		if f.ev("Event-Name") != name {
			return false
		}
		return len(uuid) == 0 || f.ev("Unique-ID") == uuid[0]
	}
}

func isType(ct string) func(*frame) bool {
	return func(f *frame) bool { return f.contentType() == ct }
}

// testLab is one or two simulated FreeSWITCH servers for the tests.
type testLab struct {
	fleet   *callmodel.Fleet
	servers map[string]*Server
}

type testServerSpec struct {
	name        string
	ip          string
	controllers []string
	gateways    map[string]string
}

func newTestLab(t testing.TB, clock callmodel.Clock, specs ...testServerSpec) *testLab {
	t.Helper()
	opts := []callmodel.Option{}
	if clock != nil {
		opts = append(opts, callmodel.WithClock(clock))
	}
	l := &testLab{fleet: callmodel.NewFleet(opts...), servers: map[string]*Server{}}
	for _, sp := range specs {
		m, err := l.fleet.AddServer(callmodel.ServerConfig{Name: sp.name, Kind: callmodel.FreeSWITCH, IP: sp.ip})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(m, Config{Switchname: sp.name, Controllers: sp.controllers, Gateways: sp.gateways, Heartbeat: -1})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		l.servers[sp.name] = s
	}
	t.Cleanup(func() {
		for _, s := range l.servers {
			_ = s.Close()
		}
		l.fleet.Close()
	})
	return l
}

// inbound opens an authenticated inbound connection.
func (l *testLab) inbound(t testing.TB, server string) *rawClient {
	t.Helper()
	c := dialClient(t, l.servers[server].Addr())
	if f := c.next(); f.contentType() != "auth/request" {
		t.Fatalf("greeting %v", f)
	}
	c.send("auth ClueCon")
	if f := c.next(); f.get("Reply-Text") != "+OK accepted" {
		t.Fatalf("auth reply %v", f)
	}
	return c
}

// controller is a test outbound-socket listener.
type controller struct {
	t     testing.TB
	ln    net.Listener
	conns chan *rawClient
}

func newController(t testing.TB) *controller {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &controller{t: t, ln: ln, conns: make(chan *rawClient, 64)}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			c.conns <- newRawClient(t, nc)
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return c
}

func (c *controller) addr() string { return c.ln.Addr().String() }

func (c *controller) accept() *rawClient {
	c.t.Helper()
	select {
	case rc := <-c.conns:
		return rc
	case <-time.After(waitLong):
		c.t.Fatal("no outbound connection arrived")
	}
	return nil
}
