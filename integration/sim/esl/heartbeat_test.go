package esl

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

func TestHeartbeat(t *testing.T) {
	fleet := callmodel.NewFleet(callmodel.WithClock(callmodel.ScaledClock(100)))
	defer fleet.Close()
	m, _ := fleet.AddServer(callmodel.ServerConfig{Name: "fs1", Kind: callmodel.FreeSWITCH, IP: "127.0.0.11"})
	srv, err := New(m, Config{Heartbeat: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := dialClient(t, srv.Addr())
	c.next()
	c.send("auth ClueCon")
	c.next()
	reply(t, c, "event plain HEARTBEAT", "+OK event listener enabled plain")
	got := c.until(isEvent("HEARTBEAT"))
	h1 := got[len(got)-1]
	got = c.until(isEvent("HEARTBEAT"))
	h2 := got[len(got)-1]
	if h1.ev("Event-Info") != "System Ready" || h1.ev("FreeSWITCH-Switchname") != "fs1" ||
		h1.ev("Event-Calling-Function") != "send_heartbeat" || h1.ev("Core-UUID") != srv.CoreUUID() {
		t.Fatalf("heartbeat %v", h1.event)
	}
	s1, _ := strconv.Atoi(h1.ev("Event-Sequence"))
	s2, _ := strconv.Atoi(h2.ev("Event-Sequence"))
	u1, _ := strconv.ParseInt(h1.ev("Event-Date-Timestamp"), 10, 64)
	u2, _ := strconv.ParseInt(h2.ev("Event-Date-Timestamp"), 10, 64)
	gap := time.Duration(u2-u1) * time.Microsecond
	if s2 <= s1 || gap < 19*time.Second || gap > 25*time.Second {
		t.Fatalf("heartbeats %d then %d, %v apart", s1, s2, gap)
	}
}

// TestControllerThatNeverConnects: the outbound connection must send
// "connect" in time; otherwise the socket application gives up and the
// dialplan goes on.
func TestControllerThatNeverConnects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err == nil {
			accepted <- nc
		}
	}()
	fleet := callmodel.NewFleet()
	defer fleet.Close()
	m, _ := fleet.AddServer(callmodel.ServerConfig{Name: "fs1", Kind: callmodel.FreeSWITCH})
	srv, err := New(m, Config{Heartbeat: -1, ConnectWait: 200 * time.Millisecond, Controllers: []string{ln.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hung := make(chan callmodel.Cause, 1)
	m.Subscribe(func(_ *callmodel.Tx, e *callmodel.Event) {
		if e.Kind == callmodel.ChannelHangup {
			hung <- e.Channel.Cause
		}
	})
	if _, err := fleet.PlaceCall("fs1", callmodel.InboundCall{Caller: callmodel.Party{Number: "1"}, Destination: "2"}); err != nil {
		t.Fatal(err)
	}
	nc := <-accepted
	defer nc.Close()
	select {
	case c := <-hung:
		if c != callmodel.CauseDestinationOutOfOrder {
			t.Fatalf("cause %v", c)
		}
	case <-time.After(waitLong):
		t.Fatal("call stuck waiting for connect")
	}
}
