package integration

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/integration/sim"
	"github.com/callctl/callctl/integration/sim/callmodel"
	"github.com/callctl/callctl/node"
)

// One cause gives one record, whichever kind of server reported it: the
// attempt's outcome and cause are the same on FreeSWITCH (causes by name)
// and on Asterisk (causes by number), and an answered attempt has one name.
func TestSameCauseSameRecordOnEveryKind(t *testing.T) {
	cases := []struct {
		number, cause      string // what the PSTN number does
		outcome, wantCause string // the attempt in the record
	}{
		{"+4930100001", "SUBSCRIBER_ABSENT", "not-registered", "SUBSCRIBER_ABSENT"},
		{"+4930100002", "USER_BUSY", "busy", "USER_BUSY"},
		{"+4930100003", "CALL_REJECTED", "rejected", "CALL_REJECTED"},
		{"+4930100004", "NETWORK_OUT_OF_ORDER", "unreachable", "NETWORK_OUT_OF_ORDER"},
		{"+4930100005", "REQUESTED_CHAN_UNAVAIL", "unreachable", "REQUESTED_CHAN_UNAVAIL"},
		{"+4930100006", "NORMAL_TEMPORARY_FAILURE", "failed", "NORMAL_TEMPORARY_FAILURE"},
		{"+4930100007", "UNALLOCATED_NUMBER", "unreachable", "UNALLOCATED_NUMBER"},
		{"+4930100008", "NORMAL_CIRCUIT_CONGESTION", "congested", "NORMAL_CIRCUIT_CONGESTION"},
		{"+4930100009", "", "answered", "ANSWER"},
	}
	var pstn []sim.PSTNConfig
	for _, tc := range cases {
		b := sim.Behaviour{Mode: "fail", Cause: tc.cause, RingFor: 20 * time.Millisecond}
		if tc.cause == "" {
			b = sim.Behaviour{Mode: "answer", RingFor: 20 * time.Millisecond, HangupAfter: 100 * time.Millisecond}
		}
		pstn = append(pstn, sim.PSTNConfig{Number: tc.number, Behaviour: b})
	}
	scenario(t, Options{PSTN: pstn}, func(t *testing.T, e *Env) {
		for _, tc := range cases {
			c := e.call(t, "srv11", "3999", "0"+tc.number[3:])
			ended(t, c)
			rec := e.record(t, of(c))
			if len(rec.Attempts) != 1 {
				t.Errorf("%s (%s): attempts %q, want one", tc.number, tc.cause, attempts(rec))
				continue
			}
			a := rec.Attempts[0]
			if a.Outcome.String() != tc.outcome || a.Cause != tc.wantCause {
				t.Errorf("%s fails with %s on %s: attempt %s %s, want %s %s", tc.number, tc.cause,
					e.Fleet.Kinds["srv11"], a.Outcome, a.Cause, tc.outcome, tc.wantCause)
			}
		}
	})
}

// forgedPeer is a fake FreeSWITCH connecting to the node's outbound-socket
// listener: it answers connect with the channel data of a PSTN call
// (callctl's channel id uuid on server switchname, from the PSTN to a DID)
// and every later command with +OK, and keeps what callctl sent until
// callctl closes the connection.
type forgedPeer struct {
	conn   net.Conn
	mu     sync.Mutex
	sent   []string // the first line of each command callctl sent
	closed chan struct{}
}

func forgeESL(t *testing.T, listener net.Addr, src, uuid, switchname string) *forgedPeer {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", listener.String())
	if err != nil {
		t.Fatalf("forged peer from %s: %v", src, err)
	}
	p := &forgedPeer{conn: conn, closed: make(chan struct{})}
	t.Cleanup(func() { conn.Close() })
	go func() {
		defer close(p.closed)
		rd := bufio.NewReader(conn)
		for {
			var first string
			for {
				line, err := rd.ReadString('\n')
				if err != nil {
					return
				}
				line = strings.TrimRight(line, "\r\n")
				if line == "" && first != "" {
					break
				}
				if first == "" {
					first = line
				}
			}
			p.mu.Lock()
			p.sent = append(p.sent, first)
			p.mu.Unlock()
			reply := "Content-Type: command/reply\nReply-Text: +OK\n\n"
			if first == "connect" {
				reply = "Content-Type: command/reply\nReply-Text: +OK\nUnique-ID: " + uuid +
					"\nFreeSWITCH-Switchname: " + switchname + "\nCaller-Caller-ID-Number: %2B4915112345678" +
					"\nCaller-Destination-Number: %2B4930100100\nvariable_sip_network_ip: " + pstnIP +
					"\nvariable_sip_network_port: 5060\nChannel-State: CS_EXECUTE\n\n"
			}
			if _, err := conn.Write([]byte(reply)); err != nil {
				return
			}
		}
	}()
	return p
}

// waitClosed waits until callctl closed the connection and returns what it
// had sent.
func (p *forgedPeer) waitClosed(t *testing.T) []string {
	t.Helper()
	select {
	case <-p.closed:
	case <-time.After(10 * time.Second):
		p.mu.Lock()
		defer p.mu.Unlock()
		t.Fatalf("callctl kept the forged connection open (it sent %q)", p.sent)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.sent...)
}

// registries keeps each node's metrics registry, by its socket address.
var registries sync.Map

func withRegistry(o *node.Options) {
	reg := prometheus.NewRegistry()
	o.Registry = reg
	registries.Store(o.ESLListen, reg)
}

// refusedESL is callctl_esl_connections_refused_total{reason} of e's node.
func refusedESL(t *testing.T, e *Env, reason string) float64 {
	t.Helper()
	v, ok := registries.Load(e.Node.ESLAddr().String())
	if !ok {
		t.Fatal("the node's registry is not known")
	}
	mfs, err := v.(*prometheus.Registry).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "callctl_esl_connections_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no callctl_esl_connections_refused_total{reason=%q}", reason)
	return 0
}

// SPEC §10: only the plan's FreeSWITCH servers may hand callctl a call. Three
// connections from an address that is none of theirs are closed before
// callctl sends or reads anything: no record, nothing counted, and a real
// call still gets srv11's one channel.
func TestForgedESLPeerRefused(t *testing.T) {
	opt := Options{Node: withRegistry, Phones: phones("srv11", "3999", answers), Edit: func(d *provision.Document) {
		for i := range d.Servers {
			if d.Servers[i].Name == "srv11" {
				d.Servers[i].ChannelLimit = 1
			}
		}
	}}
	scenario(t, opt, func(t *testing.T, e *Env) {
		if e.Node.ESLAddr() == nil {
			t.Skip("no FreeSWITCH in this fleet: nothing listens for the socket application")
		}
		var forged []string
		for i := 0; i < 3; i++ {
			uuid := controller.NewID()
			forged = append(forged, uuid)
			p := forgeESL(t, e.Node.ESLAddr(), "127.0.0.66", uuid, "srv11")
			if sent := p.waitClosed(t); len(sent) != 0 {
				t.Errorf("callctl spoke to a peer that is not a FreeSWITCH of the plan: %q", sent)
			}
		}
		if n := refusedESL(t, e, "peer_not_allowed"); n != 3 {
			t.Errorf("refused connections counted %v, want 3", n)
		}
		in := e.pstnCall(t, "srv11", "+4930100100", "+4915112345678")
		bridged(t, in)
		e.waitCount(t, "server", "srv11", 1)
		hangup(t, in)
		rec := e.record(t, of(in))
		if rec.Answered != "3999" {
			t.Errorf("the real call: answered by %q (cause %s)", rec.Answered, rec.HangupCause)
		}
		for _, r := range e.Records.All() {
			if slices.Contains(forged, r.CallID) {
				t.Errorf("a forged connection has a call record: %+v", r)
			}
		}
	})
}

// A connection naming a channel callctl owns is a transfer only when it
// comes from the server (and address) that handed the channel over: from
// anywhere else it is refused, and neither it nor its end touches the
// owner's call.
func TestESLTakeoverRefused(t *testing.T) {
	opt := Options{Phones: phones("srv11", "3999", answers), Node: func(o *node.Options) {
		withRegistry(o)
		// 127.0.0.77 may connect (as a FreeSWITCH behind NAT would).
		o.FreeSWITCH.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.77/32")}
	}}
	scenario(t, opt, func(t *testing.T, e *Env) {
		if e.Node.ESLAddr() == nil {
			t.Skip("no FreeSWITCH in this fleet: nothing listens for the socket application")
		}
		in := e.pstnCall(t, "srv11", "+4930100100", "+4915112345678")
		bridged(t, in)
		e.waitAnswered(t, "3999")
		e.waitCount(t, "server", "srv11", 1)
		type forgery struct{ src, server string }
		tries := []forgery{{"127.0.0.77", "srv11"}} // the same server's name from another address
		if e.Fleet.Kinds["srv12"] == provision.KindFreeSWITCH {
			tries = append(tries, forgery{"127.0.0.1", "srv12"}) // the servers' address, another server
		}
		for i, f := range tries {
			p := forgeESL(t, e.Node.ESLAddr(), f.src, in.UUID(), f.server)
			for _, cmd := range p.waitClosed(t) {
				if !slices.Contains([]string{"connect", "myevents", "linger"}, strings.Fields(cmd)[0]) {
					t.Errorf("%s naming %s: callctl sent %q on a connection it refused", f.src, f.server, cmd)
				}
			}
			if n := refusedESL(t, e, "uuid_takeover"); n != float64(i+1) {
				t.Errorf("takeovers refused: %v, want %d", n, i+1)
			}
			// The owner's call is as it was: up, connected, counted once.
			for _, ev := range in.Events() {
				if ev.Kind == callmodel.ChannelDestroyed {
					t.Fatalf("the real call ended after a forged connection from %s named it", f.src)
				}
			}
			up := false
			for _, v := range e.Node.Engine().Calls() {
				up = up || v.ID == in.UUID() && v.Answered == "3999"
			}
			if !up {
				t.Errorf("callctl no longer has the real call connected after a forged connection from %s", f.src)
			}
			if n := e.Count(context.Background(), "server", "srv11"); n != 1 {
				t.Errorf("srv11 counts %d, want the real call's 1", n)
			}
		}
		res := hangup(t, in)
		if !res.Answered || res.Cause != callmodel.CauseNormalClearing {
			t.Errorf("the real call ended with %s (answered %v), want the caller's own hangup", res.Cause.Name, res.Answered)
		}
		rec := e.record(t, of(in))
		if rec.Answered != "3999" || rec.HangupCause != "NORMAL_CLEARING" {
			t.Errorf("the real call's record: answered %q cause %s", rec.Answered, rec.HangupCause)
		}
		n := 0
		for _, r := range e.Records.All() {
			if r.CallID == in.UUID() {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d records for the real call, want 1", n)
		}
	})
}

// SPEC §10: a withheld or non-numeric caller from the PSTN is delivered on
// every kind, shown withheld (anonymous, or no number at all), never
// refused and never passed on as it came.
func TestWithheldCallerDelivered(t *testing.T) {
	callers := []string{"anonymous", "Restricted", "unknown", "+49 30 1234", "Anonymous <x>", "12,user/3998"}
	ringing := sim.Behaviour{Mode: "answer", RingFor: 20 * time.Millisecond}
	scenario(t, Options{Phones: phones("srv11", "3999", ringing)}, func(t *testing.T, e *Env) {
		for i, caller := range callers {
			in := e.pstnCall(t, "srv11", "+4930100100", caller)
			bridged(t, in)
			hangup(t, in)
			rs := e.Lab.Rings("srv11", "3999")
			if len(rs) != i+1 {
				t.Fatalf("PSTN caller %q: 3999 rang %d times, want %d", caller, len(rs), i+1)
			}
			shown := rs[i].Caller
			if n := strings.ToLower(shown.Number); n != "anonymous" && n != "" || shown.Name != "Anonymous" && shown.Name != "" {
				t.Errorf("PSTN caller %q: 3999 was shown %q <%s>, want the caller withheld", caller, shown.Name, shown.Number)
			}
			rec := e.record(t, of(in))
			if rec.Answered != "3999" || !rec.Withheld || rec.CallerID != "" {
				t.Errorf("PSTN caller %q: record answered %q withheld %v caller id %q", caller, rec.Answered, rec.Withheld, rec.CallerID)
			}
		}
	})
}
