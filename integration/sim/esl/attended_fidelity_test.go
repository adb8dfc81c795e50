package esl

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// attendedRecording is fs1's inbound event stream (event plain ALL) while a
// phone's REFER with Replaces joined two socket-owned calls, recorded on
// callctl's lab (integration/traces/README.md): 70f28456 is the caller of
// the replaced dialog (3999 calling 122099 over the gateway, leg 5ce648fc),
// dee8e473 the PSTN caller whose phone leg 3bd6f824 sent the REFER.
var attendedRecording = filepath.Join("..", "..", "traces", "freeswitch", "n-attended-refer.events")

var attendedRoles = map[string]string{
	"70f28456-63f8-46c6-b065-26b3f9c1b1fc": "replaced",
	"5ce648fc-d167-4f25-ab55-d30ca5e884de": "leg",
	"dee8e473-09ab-4730-a980-32cc0e9a4ae7": "joined",
	"3bd6f824-e557-4dc1-be4a-bdc0adae4ec7": "referrer",
}

// attendedView is what callctl reads of an event of the transfer: per
// channel role, in order, the events that tell a hangup, a bridge's or an
// application's end and a join, with the variables that tell them apart.
func attendedView(frames []*frame, roles map[string]string) map[string][]string {
	out := map[string][]string{}
	for _, f := range frames {
		role := roles[f.ev("Unique-ID")]
		if role == "" {
			continue
		}
		name := f.ev("Event-Name")
		var s string
		switch name {
		case "CHANNEL_HANGUP":
			s = fmt.Sprintf("%s cause=%s disposition=%s", name, f.ev("Hangup-Cause"), f.ev("variable_transfer_disposition"))
		case "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_EXECUTE":
			app := f.ev("Application")
			if app != "bridge" && app != "socket" && app != "uuid_bridge" {
				continue
			}
			s = fmt.Sprintf("%s %s answer=%s", name, app, f.ev("Answer-State"))
			if src := f.ev("variable_transfer_source"); strings.Contains(src, ":uuid_br:") {
				s += " source=uuid_br:" + roles[src[strings.LastIndex(src, ":")+1:]]
			}
		case "CHANNEL_BRIDGE":
			s = name + " other=" + roles[f.ev("Other-Leg-Unique-ID")]
		default:
			continue
		}
		out[role] = append(out[role], s)
	}
	return out
}

// TestFidelityAttendedTransfer plays the recorded attended transfer on the
// simulator: two calls, each bridged by its socket application to a leg
// that answers, then a REFER with Replaces from the PSTN call's phone leg
// naming the other call's dialog. What callctl reads of each channel
// matches the recording.
func TestFidelityAttendedTransfer(t *testing.T) {
	traceDir(t)
	rec, err := parseRaw(attendedRecording)
	if err != nil {
		t.Fatal(err)
	}
	want := attendedView(rec, attendedRoles)
	ctl := newController(t)
	lab := newTestLab(t, callmodel.ScaledClock(speed),
		testServerSpec{name: "fs1", ip: "127.0.0.11", controllers: []string{ctl.addr()}})
	lab.fleet.SetPhone("fs1", "2099", callmodel.Answer(0))
	lab.fleet.SetPhone("fs1", "63999", callmodel.Answer(0))
	mon := lab.inbound(t, "fs1")
	mon.send("event plain ALL")
	mon.until(isType("command/reply"))
	call := func(from, dest, target string) (caller, leg string) {
		if _, err := lab.fleet.PlaceCall("fs1", callmodel.InboundCall{
			Origin: callmodel.OriginPhone, Caller: callmodel.Party{Number: from}, Destination: dest,
			Context: "public", NetworkIP: "127.0.0.1",
		}); err != nil {
			t.Fatal(err)
		}
		c := ctl.accept()
		c.send("connect")
		caller = c.next().ev("Unique-ID")
		c.send("myevents plain")
		c.send("linger")
		c.send("sendmsg\ncall-command: execute\nexecute-app-name: set\nexecute-app-arg: hangup_after_bridge=true")
		c.send("sendmsg\ncall-command: execute\nexecute-app-name: bridge\nexecute-app-arg: " + target)
		fs := c.until(isEvent("CHANNEL_BRIDGE", caller))
		leg = fs[len(fs)-1].ev("Other-Leg-Unique-ID")
		return caller, leg
	}
	replaced, leg := call("3999", "122099", "user/2099")
	joined, referrer := call("+4989123456", "+4930100100", "user/63999")
	// What the monitor saw before the transfer is not compared.
	mon.until(isEvent("CHANNEL_BRIDGE", joined))
	if err := lab.servers["fs1"].AttendedTransfer(referrer, replaced); err != nil {
		t.Fatal(err)
	}
	got := mon.until(isEvent("CHANNEL_BRIDGE", joined))
	roles := map[string]string{replaced: "replaced", leg: "leg", joined: "joined", referrer: "referrer"}
	have := attendedView(got, roles)
	for _, role := range []string{"replaced", "leg", "joined", "referrer"} {
		w, h := strings.Join(want[role], "\n  "), strings.Join(have[role], "\n  ")
		if w != h {
			t.Errorf("%s: simulator\n  %s\nrecording\n  %s", role, h, w)
		}
	}
}
