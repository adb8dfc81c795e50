package freeswitch

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/freeswitch/esl"
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

// FreeSWITCH's att_xfer originates the consultation from the phone's own
// channel through loopback into callctl (the lab's fs1, recorded): the -b
// leg that runs socket carries the held party's number and names the
// phone's channel (other_loopback_from_uuid), which callInfo passes on for
// the engine to check against the legs it connected. The -a leg, and a
// call that is no loopback leg, name none.
func TestAttXferConsultationNamesThePhonesChannel(t *testing.T) {
	const phone = "5baa98d9-c950-4b0b-98dc-8d8a1bce263f" // sofia/internal/53999@127.0.0.1:7091
	data, err := os.ReadFile(filepath.Join("..", "..", "integration", "traces", "freeswitch", "o-att-xfer-complete.events"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]controller.CallInfo{}
	r := esl.NewReader(bytes.NewReader(data))
	for {
		f, err := r.ReadFrame()
		if err != nil {
			break
		}
		h := esl.Headers(f.Body)
		if h.Get("Event-Name") == "CHANNEL_EXECUTE" || h.Get("Event-Name") == "CHANNEL_CREATE" {
			if _, seen := got[h.Get("Channel-Name")]; !seen {
				got[h.Get("Channel-Name")] = callInfo(h, "srv11")
			}
		}
	}
	b, a := got["loopback/122099-b"], got["loopback/122099-a"]
	if b.ConsultationOf != phone || b.Caller != "+4989123456" || b.Dialed != "122099" {
		t.Errorf("loopback -b leg: consultation of %q, caller %q, dialed %q; want %s, +4989123456, 122099", b.ConsultationOf, b.Caller, b.Dialed, phone)
	}
	if a.ConsultationOf != "" || got["sofia/internal/53999@127.0.0.1:7091"].ConsultationOf != "" {
		t.Errorf("the -a leg (%q) and the phone's channel name no channel that originated them", a.ConsultationOf)
	}
}
