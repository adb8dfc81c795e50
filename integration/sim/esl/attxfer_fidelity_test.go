package esl

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// attXferRecordings are fs1's inbound event streams (the channels'
// creation, execution, bridge, hangup and DTMF events from att_xfer on,
// ending with a hupall) of FreeSWITCH's own att_xfer on the phone's leg
// (3999's phone, sofia/internal/53999@…) of a PSTN caller's socket-owned
// bridge, consulting loopback/122099/default (integration/traces/README.md).
var attXferRecordings = map[string]string{
	"complete": "o-att-xfer-complete.events",
	"cancel":   "o-att-xfer-cancel.events",
	"refused":  "o-att-xfer-refused.events",
}

// attXferRolesByName names the channels of a recording by their names.
func attXferRolesByName(frames []*frame) map[string]string {
	roles := map[string]string{}
	for _, f := range frames {
		name, id := f.ev("Channel-Name"), f.ev("Unique-ID")
		switch {
		case strings.HasPrefix(name, "sofia/internal/+4989123456@"):
			roles[id] = "held"
		case strings.HasPrefix(name, "sofia/internal/53999@"):
			roles[id] = "phone"
		case name == "loopback/122099-a":
			roles[id] = "loopA"
		case name == "loopback/122099-b":
			roles[id] = "loopB"
		}
	}
	return roles
}

// attXferView is what callctl reads of the story, per channel role, in
// order: hangups, the applications' starts and ends (bridge, socket,
// att_xfer, uuid_bridge) with the answer state and the channel a uuid_br
// transfer source names, joins, and the variables of the consultation's
// -b leg that tell callctl which phone consults.
func attXferView(frames []*frame, roles map[string]string) map[string][]string {
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
			s = fmt.Sprintf("%s cause=%s", name, f.ev("Hangup-Cause"))
		case "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE":
			app := f.ev("Application")
			if app != "bridge" && app != "socket" && app != "uuid_bridge" && app != "att_xfer" {
				continue
			}
			s = fmt.Sprintf("%s %s answer=%s", name, app, f.ev("Answer-State"))
			if src := f.ev("variable_transfer_source"); strings.Contains(src, ":uuid_br:") {
				s += " source=uuid_br:" + roles[src[strings.LastIndex(src, ":")+1:]]
			}
			if role == "loopB" && app == "socket" && name == "CHANNEL_EXECUTE" {
				s += fmt.Sprintf(" loopback_leg=%s from=%s caller=%s", f.ev("variable_loopback_leg"),
					roles[f.ev("variable_other_loopback_from_uuid")], f.ev("Caller-Caller-ID-Number"))
			}
		case "CHANNEL_BRIDGE":
			s = name + " other=" + roles[f.ev("Other-Leg-Unique-ID")]
		case "DTMF":
			s = name + " " + f.ev("DTMF-Digit")
		default:
			continue
		}
		out[role] = append(out[role], s)
	}
	return out
}

// TestFidelityAttXfer plays FreeSWITCH's att_xfer on the simulator as on
// fs1: a caller bridged by its socket application to the phone 53999,
// uuid_broadcast <phone> att_xfer::loopback/122099/default aleg, the
// consultation handed to the controller, which bridges it to 2099; then the
// phone hangs up (complete), presses # (cancel), or 2099 is busy
// (refused); then hupall. What callctl reads of each channel matches the
// recording.
func TestFidelityAttXfer(t *testing.T) {
	for mode, file := range attXferRecordings {
		t.Run(mode, func(t *testing.T) {
			traceDir(t)
			rec, err := parseRaw(filepath.Join("..", "..", "traces", "freeswitch", file))
			if err != nil {
				t.Fatal(err)
			}
			want := attXferView(rec, attXferRolesByName(rec))
			ctl := newController(t)
			lab := newTestLab(t, callmodel.ScaledClock(speed),
				testServerSpec{name: "fs1", ip: "127.0.0.11", controllers: []string{ctl.addr()}})
			lab.fleet.SetPhone("fs1", "53999", callmodel.Answer(0))
			if mode == "refused" {
				lab.fleet.SetPhone("fs1", "2099", callmodel.Busy())
			} else {
				lab.fleet.SetPhone("fs1", "2099", callmodel.Answer(0))
			}
			mon := lab.inbound(t, "fs1")
			mon.send("event plain ALL")
			mon.until(isType("command/reply"))
			// got is what the monitor saw from the att_xfer on, events
			// read while waiting for an api reply included.
			var got []*frame
			api := func(cmd string) string {
				mon.send("api " + cmd)
				fs := mon.until(isType("api/response"))
				got = append(got, fs[:len(fs)-1]...)
				return string(fs[len(fs)-1].body)
			}
			var last *rawClient
			accept := func(target string) (caller string) {
				c := ctl.accept()
				last = c
				c.send("connect")
				caller = c.next().ev("Unique-ID")
				c.send("myevents plain")
				c.send("linger")
				c.send("sendmsg\ncall-command: execute\nexecute-app-name: set\nexecute-app-arg: continue_on_fail=true")
				c.send("sendmsg\ncall-command: execute\nexecute-app-name: set\nexecute-app-arg: hangup_after_bridge=true")
				c.send("sendmsg\ncall-command: execute\nexecute-app-name: bridge\nexecute-app-arg: " + target)
				return caller
			}
			if _, err := lab.fleet.PlaceCall("fs1", callmodel.InboundCall{
				Origin: callmodel.OriginPhone, Caller: callmodel.Party{Number: "+4989123456"}, Destination: "+4930100100",
				Context: "public", NetworkIP: "127.0.0.1",
			}); err != nil {
				t.Fatal(err)
			}
			held := accept("user/53999")
			fs := mon.until(isEvent("CHANNEL_BRIDGE", held))
			phone := fs[len(fs)-1].ev("Other-Leg-Unique-ID")
			if r := api("uuid_broadcast " + phone + " att_xfer::loopback/122099/default aleg"); !strings.HasPrefix(r, "+OK") {
				t.Fatalf("uuid_broadcast: %q", r)
			}
			loopB := accept("user/2099")
			switch mode {
			case "refused":
				// as callctl does: the busy member's cause to the caller
				last.until(func(f *frame) bool {
					return isEvent("CHANNEL_EXECUTE_COMPLETE", loopB)(f) && f.ev("Application") == "bridge"
				})
				last.send("sendmsg\ncall-command: hangup\nhangup-cause: USER_BUSY")
				got = append(got, mon.until(func(f *frame) bool {
					return isEvent("CHANNEL_EXECUTE_COMPLETE", phone)(f) && f.ev("Application") == "att_xfer"
				})...)
			default:
				got = append(got, mon.until(isEvent("CHANNEL_BRIDGE", phone))...)
				if mode == "complete" {
					api("uuid_kill " + phone)
				} else {
					api("uuid_recv_dtmf " + phone + " #")
				}
				got = append(got, mon.until(func(f *frame) bool {
					return isEvent("CHANNEL_BRIDGE")(f) && f.ev("Other-Leg-Unique-ID") == held
				})...)
			}
			api("hupall NORMAL_CLEARING")
			got = append(got, mon.until(isEvent("CHANNEL_HANGUP_COMPLETE", held))...)
			roles := attXferRolesByName(got)
			roles[held], roles[phone] = "held", "phone"
			if roles[loopB] != "loopB" {
				t.Fatalf("the controller's second call %s is not the consultation's -b leg (roles %v)", loopB, roles)
			}
			have := attXferView(got, roles)
			for _, role := range []string{"held", "phone", "loopA", "loopB"} {
				w, h := strings.Join(want[role], "\n  "), strings.Join(have[role], "\n  ")
				if w != h {
					t.Errorf("%s: simulator\n  %s\nrecording\n  %s", role, h, w)
				}
			}
		})
	}
}
