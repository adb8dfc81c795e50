package freeswitch

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
)

// fakeSocketPeer plays FreeSWITCH's socket application on one connection:
// it answers every command with +OK and reports the commands it was sent.
type fakeSocketPeer struct {
	nc       net.Conn
	commands chan string
}

func dialFakePeer(t *testing.T, addr string) *fakeSocketPeer {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	p := &fakeSocketPeer{nc: nc, commands: make(chan string, 16)}
	go p.read()
	return p
}

func (p *fakeSocketPeer) read() {
	defer close(p.commands)
	br := bufio.NewReader(p.nc)
	for {
		var head strings.Builder
		length := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\n" {
				break
			}
			if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
			head.WriteString(line)
		}
		if length > 0 {
			if _, err := br.Discard(length); err != nil {
				return
			}
		}
		p.commands <- head.String()
	}
}

func (p *fakeSocketPeer) send(t *testing.T, s string) {
	t.Helper()
	if _, err := p.nc.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

// expect waits for the next command and checks that it contains want.
func (p *fakeSocketPeer) expect(t *testing.T, want string) {
	t.Helper()
	select {
	case cmd, ok := <-p.commands:
		if !ok {
			t.Fatalf("connection closed, want a command with %q", want)
		}
		if !strings.Contains(cmd, want) {
			t.Fatalf("command %q, want one with %q", cmd, want)
		}
		p.send(t, "Content-Type: command/reply\nReply-Text: +OK\n\n")
	case <-time.After(5 * time.Second):
		t.Fatalf("no command with %q", want)
	}
}

func (p *fakeSocketPeer) event(t *testing.T, headers ...string) {
	t.Helper()
	body := strings.Join(headers, "\n") + "\n\n"
	p.send(t, fmt.Sprintf("Content-Length: %d\nContent-Type: text/event-plain\n\n%s", len(body), body))
}

// heldHandler keeps each call until it ends.
type heldHandler struct {
	calls chan controller.Call
}

func (h *heldHandler) Handle(_ controller.MediaServer, c controller.Call) error {
	h.calls <- c
	<-c.Context().Done()
	return nil
}

// When the dialplan's first socket application fails (its node is down) and
// the next one reaches this node, FreeSWITCH's event dispatch may still hold
// the first application's CHANNEL_EXECUTE_COMPLETE and deliver it to the new
// connection. That event is older than the connect reply (lower
// Event-Sequence): the call stays this connection's. A socket application's
// end that comes after the connect is a transfer: the connection lets go.
func TestEarlierSocketApplicationEndIsNotATransfer(t *testing.T) {
	const uuid = "3cf563ab-8063-4d6b-bd9f-d80aac3c1dea"
	for _, tc := range []struct {
		name      string
		seq       string
		stillOurs bool
	}{
		{"fired before the connect", "900", true},
		{"fired after the connect", "910", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &heldHandler{calls: make(chan controller.Call, 1)}
			ms := NewMediaServer(MediaServerConfig{Name: "srv11"})
			s := NewServer(h, []*MediaServer{ms}, Options{})
			if err := s.Listen(context.Background(), "127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
			go func() { _ = s.Serve() }()
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = s.Shutdown(ctx)
			}()

			p := dialFakePeer(t, s.Addr().String())
			select {
			case cmd := <-p.commands:
				if cmd != "connect\n" {
					t.Fatalf("first command %q, want connect", cmd)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no connect")
			}
			p.send(t, "Content-Type: command/reply\nReply-Text: +OK\nEvent-Name: CHANNEL_DATA\n"+
				"Event-Sequence: 905\nUnique-ID: "+uuid+"\nCaller-Caller-ID-Number: 3999\n"+
				"Caller-Destination-Number: 122099\nAnswer-State: ringing\n"+
				"variable_current_application: socket\n"+
				"variable_current_application_data: 127.0.0.1%3A18086%20async%20full\n\n")
			p.expect(t, "myevents")
			p.expect(t, "linger")
			var c controller.Call
			select {
			case c = <-h.calls:
			case <-time.After(5 * time.Second):
				t.Fatal("the call was not handed to the handler")
			}
			p.event(t, "Event-Name: CHANNEL_EXECUTE_COMPLETE", "Event-Sequence: "+tc.seq,
				"Unique-ID: "+uuid, "Answer-State: ringing", "Application: socket",
				"Application-Data: 127.0.0.1%3A18084%20async%20full")
			// The caller hangs up next: events are handled in order, so once
			// the call has ended the socket event has been judged, and the
			// cause says how.
			p.event(t, "Event-Name: CHANNEL_HANGUP", "Event-Sequence: 920", "Unique-ID: "+uuid,
				"Answer-State: hangup", "Hangup-Cause: ORIGINATOR_CANCEL")
			select {
			case <-c.Context().Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the call did not end")
			}
			fc := c.(*call)
			got := fc.EndCause()
			fc.mu.Lock()
			moved := fc.detached || fc.transferred
			fc.mu.Unlock()
			if tc.stillOurs && (got != "ORIGINATOR_CANCEL" || moved) {
				t.Fatalf("end cause %s, moved on %v; want ORIGINATOR_CANCEL, still ours: an earlier socket application's end let the call go", got, moved)
			}
			if !tc.stillOurs && !moved {
				t.Fatalf("end cause %s, not moved on: a socket application's end after the connect means the channel moved on without callctl", got)
			}
		})
	}
}
