package freeswitch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/hunt"
)

// dialOnceHandler dials spec with the call's own context and reports what
// Dial returned, then holds the call until it ends.
type dialOnceHandler struct {
	spec controller.DialSpec
	out  chan dialReport
}

func (h *dialOnceHandler) Handle(_ controller.MediaServer, c controller.Call) error {
	_, res, err := c.Dial(c.Context(), h.spec)
	h.out <- dialReport{res, err}
	<-c.Context().Done()
	return nil
}

// The member answers and the caller hangs up at once: the caller's
// CHANNEL_BRIDGE with the leg and then its CHANNEL_HANGUP are both read
// before Dial looks (here: both come before the reply to the bridge
// command). FreeSWITCH bridged them first, so the member answered and was
// connected: Dial says answered, every time, not cancelled. (A select on
// both, ready together, would pick either at random: the call is placed 20
// times.)
func TestDialAnsweredThenCallerGone(t *testing.T) {
	for i := range 20 {
		uuid, legID := controller.NewID(), controller.NewID()
		h := &dialOnceHandler{spec: controller.DialSpec{LegID: legID, Target: "user/1000", Timeout: 20 * time.Second},
			out: make(chan dialReport, 1)}
		ms := NewMediaServer(MediaServerConfig{Name: "srv11"})
		s := NewServer(h, []*MediaServer{ms}, Options{LegGoneWait: 200 * time.Millisecond, Logger: quietLogger()})
		if err := s.Listen(context.Background(), "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		go func() { _ = s.Serve() }()
		p := dialFakePeer(t, s.Addr().String())
		next := func(want string) {
			t.Helper()
			select {
			case cmd := <-p.commands:
				if !strings.Contains(cmd, want) {
					t.Fatalf("command %q, want one with %q", cmd, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no command with %q", want)
			}
		}
		next("connect")
		p.send(t, "Content-Type: command/reply\nReply-Text: +OK\nEvent-Name: CHANNEL_DATA\n"+
			"Unique-ID: "+uuid+"\nCaller-Caller-ID-Number: 3999\nCaller-Destination-Number: 1000\n"+
			"Answer-State: ringing\nvariable_current_application: socket\n\n")
		p.expect(t, "myevents")
		p.expect(t, "linger")
		p.expect(t, "continue_on_fail")
		p.expect(t, "hangup_after_bridge")
		next("execute-app-name: bridge")
		p.event(t, "Event-Name: CHANNEL_BRIDGE", "Unique-ID: "+uuid, "Other-Leg-Unique-ID: "+legID, "Answer-State: answered")
		p.event(t, "Event-Name: CHANNEL_HANGUP", "Unique-ID: "+uuid, "Answer-State: hangup", "Hangup-Cause: NORMAL_CLEARING")
		p.send(t, "Content-Type: command/reply\nReply-Text: +OK\n\n")
		// Whatever follows (a cancel of the leg, uuid_exists) is answered.
		go func() {
			for range p.commands {
				_, _ = p.nc.Write([]byte("Content-Type: command/reply\nReply-Text: +OK\n\n"))
			}
		}()
		var r dialReport
		select {
		case r = <-h.out:
		case <-time.After(10 * time.Second):
			t.Fatal("Dial did not return")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = p.nc.Close()
		_ = s.Shutdown(ctx)
		cancel()
		if r.err != nil || r.res.Outcome != hunt.Answered {
			t.Fatalf("call %d: Dial returned %v (%s), %v; want answered", i, r.res.Outcome, r.res.Cause, r.err)
		}
	}
}
