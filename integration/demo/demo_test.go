package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// The demo runs end to end here, on every fleet, so that what `make demo`
// shows a newcomer cannot silently rot: each worked example must still
// produce its calls, what the phones see and its call records.

// output collects what the demo prints; it may cancel the run once a
// string appears (an operator pressing Ctrl-C at that moment).
type output struct {
	mu      sync.Mutex
	b       bytes.Buffer
	trigger string
	cancel  context.CancelFunc
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, err := o.b.Write(p)
	if o.trigger != "" && bytes.Contains(p, []byte(o.trigger)) {
		o.cancel()
	}
	return n, err
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// record is what the test reads back of a printed call record.
type record struct {
	ID          string `json:"record_id"`
	CallID      string `json:"call_id"`
	Server      string `json:"server"`
	Caller      string `json:"caller"`
	Dialed      string `json:"dialed"`
	Route       string `json:"route"`
	Org         string `json:"org"`
	Billing     string `json:"billing"`
	CallerID    string `json:"caller_id_presented"`
	HangupCause string `json:"hangup_cause"`
	Answered    string `json:"answered_by"`
	Transfer    struct {
		Kind string `json:"kind"`
		From string `json:"from_record"`
		By   string `json:"by"`
	} `json:"transfer"`
	HandedOff bool `json:"handed_off"`
	Attempts  []struct {
		Target  string `json:"target"`
		Outcome string `json:"outcome"`
		Forward string `json:"forward"`
		By      string `json:"forwarded_by"`
	} `json:"attempts"`
	Legs []struct {
		Server string `json:"server"`
		Kind   string `json:"kind"`
	} `json:"counted_legs"`
}

func (r record) attempts() string {
	var s []string
	for _, a := range r.Attempts {
		s = append(s, a.Target+":"+a.Outcome)
	}
	return strings.Join(s, " ")
}

// records parses every call record the demo printed.
func records(t *testing.T, out string) []record {
	t.Helper()
	var recs []record
	var block []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "   call record ("):
			in, block = true, nil
		case in:
			block = append(block, line)
			if line == "   }" {
				var r record
				if err := json.Unmarshal([]byte(strings.Join(block, "\n")), &r); err != nil {
					t.Fatalf("a printed call record is not JSON: %v\n%s", err, strings.Join(block, "\n"))
				}
				recs = append(recs, r)
				in = false
			}
		}
	}
	return recs
}

// find returns the one record of server with caller and dialed (a
// transferred call's second record aside).
func find(t *testing.T, recs []record, server, caller, dialed string) record {
	t.Helper()
	var found []record
	for _, r := range recs {
		if r.Server == server && r.Caller == caller && r.Dialed == dialed && r.Transfer.Kind == "" {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d records of %s dialing %s on %s, want 1: %+v", len(found), caller, dialed, server, found)
	}
	return found[0]
}

// has fails unless out has a line matching the pattern.
func has(t *testing.T, out, pattern string) {
	t.Helper()
	if !regexp.MustCompile("(?m)" + pattern).MatchString(out) {
		t.Errorf("no line matches %q", pattern)
	}
}

// noLeak waits until the goroutines started since before are gone.
func noLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines left, %d before the demo:\n%s", runtime.NumGoroutine(), before, buf[:n])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runDemoT(t *testing.T, ctx context.Context, out *output, args ...string) (int, string) {
	t.Helper()
	var stderr output
	code := run(ctx, args, out, &stderr)
	return code, stderr.String()
}

func TestDemoEveryFleet(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("fleets", func(t *testing.T) {
		for _, tc := range []struct {
			fleet string
			json  bool
		}{{"mixed", false}, {"freeswitch", true}, {"asterisk", false}} {
			t.Run(tc.fleet, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				defer cancel()
				args := []string{"-fleet", tc.fleet}
				if tc.json {
					args = append(args, "-json-logs")
				}
				out := &output{}
				code, stderr := runDemoT(t, ctx, out, args...)
				text := out.String()
				if code != 0 {
					t.Fatalf("exit %d; stderr: %s\noutput:\n%s", code, stderr, text)
				}
				checkStory(t, tc.fleet, text)
				checkLogs(t, text, tc.json)
			})
		}
	})
	noLeak(t, before)
}

// checkStory asserts what each worked example showed.
func checkStory(t *testing.T, fleet, out string) {
	has(t, out, `THIS IS A SIMULATION, fleet "`+fleet+`"`)
	recs := records(t, out)

	// Seed 002, example 1.
	r := find(t, recs, "srv11", "1100", "8008003")
	if got := r.attempts(); got != "77721403:busy 77721404:no-answer 77721405:not-registered 77721406:answered" || r.Billing != "grp1" {
		t.Errorf("8008003: attempts %s, billing %s", got, r.Billing)
	}
	has(t, out, `^     srv11 77721405 +did not ring$`)
	has(t, out, `^     srv11 77721404 +rang, showing 1100 "Caller One": not answered, cancelled after 2\.\d s$`)
	// Example 2.
	if r := find(t, recs, "srv11", "1200", "8008002"); r.attempts() != "77721401:busy 77721402:answered" || r.Org != "grp2" {
		t.Errorf("8008002: %s in %s", r.attempts(), r.Org)
	}
	// Example 3: a member dialed directly hunts on; with T it does not.
	if r := find(t, recs, "srv11", "1300", "77721402"); r.attempts() != "77721402:busy 77721403:answered" {
		t.Errorf("77721402: %s", r.attempts())
	}
	if r := find(t, recs, "srv11", "1300", "77721402T"); r.attempts() != "77721402:busy" || r.Route != "member" || r.HangupCause != "USER_BUSY" {
		t.Errorf("77721402T: %s route %s cause %s", r.attempts(), r.Route, r.HangupCause)
	}
	// Example 4: nobody answers, the caller hears busy.
	if r := find(t, recs, "srv11", "1400", "8008001"); r.attempts() != "77721401:no-answer" || r.HangupCause != "USER_BUSY" {
		t.Errorf("8008001 of grp4: %s cause %s", r.attempts(), r.HangupCause)
	}
	has(t, out, `^   caller: not connected, SIP 486 \(USER_BUSY\)$`)

	// Seed 003: 122099 shown on srv12 as 113999; one counted leg on each side.
	has(t, out, `^   2099's phone on srv12 shows the caller as 113999( "Aiko Sato")?$`)
	has(t, out, `^   counted legs now: srv11 1, srv12 1 `)
	if r := find(t, recs, "srv11", "3999", "122099"); r.Route != "inter-server" || r.CallerID != "113999" || r.Answered != "2099" {
		t.Errorf("122099: route %s caller id %s answered by %s", r.Route, r.CallerID, r.Answered)
	}
	// srv12's records of 113999's calls: seed 003's and the attended
	// transfer's consultation.
	far := 0
	for _, r := range recs {
		if r.Server == "srv12" && r.Caller == "113999" && r.Dialed == "2099" {
			far++
			if len(r.Legs) != 1 || r.Legs[0].Kind != "trunk-in" {
				t.Errorf("srv12's record of 113999: legs %+v", r.Legs)
			}
		}
	}
	if far != 2 {
		t.Errorf("%d records of 113999 calling 2099 on srv12, want 2", far)
	}

	// Seed 000: 1201 reaches 201 of org B, shown as 2124, billed to org A.
	has(t, out, `^     srv11 201 +rang, showing 2124 "Agent 124": answered`)
	if r := find(t, recs, "srv11", "124", "1201"); r.Route != "org-connect" || r.Org != "orgB" || r.Billing != "orgA" {
		t.Errorf("1201: route %s org %s billing %s", r.Route, r.Org, r.Billing)
	}

	// Seed 004: the 0044 rule, and the org default otherwise.
	has(t, out, `^     PSTN \+442079460000 rang, showing \+442071234567[ :]`)
	has(t, out, `^     PSTN \+4930123456 +rang, showing \+4930100100[ :]`)
	if r := find(t, recs, "srv11", "3999", "00442079460000"); r.CallerID != "+442071234567" || r.Billing != "acme" {
		t.Errorf("00442079460000: caller id %s billing %s", r.CallerID, r.Billing)
	}

	// Seed 001: kundeB uses kundeA's number; both directions bill kundeA.
	has(t, out, `^     PSTN \+4930999888 +rang, showing \+4930555001[ :]`)
	if r := find(t, recs, "srv11", "300", "030999888"); r.Billing != "kundeA" || r.Org != "kundeB" {
		t.Errorf("030999888 of kundeB: billing %s org %s", r.Billing, r.Org)
	}
	if r := find(t, recs, "srv11", "+4915112345678", "+4930555001"); r.Billing != "kundeA" || r.Answered != "300" {
		t.Errorf("+4930555001 from the PSTN: billing %s answered by %s", r.Billing, r.Answered)
	}

	// Seed 003 §4: the transferred external call counts 2 + 1 on every
	// fleet (srv11 FreeSWITCH or Asterisk).
	has(t, out, `^   counted legs now: srv11 2, srv12 1 `)
	var transferred []record
	for _, r := range recs {
		// The parked call's record (a blind transfer to *98) is checked below.
		if r.Transfer.Kind == "blind" && r.Dialed != "*98" {
			transferred = append(transferred, r)
		}
	}
	// FreeSWITCH brings the PSTN caller's own channel back (its record has
	// the PSTN leg and the trunk leg); Asterisk a new Local channel, whose
	// record has the trunk leg while the PSTN leg stays with the call whose
	// channel it is.
	wantLegs := 2
	if fleet == "asterisk" {
		wantLegs = 1
		// The PSTN calls to 3999's number: this one, the IVR transfer's,
		// the one 3999 transfers attended and the one 3999 parks.
		n := 0
		for _, r := range recs {
			if r.Server != "srv11" || r.Caller != "+4915112345678" || r.Dialed != "+4930100100" || r.Transfer.Kind != "" {
				continue
			}
			n++
			if len(r.Legs) != 1 || r.Legs[0].Kind != "pstn-in" {
				t.Errorf("a transferred PSTN call's first record: legs %+v, want its pstn-in leg", r.Legs)
			}
		}
		if n != 4 {
			t.Errorf("%d records of the PSTN calls to +4930100100 that were transferred, want 4", n)
		}
	}
	if len(transferred) != 1 || transferred[0].Answered != "2099" || len(transferred[0].Legs) != wantLegs {
		t.Errorf("transferred call records: %+v", transferred)
	}
	has(t, out, `^     srv12 2099 +rang, showing \+4915112345678: answered`)

	// Forwarding: 3997 is busy, her forward rings the night desk on srv12,
	// which shows 113999; the forward is an attempt of the same record.
	has(t, out, `^   the night desk 1101 on srv12 shows the caller as 113999 "Aiko Sato" \(forwarded by 3997\)$`)
	if r := find(t, recs, "srv11", "3999", "3997"); r.attempts() != "3997:busy 1101:answered" || r.Answered != "1101" {
		t.Errorf("the forwarded call's record: attempts %s, answered by %s", r.attempts(), r.Answered)
	}

	// No-answer forward: the night desk shows the PSTN caller, 2 + 1.
	has(t, out, `^   the night desk 1101 on srv12 shows the caller as \+4915112345678 \(forwarded by 3997, unanswered for 2 s\)$`)
	has(t, out, `^   counted legs now: srv11 2, srv12 1 \(srv11: the PSTN leg in \+ the forward's trunk leg out; srv12: the trunk leg in\)$`)
	has(t, out, `^     srv11 3997 +rang, showing \+4915112345678: not answered, cancelled after 2\.\d s$`)
	var noAnswer []record
	for _, r := range recs {
		if r.Server == "srv11" && r.Caller == "+4915112345678" && r.Dialed == "+4930100197" && r.Answered == "1101" {
			noAnswer = append(noAnswer, r)
		}
	}
	if len(noAnswer) != 1 || noAnswer[0].attempts() != "3997:no-answer 1101:answered" || noAnswer[0].Attempts[1].Forward != "forward-noanswer" ||
		len(noAnswer[0].Legs) != 2 {
		t.Errorf("the no-answer forward's records: %+v", noAnswer)
	}

	// Group fallback: every member busy, the fallback on srv12 shows the
	// PSTN caller; its attempt is the call's forward to the fallback.
	has(t, out, `^   every member was busy: the fallback 1101 on srv12 shows the caller as \+4915112345678$`)
	fb := find(t, recs, "srv11", "+4915112345678", "+4930200100")
	if got := fb.attempts(); got != "77721401:busy 77721402:busy 77721403:busy 77721404:busy 77721405:busy 77721406:busy 1101:answered" ||
		fb.Attempts[6].Forward != "fallback" || fb.Attempts[6].By != "org grp1" || len(fb.Legs) != 2 {
		t.Errorf("the group fallback's record: attempts %s (%+v), legs %+v", got, fb.Attempts, fb.Legs)
	}

	// Attended transfer, on every fleet: 2099 shows 113999, 2 + 1 counted
	// while joined, the consultation's record says attended by 3999 from
	// the PSTN call's record.
	has(t, out, `^   2099's phone on srv12 shows the caller as 113999 "Aiko Sato" \(3999 consults 2099\)$`)
	has(t, out, `^   3999's lines are gone: the PSTN caller talks to 2099, whose phone still shows 113999$`)
	has(t, out, `^   counted legs now: srv11 2, srv12 1 \(joined: srv11 the PSTN leg in \+ the trunk leg out; srv12 the trunk leg in\)$`)
	var att []record
	for _, r := range recs {
		if r.Transfer.Kind == "attended" {
			att = append(att, r)
		}
	}
	if len(att) != 1 || att[0].Caller != "3999" || att[0].Dialed != "122099" || att[0].Answered != "2099" || att[0].CallerID != "113999" ||
		len(att[0].Legs) != 1 || att[0].Legs[0].Kind != "trunk-out" || att[0].Transfer.By != "3999" {
		t.Errorf("the attended transfer's consultation records: %+v", att)
	} else if from := byID(recs, att[0].Transfer.From); from == nil || from.Caller != "+4915112345678" || from.Answered != "3999" {
		t.Errorf("the attended transfer's consultation comes from record %q: %+v, want the PSTN call 3999 took", att[0].Transfer.From, from)
	}

	// IVR transfer on every fleet.
	has(t, out, `^   2099's phone on srv12 shows the caller as \+4915112345678 \(routed in acme, the org of the DID\)$`)
	var ivr, parked []record
	for _, r := range recs {
		switch {
		case r.Transfer.Kind == "ivr":
			ivr = append(ivr, r)
		case r.Dialed == "*98":
			parked = append(parked, r)
		}
	}
	// The caller's own channel comes back (its PSTN leg and the trunk leg).
	if len(ivr) != 1 || ivr[0].Route != "inter-server" || ivr[0].Org != "acme" || ivr[0].Answered != "2099" || len(ivr[0].Legs) != 2 {
		t.Errorf("the IVR transfer's records: %+v", ivr)
	}
	// Park hand-off, on every fleet. The PSTN leg is counted on the parked
	// call's record on FreeSWITCH (the caller's own channel is parked), on
	// the record of the call 3999 took on Asterisk (a Local channel is).
	has(t, out, `^   the node's live calls \(callctl calls\) list call=\S+: caller 3999, dialed \*98, route feature, handed off true$`)
	has(t, out, `^   counted legs now: srv11 1, srv12 0 \(parked: the caller's PSTN leg stays counted until its channel ends\)$`)
	if len(parked) != 1 || parked[0].Route != "feature" || !parked[0].HandedOff || parked[0].Transfer.Kind != "blind" || parked[0].Transfer.By != "3999" {
		t.Errorf("the parked call's records: %+v", parked)
	} else {
		legs := parked[0].Legs
		if fleet == "asterisk" {
			if len(legs) != 0 {
				t.Errorf("the parked Local channel's record counts legs %+v, want none", legs)
			}
			first := byID(recs, parked[0].Transfer.From)
			if first == nil || first.Answered != "3999" {
				t.Fatalf("the parked call comes from record %q: %+v, want the call 3999 took", parked[0].Transfer.From, first)
			}
			legs = first.Legs
		}
		if len(legs) != 1 || legs[0].Kind != "pstn-in" {
			t.Errorf("the parked caller's PSTN leg: counted legs %+v, want one pstn-in", legs)
		}
	}

	// The channel limit refuses the second call with 503; the first is untouched.
	has(t, out, `^   caller: not connected, SIP 503 \(NORMAL_CIRCUIT_CONGESTION\)$`)
	has(t, out, `^     PSTN \+4930222222 +did not ring$`)
	has(t, out, `^   counted legs now: srv11 1, srv12 0 \(the first call is untouched\)$`)
	if r := find(t, recs, "srv11", "3998", "030222222"); r.HangupCause != "NORMAL_CIRCUIT_CONGESTION" || len(r.Attempts) > 1 {
		t.Errorf("refused call: cause %s attempts %s", r.HangupCause, r.attempts())
	}
	if r := find(t, recs, "srv11", "3999", "030111111"); r.HangupCause != "NORMAL_CLEARING" || r.Answered != "+4930111111" {
		t.Errorf("first call under the limit: cause %s answered by %s", r.HangupCause, r.Answered)
	}

	// Limit forward: the PSTN call arriving at srv11's limit goes to 3998,
	// its leg counted past the limit.
	has(t, out, `^   3998 on srv11 shows the caller as \+4915112345678 \(srv11's limit forward\)$`)
	has(t, out, `^   counted legs now: srv11 2, srv12 0 \(the first call's leg, and the arriving PSTN leg counted past the limit of 1\)$`)
	has(t, out, `^     srv11 3997 +did not ring$`)
	var limited []record
	for _, r := range recs {
		if r.Caller == "+4915112345678" && r.Dialed == "+4930100197" && r.Answered == "3998" {
			limited = append(limited, r)
		}
	}
	if len(limited) != 1 || limited[0].attempts() != "3997:congested 3998:answered" || limited[0].Attempts[1].Forward != "forward-limit" ||
		limited[0].Attempts[1].By != "server srv11" {
		t.Errorf("the limit forward's records: %+v", limited)
	}

	has(t, out, `^   counted legs now: srv11 0, srv12 0: nothing leaked$`)
	has(t, out, `^── callctl stopped`)
}

// checkLogs asserts that callctl's log lines are there, in the chosen
// format, with call=<id> on the lines about a call, and that the
// simulator's own lines are not.
func checkLogs(t *testing.T, out string, asJSON bool) {
	dialing := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if asJSON {
			if !strings.HasPrefix(line, `{"time":`) {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Errorf("log line is not JSON: %v: %s", err, line)
				continue
			}
			if _, sim := m["sim"]; sim {
				t.Errorf("a simulator line: %s", line)
			}
			if m["msg"] == "dialing" || m["msg"] == "call record" {
				dialing++
				if id, _ := m["call"].(string); id == "" {
					t.Errorf("no call id: %s", line)
				}
			}
			continue
		}
		if !strings.HasPrefix(line, "time=") {
			continue
		}
		if strings.Contains(line, " sim=") {
			t.Errorf("a simulator line: %s", line)
		}
		if strings.Contains(line, "msg=dialing ") || strings.Contains(line, `msg="call record"`) {
			dialing++
			if !regexp.MustCompile(` call=\S+`).MatchString(line) {
				t.Errorf("no call id: %s", line)
			}
		}
	}
	if dialing < 20 {
		t.Errorf("%d dialing and call record log lines, want callctl's log of every call", dialing)
	}
}

// Ctrl-C in the middle of a call: the demo hangs up, stops the node and the
// lab, and returns 130 without leaving anything running.
func TestDemoInterrupted(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ictx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	out := &output{trigger: "2099's phone on srv12 shows", cancel: interrupt}
	start := time.Now()
	code, stderr := runDemoT(t, ictx, out, "-fleet", "mixed")
	if code != 130 {
		t.Fatalf("exit %d, want 130; stderr: %s\noutput:\n%s", code, stderr, out.String())
	}
	if !strings.Contains(stderr, "interrupted") {
		t.Errorf("stderr: %q", stderr)
	}
	if strings.Contains(out.String(), "seed 000") {
		t.Error("the demo went on after the interrupt")
	}
	t.Logf("stopped %s after the start", time.Since(start).Round(time.Millisecond))
	noLeak(t, before)
}

func TestDemoUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"-fleet", "kamailio"}, 2, `-fleet "kamailio": want freeswitch, asterisk or mixed`},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"-nope"}, 2, "flag provided but not defined"},
		{[]string{"-h"}, 0, "usage: go run ./integration/demo"},
	} {
		var out, stderr output
		if code := run(context.Background(), tc.args, &out, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.says) {
			t.Errorf("%v: exit %d, stderr %q; want %d saying %q", tc.args, code, stderr.String(), tc.code, tc.says)
		}
		if out.String() != "" {
			t.Errorf("%v: printed %q before starting anything", tc.args, out.String())
		}
	}
}

// byID finds the record with the record id, nil if none.
func byID(recs []record, id string) *record {
	for i := range recs {
		if id != "" && recs[i].ID == id {
			return &recs[i]
		}
	}
	return nil
}
