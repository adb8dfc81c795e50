package freeswitch

import (
	"context"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
)

// When a phone's REFER with Replaces names a call's dialog, FreeSWITCH hangs
// that call's caller up with NORMAL_CLEARING and marks it
// transfer_disposition=replaced (the lab's fs1, an attended transfer of a PSTN
// call to 122099): the call's end cause says ATTENDED_TRANSFER, so the engine
// keeps its connected leg, now joined to the transferred party, counted.
func TestReplacedCallerEndsAsAttendedTransfer(t *testing.T) {
	const uuid = "70f28456-63f8-46c6-b065-26b3f9c1b1fc"
	for _, tc := range []struct {
		name, disposition, want string
	}{
		{"replaced", "replaced", controller.CauseAttendedTransfer},
		{"a plain hangup", "", "NORMAL_CLEARING"},
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
				"Caller-Destination-Number: 122099\nAnswer-State: answered\n\n")
			p.expect(t, "myevents")
			p.expect(t, "linger")
			var c controller.Call
			select {
			case c = <-h.calls:
			case <-time.After(5 * time.Second):
				t.Fatal("the call was not handed to the handler")
			}
			ev := []string{"Event-Name: CHANNEL_HANGUP", "Event-Sequence: 1886", "Unique-ID: " + uuid,
				"Answer-State: hangup", "Hangup-Cause: NORMAL_CLEARING"}
			if tc.disposition != "" {
				ev = append(ev, "variable_transfer_disposition: "+tc.disposition, "variable_endpoint_disposition: ATTENDED_TRANSFER")
			}
			p.event(t, ev...)
			select {
			case <-c.Context().Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the call did not end")
			}
			if got := c.EndCause(); got != tc.want {
				t.Errorf("end cause %s, want %s", got, tc.want)
			}
		})
	}
}
