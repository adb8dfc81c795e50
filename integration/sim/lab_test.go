package sim

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
	"github.com/callctl/callctl/integration/sim/esl"
)

// ctlConn is a minimal outbound-socket controller written for these tests.
type ctlConn struct {
	t      *testing.T
	nc     net.Conn
	r      *bufio.Reader
	frames chan map[string]string
	data   map[string]string // the connect reply
	wg     sync.WaitGroup
}

// readMsg reads one frame: headers then body; events are parsed.
func readMsg(r *bufio.Reader) (map[string]string, error) {
	h := map[string]string{}
	n := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\n")
		if line == "" {
			if n == 0 {
				continue
			}
			break
		}
		n++
		k, v, _ := strings.Cut(line, ": ")
		h[k] = v
	}
	if cl, ok := h["Content-Length"]; ok {
		size, err := strconv.Atoi(cl)
		if err != nil {
			return nil, err
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, err
		}
		h["_raw"] = string(body)
		if h["Content-Type"] == "text/event-plain" {
			hdr, _, _ := strings.Cut(string(body), "\n\n")
			for _, l := range strings.Split(hdr, "\n") {
				k, v, ok := strings.Cut(l, ": ")
				if ok {
					h["ev:"+k] = decode(v)
				}
			}
		}
	}
	return h, nil
}

func decode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func newCtlConn(t *testing.T, nc net.Conn) *ctlConn {
	c := &ctlConn{t: t, nc: nc, r: bufio.NewReader(nc), frames: make(chan map[string]string, 1000)}
	c.send("connect")
	m, err := readMsg(c.r)
	if err != nil {
		t.Fatalf("connect reply: %v", err)
	}
	c.data = map[string]string{}
	for k, v := range m {
		c.data[k] = decode(v)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(c.frames)
		for {
			m, err := readMsg(c.r)
			if err != nil {
				return
			}
			c.frames <- m
		}
	}()
	t.Cleanup(func() { _ = nc.Close(); c.wg.Wait() })
	return c
}

func (c *ctlConn) send(cmd string) {
	if _, err := c.nc.Write([]byte(strings.TrimRight(cmd, "\n") + "\n\n")); err != nil {
		c.t.Fatalf("send %q: %v", cmd, err)
	}
}

func (c *ctlConn) execute(app, arg string) {
	c.send("sendmsg\ncall-command: execute\nexecute-app-name: " + app + "\nexecute-app-arg: " + arg)
}

// waitEvent reads until an event of that name arrives.
func (c *ctlConn) waitEvent(name string) map[string]string {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("connection closed waiting for %s", name)
			}
			if m["ev:Event-Name"] == name {
				return m
			}
		case <-deadline:
			c.t.Fatalf("no %s", name)
		}
	}
}

// waitClosed reads until the server closes the connection.
func (c *ctlConn) waitClosed() []map[string]string {
	c.t.Helper()
	var got []map[string]string
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-c.frames:
			if !ok {
				return got
			}
			got = append(got, m)
		case <-deadline:
			c.t.Fatal("connection not closed")
		}
	}
}

// controller accepts outbound socket connections.
type controller struct {
	t     *testing.T
	ln    net.Listener
	conns chan net.Conn
}

func newController(t *testing.T) *controller {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &controller{t: t, ln: ln, conns: make(chan net.Conn, 16)}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				close(c.conns)
				return
			}
			c.conns <- nc
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return c
}

func (c *controller) addr() string { return c.ln.Addr().String() }

func (c *controller) accept() *ctlConn {
	c.t.Helper()
	select {
	case nc := <-c.conns:
		return newCtlConn(c.t, nc)
	case <-time.After(10 * time.Second):
		c.t.Fatal("no outbound connection")
	}
	return nil
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func startLab(t *testing.T, cfg Config) *Lab {
	t.Helper()
	if cfg.Speed == 0 {
		cfg.Speed = 10
	}
	for i := range cfg.Servers {
		if cfg.Servers[i].Heartbeat == 0 {
			cfg.Servers[i].Heartbeat = -1
		}
	}
	lab, err := StartLab(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lab.Close)
	return lab
}

func TestPhoneCallBridgedToPhone(t *testing.T) {
	ctl := newController(t)
	lab := startLab(t, Config{
		Servers: []ServerConfig{{Name: "fs1", Kind: "freeswitch", Controllers: []string{ctl.addr()}}},
		Phones: []PhoneConfig{{Server: "fs1", Ext: "2099",
			Behaviour: Behaviour{Mode: "answer", RingFor: 200 * time.Millisecond, HangupAfter: time.Second}}},
	})
	call, err := lab.Call(ctx(t), "fs1", "3999", "2099", CallOptions{CallerName: "Alice"})
	if err != nil {
		t.Fatal(err)
	}
	c := ctl.accept()
	if c.data["Caller-Caller-ID-Number"] != "3999" || c.data["Caller-Destination-Number"] != "2099" ||
		c.data["Caller-Context"] != "default" || c.data["Unique-ID"] != call.UUID() {
		t.Fatalf("connect reply: %v", c.data)
	}
	c.send("myevents")
	c.send("linger 1")
	c.execute("set", "hangup_after_bridge=true")
	c.execute("bridge", "{origination_caller_id_number=113999,origination_caller_id_name=Alice,sip_h_X-Callctl-Call=abc}user/2099")
	bridge := c.waitEvent("CHANNEL_BRIDGE")
	peer, err := call.WaitBridged(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if bridge["ev:Other-Leg-Unique-ID"] != peer.UUID || peer.Endpoint.Target != "2099" {
		t.Fatalf("bridged with %+v, event says %s", peer, bridge["ev:Other-Leg-Unique-ID"])
	}
	res, err := call.WaitEnded(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Answered || res.SIPStatus != 200 || res.Cause != callmodel.CauseNormalClearing {
		t.Fatalf("result %+v", res)
	}
	rings := lab.Rings("fs1", "2099")
	if len(rings) != 1 {
		t.Fatalf("%d rings", len(rings))
	}
	r := rings[0]
	if r.Caller.Number != "113999" || r.Caller.Name != "Alice" || r.Headers["X-Callctl-Call"] != "abc" ||
		r.Outcome != callmodel.OutcomeAnswered || !r.Ended() {
		t.Fatalf("ring %+v", r)
	}
	// the phone hung up: the caller followed (hangup_after_bridge), the
	// controller got its linger notice, then the goodbye
	frames := c.waitClosed()
	last := frames[len(frames)-1]
	if last["Content-Type"] != "text/disconnect-notice" || last["Content-Disposition"] != "disconnect" {
		t.Fatalf("last frame %v", last)
	}
	if err := lab.WaitIdle(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestCallerHangsUpMidRingNothingRingsAfter(t *testing.T) {
	ctl := newController(t)
	lab := startLab(t, Config{
		Servers: []ServerConfig{{Name: "fs1", Kind: "freeswitch", Controllers: []string{ctl.addr()}}},
		Phones:  []PhoneConfig{{Server: "fs1", Ext: "2001", Behaviour: Behaviour{Mode: "ring"}}},
	})
	call, err := lab.Call(ctx(t), "fs1", "3999", "2001", CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := ctl.accept()
	c.send("myevents")
	c.execute("bridge", "user/2001")
	waitFor(t, func() bool { return len(lab.Rings("fs1", "2001")) == 1 })
	if err := call.Hangup(); err != nil {
		t.Fatal(err)
	}
	res, err := call.WaitEnded(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Answered || res.Cause != callmodel.CauseOriginatorCancel || res.SIPStatus != 487 {
		t.Fatalf("result %+v", res)
	}
	if err := lab.WaitIdle(ctx(t)); err != nil {
		t.Fatal(err)
	}
	rings := lab.Rings("fs1", "2001")
	if len(rings) != 1 || rings[0].Outcome != callmodel.OutcomeCancelled || !rings[0].End.After(rings[0].Start) {
		t.Fatalf("rings %+v", rings)
	}
	if after := lab.RingsSince(res.EndedAt); len(after) != 0 {
		t.Fatalf("rang after the caller hung up: %+v", after)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTrunkCallCarriesHeadersAndCallerID(t *testing.T) {
	ctl1, ctl2 := newController(t), newController(t)
	lab := startLab(t, Config{
		Servers: []ServerConfig{
			{Name: "fs1", Kind: "freeswitch", IP: "127.0.0.11", Controllers: []string{ctl1.addr()}, Trunks: map[string]string{"fs2": "fs2"}},
			{Name: "fs2", Kind: "freeswitch", IP: "127.0.0.12", Controllers: []string{ctl2.addr()}},
		},
		Phones: []PhoneConfig{{Server: "fs2", Ext: "2099", Behaviour: Behaviour{Mode: "answer", RingFor: 100 * time.Millisecond}}},
	})
	call, err := lab.Call(ctx(t), "fs1", "3999", "122099", CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := ctl1.accept()
	a.send("myevents")
	a.execute("bridge", "{origination_caller_id_number=113999,sip_h_X-Callctl-Org=acme}sofia/gateway/fs2/2099")
	b := ctl2.accept()
	if b.data["Caller-Context"] != "public" || b.data["Caller-Destination-Number"] != "2099" ||
		b.data["Caller-Caller-ID-Number"] != "113999" || b.data["variable_sip_h_X-Callctl-Org"] != "acme" ||
		b.data["variable_sip_network_ip"] != "127.0.0.11" || b.data["variable_sip_received_ip"] != "127.0.0.11" ||
		!strings.HasPrefix(b.data["Channel-Name"], "sofia/internal/113999@127.0.0.11") {
		t.Fatalf("fs2 connect reply: %v", b.data)
	}
	b.send("myevents")
	b.execute("bridge", "user/2099")
	peer, err := call.WaitBridged(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if peer.Endpoint.Kind != callmodel.EndpointTrunk || peer.Endpoint.Server != "fs2" {
		t.Fatalf("caller bridged with %+v", peer)
	}
	rings := lab.Rings("fs2", "2099")
	if len(rings) != 1 || rings[0].Caller.Number != "113999" {
		t.Fatalf("2099 rings: %+v", rings)
	}
	// the caller hangs up: the trunk leg and the phone follow
	if err := call.Hangup(); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitIdle(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if r := lab.Rings("fs2", "2099")[0]; r.Outcome != callmodel.OutcomeAnswered || !r.Ended() {
		t.Fatalf("ring %+v", r)
	}
}

func TestPSTNBusyAndNoController(t *testing.T) {
	ctl := newController(t)
	lab := startLab(t, Config{
		Servers: []ServerConfig{
			{Name: "fs1", Kind: "freeswitch", Controllers: []string{ctl.addr()}},
			{Name: "fs2", Kind: "freeswitch"},
		},
		PSTN: []PSTNConfig{{Number: "+4930123456", Behaviour: Behaviour{Mode: "busy"}}},
	})
	call, err := lab.CallFromPSTN(ctx(t), "fs1", "+4989100", "+4930999", CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := ctl.accept()
	if c.data["Caller-Context"] != "public" || c.data["variable_sip_network_ip"] != "127.0.0.200" {
		t.Fatalf("PSTN call data %v", c.data)
	}
	c.execute("bridge", "sofia/gateway/pstn/+4930123456")
	res, err := call.WaitEnded(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Cause != callmodel.CauseUserBusy || res.SIPStatus != 486 {
		t.Fatalf("result %+v", res)
	}
	if r := lab.PSTNRings("+4930123456"); len(r) != 1 || r[0].Outcome != callmodel.OutcomeBusy {
		t.Fatalf("pstn rings %+v", r)
	}

	// a server without a controller: the dialplan ends in DESTINATION_OUT_OF_ORDER
	call2, err := lab.Call(ctx(t), "fs2", "2000", "1000", CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res2, err := call2.WaitEnded(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if res2.Cause != callmodel.CauseDestinationOutOfOrder || res2.SIPStatus != 502 {
		t.Fatalf("no controller: %+v", res2)
	}
}

func TestControllerFallback(t *testing.T) {
	// the first controller address refuses connections
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	_ = dead.Close()
	ctl := newController(t)
	lab := startLab(t, Config{Servers: []ServerConfig{{Name: "fs1", Kind: "freeswitch", Controllers: []string{deadAddr, ctl.addr()}}}})
	call, err := lab.Call(ctx(t), "fs1", "3999", "1000", CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := ctl.accept()
	if c.data["variable_current_application_data"] != ctl.addr()+" async full" {
		t.Fatalf("socket app data %q", c.data["variable_current_application_data"])
	}
	c.execute("answer", "")
	if err := call.WaitAnswered(ctx(t)); err != nil {
		t.Fatal(err)
	}
	_ = call.Hangup()
	if _, err := call.WaitEnded(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidation(t *testing.T) {
	_, err := ParseConfig([]byte(`
servers:
  - {name: fs1, kind: freeswitch, trunks: {fs9: fs9}, listen: "10.0.0.1:8021"}
  - {name: fs1, kind: kamailio}
phones:
  - {server: fs3, ext: "2000", mode: sing}
pstn:
  - {number: "+1", mode: fail, cause: NOPE}
`))
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"duplicate name", "kind \"kamailio\"", "unknown server \"fs9\"", "only loopback",
		"phones[0] 2000@fs3: unknown server", "unknown behaviour mode", "unknown cause \"NOPE\""} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	cfg, err := ParseConfig([]byte(`
speed: 5
servers:
  - {name: fs1, kind: freeswitch, controllers: ["127.0.0.1:8084"]}
  - {name: ast1, kind: asterisk}
phones:
  - {server: fs1, ext: "2099", mode: answer, ring_for: 2s, hangup_after: 1m}
pstn_default: {mode: busy}
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Servers[1].IP != "127.0.0.12" || cfg.Phones[0].RingFor != 2*time.Second || cfg.Phones[0].HangupAfter != time.Minute {
		t.Fatalf("defaults/durations: %+v", cfg)
	}
}

// TestLabStopLeavesNoGoroutine starts a lab with calls in every state and
// connections open, stops it and checks that every goroutine it started is
// gone.
func TestLabStopLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	ctl := newController(t)
	lab, err := StartLab(context.Background(), Config{
		Speed: 10,
		Servers: []ServerConfig{
			{Name: "fs1", Kind: "freeswitch", Controllers: []string{ctl.addr()}, Trunks: map[string]string{"fs2": "fs2"}},
			{Name: "fs2", Kind: "freeswitch", Controllers: []string{ctl.addr()}},
			{Name: "ast1", Kind: "asterisk"},
		},
		Phones: []PhoneConfig{{Server: "fs1", Ext: "2001", Behaviour: Behaviour{Mode: "ring"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	call, err := lab.Call(ctx(t), "fs1", "3999", "2001", CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := ctl.accept()
	c.send("myevents")
	c.execute("bridge", "user/2001")
	waitFor(t, func() bool { return len(lab.Rings("fs1", "2001")) == 1 })
	in, err := net.Dial("tcp", lab.Server("fs1").ESLAddr())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(in, "auth ClueCon\n\nevent plain ALL\n\n")
	_ = call
	lab.Close()
	_ = in.Close()
	_ = c.nc.Close()
	c.wg.Wait()
	_ = ctl.ln.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, n, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var _ = esl.MalformedJSON

func TestRespondAndEarlyMedia(t *testing.T) {
	ctl := newController(t)
	lab := startLab(t, Config{Servers: []ServerConfig{{Name: "fs1", Kind: "freeswitch", Controllers: []string{ctl.addr()}}}})
	call, err := lab.Call(ctx(t), "fs1", "3999", "5000", CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := ctl.accept()
	c.send("myevents")
	c.execute("pre_answer", "")
	c.waitEvent("CHANNEL_PROGRESS_MEDIA")
	c.execute("respond", "503 Service Unavailable")
	res, err := call.WaitEnded(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Answered || res.SIPStatus != 503 || res.Cause != callmodel.CauseNormalTemporaryFailure {
		t.Fatalf("result %+v", res)
	}
	var kinds []string
	for _, ev := range call.Events() {
		kinds = append(kinds, ev.Kind.String())
	}
	if strings.Join(kinds, " ") != "ChannelCreated ChannelEarlyMedia ChannelHangup ChannelDestroyed" {
		t.Fatalf("caller's events: %v", kinds)
	}
}
