package sim

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
	"github.com/callctl/callctl/integration/sim/esl"
)

func TestExampleConfig(t *testing.T) {
	cfg, err := LoadConfig("testdata/lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Servers) != 3 || len(cfg.Phones) != 7 || cfg.PSTNDefault == nil || cfg.Phones[1].HangupAfter != 30*time.Second {
		t.Fatalf("config %+v", cfg)
	}
	// start it with the controllers pointed nowhere: a call gets
	// DESTINATION_OUT_OF_ORDER once both are found unavailable
	for i := range cfg.Servers {
		cfg.Servers[i].Heartbeat = -1
		if cfg.Servers[i].Kind == "freeswitch" {
			cfg.Servers[i].Controllers = []string{closedAddr(t)}
		}
	}
	cfg.Speed = 10
	lab, err := StartLab(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	if lab.Server("ast1").ARIURL() == "" || lab.Server("fs1").ESLAddr() == "" || lab.Server("fs2").Password() != "ClueCon" {
		t.Fatal("fronts not started")
	}
	call, err := lab.Call(ctx(t), "fs1", "3999", "2099", CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := call.WaitEnded(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Cause != callmodel.CauseDestinationOutOfOrder || res.SIPStatus != 502 {
		t.Fatalf("result %+v", res)
	}
}

func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	_ = ln.Close()
	return a
}

// TestAsteriskWithoutApplication: a call to an Asterisk whose Stasis
// application nobody serves falls back to Congestion.
func TestAsteriskWithoutApplication(t *testing.T) {
	lab := startLab(t, Config{Servers: []ServerConfig{{Name: "ast1", Kind: "asterisk"}}})
	call, err := lab.Call(ctx(t), "ast1", "3000", "201", CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := call.WaitEnded(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Answered || res.Cause.Code != 34 || res.SIPStatus != 503 {
		t.Fatalf("result %+v", res)
	}
	if _, err := lab.DropConnections("ast1"); err != nil {
		t.Fatal(err)
	}
}

func TestLabFaults(t *testing.T) {
	ctl := newController(t)
	lab := startLab(t, Config{
		Servers: []ServerConfig{
			{Name: "fs1", Kind: "freeswitch", Controllers: []string{ctl.addr()}, Trunks: map[string]string{"fs2": "fs2"}},
			{Name: "fs2", Kind: "freeswitch", Controllers: []string{ctl.addr()}},
		},
		Phones: []PhoneConfig{{Server: "fs2", Ext: "2099", Behaviour: Behaviour{Mode: "answer"}}},
	})
	// a call from fs1 to a phone of fs2 over the trunk, answered
	call, err := lab.Call(ctx(t), "fs1", "3999", "122099", CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := ctl.accept()
	a.send("myevents")
	a.execute("bridge", "sofia/gateway/fs2/2099")
	b := ctl.accept()
	b.send("myevents")
	b.execute("bridge", "user/2099")
	if _, err := call.WaitBridged(ctx(t)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		return len(lab.Rings("fs2", "2099")) == 1 && lab.Rings("fs2", "2099")[0].Outcome == callmodel.OutcomeAnswered
	})

	// fs2 crashes and restarts: its channels vanish, its controller
	// connection drops, and fs1's leg of the trunk call hangs up
	if err := lab.Restart(ctx(t), "fs2"); err != nil {
		t.Fatal(err)
	}
	b.waitClosed()
	if n := len(lab.Channels("fs2")); n != 0 {
		t.Fatalf("%d channels on fs2 after its restart", n)
	}
	if r := lab.Rings("fs2", "2099")[0]; r.Outcome != callmodel.OutcomeLost {
		t.Fatalf("ring after the restart: %+v", r)
	}
	// fs1's trunk leg ends with the media timeout; the caller's bridge ends
	// and, the controller having set nothing, the caller goes back to park
	waitFor(t, func() bool {
		for _, ch := range lab.Channels("fs1") {
			if ch.UUID != call.UUID() {
				return false
			}
		}
		return true
	})
	// dropping fs1's connections ends the caller's call (no other controller)
	if n, err := lab.DropConnections("fs1"); err != nil || n < 1 {
		t.Fatalf("dropped %d: %v", n, err)
	}
	res, err := call.WaitEnded(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Cause != callmodel.CauseDestinationOutOfOrder {
		t.Fatalf("caller's end %+v", res)
	}
	// refusing new event socket connections
	if err := lab.Refuse("fs1", true, 0); err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", lab.Server("fs1").ESLAddr())
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := io.ReadAll(nc); len(b) != 0 {
		t.Fatalf("refused connection got %q", b)
	}
	_ = nc.Close()
	_ = lab.Refuse("fs1", false, 0)
	nc, err = net.Dial("tcp", lab.Server("fs1").ESLAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	buf := make([]byte, 28)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(nc, buf); err != nil || string(buf) != "Content-Type: auth/request\n\n" {
		t.Fatalf("greeting %q %v", buf, err)
	}
	if n, err := lab.SendMalformed("fs1", esl.MalformedEvent); err != nil || n != 1 {
		t.Fatalf("malformed sent to %d: %v", n, err)
	}
}

func TestBlindTransferFromTheLab(t *testing.T) {
	ctl := newController(t)
	lab := startLab(t, Config{Servers: []ServerConfig{{Name: "fs1", Kind: "freeswitch", Controllers: []string{ctl.addr()}}}})
	call, err := lab.Call(ctx(t), "fs1", "3999", "1000", CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c1 := ctl.accept()
	c1.send("myevents")
	c1.execute("answer", "")
	if err := call.WaitAnswered(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := lab.BlindTransfer("fs1", call.UUID(), "2099"); err != nil {
		t.Fatal(err)
	}
	c2 := ctl.accept()
	if c2.data["Unique-ID"] != call.UUID() || c2.data["Caller-Destination-Number"] != "2099" ||
		c2.data["Caller-Context"] != "default" || c2.data["variable_sip_refer_to"] == "" {
		t.Fatalf("second connection: %v", c2.data)
	}
	// the first connection still gets the channel's events
	c1.waitEvent("CHANNEL_EXECUTE")
	_ = call.Hangup()
	if _, err := call.WaitEnded(ctx(t)); err != nil {
		t.Fatal(err)
	}
}
