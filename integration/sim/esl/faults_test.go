package esl

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

func TestDropConnections(t *testing.T) {
	ctl := newController(t)
	lab := fastLab(t, testServerSpec{name: "fs1", ip: "127.0.0.11", controllers: []string{ctl.addr()}})
	srv := lab.servers["fs1"]
	in := lab.inbound(t, "fs1")
	reply(t, in, "event plain CHANNEL_HANGUP", "+OK event listener enabled plain")
	hung := make(chan callmodel.Event, 8)
	srv.model.Subscribe(func(_ *callmodel.Tx, e *callmodel.Event) {
		if e.Kind == callmodel.ChannelHangup {
			hung <- *e
		}
	})
	uuid, err := lab.fleet.PlaceCall("fs1", callmodel.InboundCall{Caller: callmodel.Party{Number: "3000"}, Destination: "1000"})
	if err != nil {
		t.Fatal(err)
	}
	out := ctl.accept()
	out.send("connect")
	out.next()
	reply(t, out, "sendmsg\ncall-command: execute\nexecute-app-name: answer", "+OK")
	if n := srv.DropConnections(); n != 2 {
		t.Fatalf("dropped %d connections, want 2", n)
	}
	// both ends see the connection die without any notice
	for _, c := range []*rawClient{in, out} {
		for _, f := range c.closed() {
			if f.contentType() == "text/disconnect-notice" {
				t.Fatalf("notice on an abrupt drop: %v", f)
			}
		}
	}
	// the socket application lost its controller: the dialplan ends the call
	select {
	case e := <-hung:
		if e.Channel.UUID != uuid || e.Channel.Cause != callmodel.CauseDestinationOutOfOrder {
			t.Fatalf("hangup %v %v", e.Channel.UUID, e.Channel.Cause)
		}
	case <-time.After(waitLong):
		t.Fatal("call not ended after its controller connection dropped")
	}
	// A dropped connection leaves the server's books when its reader ends.
	for deadline := time.Now().Add(waitLong); ; time.Sleep(5 * time.Millisecond) {
		i, o := srv.Connections()
		if i == 0 && o == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d/%d connections left", i, o)
		}
	}
	lab.inbound(t, "fs1") // the server still accepts
}

func TestRestartLosesCallsAndConnections(t *testing.T) {
	lab := fastLab(t)
	srv := lab.servers["fs1"]
	in := lab.inbound(t, "fs1")
	core := srv.CoreUUID()
	in.send("api originate loopback/501/targets &park()")
	if f := in.next(); !strings.HasPrefix(f.body, "+OK") {
		t.Fatalf("originate: %q", f.body)
	}
	if err := srv.model.Restart(); err != nil {
		t.Fatal(err)
	}
	in.closed()
	if n := srv.model.ChannelCount(); n != 0 {
		t.Fatalf("%d channels survived the restart", n)
	}
	if srv.CoreUUID() == core {
		t.Fatal("Core-UUID unchanged after a restart")
	}
	c := lab.inbound(t, "fs1")
	reply(t, c, "event plain ALL", "+OK event listener enabled plain")
	c.send("bgapi status")
	c.next()
	job := c.until(isEvent("BACKGROUND_JOB"))
	bj := job[len(job)-1]
	if bj.ev("Core-UUID") == core {
		t.Fatal("events still carry the old Core-UUID")
	}
	if seq, _ := strconv.Atoi(bj.ev("Event-Sequence")); seq > 5 {
		t.Fatalf("Event-Sequence %d did not restart", seq)
	}
	reply(t, c, "api show channels as json", "{\"row_count\":0}\n")
}

func TestRefuseNewConnections(t *testing.T) {
	lab := fastLab(t)
	srv := lab.servers["fs1"]
	kept := lab.inbound(t, "fs1")
	srv.SetRefusing(true)
	nc, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(waitLong))
	b, err := io.ReadAll(nc)
	_ = nc.Close()
	if err != nil || len(b) != 0 {
		t.Fatalf("refused connection got %q, %v", b, err)
	}
	reply(t, kept, "api uuid_exists x", "false")
	srv.SetRefusing(false)
	lab.inbound(t, "fs1")
}

func TestSendMalformedFrames(t *testing.T) {
	lab := fastLab(t)
	srv := lab.servers["fs1"]
	nc, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	r := bufio.NewReader(nc)
	readUntilBlank := func() string {
		var b strings.Builder
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			b.WriteString(line)
			if line == "\n" {
				return b.String()
			}
		}
	}
	readUntilBlank() // auth/request
	_, _ = nc.Write([]byte("auth ClueCon\n\n"))
	readUntilBlank()
	for _, kind := range []Malformed{MalformedContentLength, MalformedEvent, MalformedJSON, MalformedHeaderLine} {
		if n := srv.SendMalformed(kind, false); n != 1 {
			t.Fatalf("sent to %d connections", n)
		}
		want := string(kind.frame())
		got := make([]byte, len(want))
		_ = nc.SetReadDeadline(time.Now().Add(waitLong))
		if _, err := io.ReadFull(r, got); err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Fatalf("kind %d: got %q want %q", kind, got, want)
		}
	}
	// the connection still works after them
	_, _ = nc.Write([]byte("api uuid_exists x\n\n"))
	if h := readUntilBlank(); !strings.Contains(h, "api/response") {
		t.Fatalf("after malformed frames: %q", h)
	}
}

// TestClientGarbageDoesNotHurt sends nonsense and broken frames to the
// event socket; the server answers or closes but keeps serving.
func TestClientGarbageDoesNotHurt(t *testing.T) {
	lab := fastLab(t)
	srv := lab.servers["fs1"]
	for _, junk := range []string{
		"\x00\x01\x02\n\n",
		"auth ClueCon\n\nsendmsg\nContent-Length: abc\n\n",
		"auth ClueCon\n\nsendmsg x\nContent-Length: 100\n\nshort",
		"auth ClueCon\n\n" + strings.Repeat("A", 70000) + "\n\n",
		"auth ClueCon\n\napi originate {{{{{\n\n",
		"auth ClueCon\n\nbgapi\n\nmyevents\n\nfilter\n\nevent xml\n\n",
	} {
		nc, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = nc.Write([]byte(junk))
		_ = nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, _ = io.Copy(io.Discard, nc)
		_ = nc.Close()
	}
	c := lab.inbound(t, "fs1")
	reply(t, c, "api uuid_exists x", "false")
}
