package freeswitch

import (
	"bytes"
	"github.com/callctl/callctl/internal/labtest"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/callctl/callctl/adapters/freeswitch/esl"
	"github.com/callctl/callctl/controller/hunt"
	"github.com/callctl/callctl/controller/routing"
)

var tracesDir = labtest.TracesDir()

// bridgeCompletions returns the variables of every bridge
// CHANNEL_EXECUTE_COMPLETE in a recorded stream.
func bridgeCompletions(t *testing.T, file string) []BridgeVars {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(tracesDir, file))
	if err != nil {
		labtest.Missing(t, "recorded trace not available (%v)", err)
	}
	rd := esl.NewReader(bytes.NewReader(data))
	var out []BridgeVars
	for {
		f, err := rd.ReadFrame()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		ct := f.ContentType()
		if ct != esl.TypeEventPlain && ct != esl.TypeEventJSON {
			continue
		}
		ev, err := esl.ParseEvent(&f)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Is("Event-Name", "CHANNEL_EXECUTE_COMPLETE") && ev.Is("Application", "bridge") {
			out = append(out, BridgeVars{
				Disposition:     ev.Get("variable_originate_disposition"),
				DialStatus:      ev.Get("variable_DIALSTATUS"),
				LastBridgeCause: ev.Get("variable_last_bridge_hangup_cause"),
				BridgeCause:     ev.Get("variable_bridge_hangup_cause"),
				FailedCause:     ev.Get("variable_originate_failed_cause"),
			})
		}
	}
}

// The outcome of the bridges FreeSWITCH 1.10 really reported.
func TestOutcomeFromRecordedBridges(t *testing.T) {
	for file, want := range map[string]hunt.Outcome{
		"freeswitch/b2_inbound_sendmsg_bridge_201_busy.plain.raw":                  hunt.Busy,
		"freeswitch/b3_inbound_sendmsg_bridge_201_busy_continue_on_fail.plain.raw": hunt.Busy,
		"freeswitch/d3_outbound_socket_loopback_1000_bridge_201_busy.json.raw":     hunt.Busy,
		"freeswitch/d2_outbound_socket_loopback_1000_answer_bridge_101.plain.raw":  hunt.Answered,
		"transfers/freeswitch/fs1_case2_refer_from_phone.conn1.raw":                hunt.Answered,
	} {
		vs := bridgeCompletions(t, file)
		if len(vs) == 0 {
			t.Fatalf("%s: no bridge completion", file)
		}
		for _, v := range vs {
			got, cause := v.Outcome()
			if got != want {
				t.Errorf("%s: %+v -> %s (%s), want %s", file, v, got, cause, want)
			}
			if want == hunt.Busy && cause != "USER_BUSY" {
				t.Errorf("%s: cause %q", file, cause)
			}
		}
	}
}

func TestOutcomeMapping(t *testing.T) {
	cases := []struct {
		v    BridgeVars
		want hunt.Outcome
	}{
		{BridgeVars{Disposition: "SUCCESS", FailedCause: "USER_BUSY"}, hunt.Answered}, // a stale failure from an earlier member
		{BridgeVars{Disposition: "USER_BUSY", DialStatus: "BUSY"}, hunt.Busy},
		{BridgeVars{Disposition: "NO_ANSWER"}, hunt.NoAnswer},
		{BridgeVars{Disposition: "ALLOTTED_TIMEOUT"}, hunt.NoAnswer},
		{BridgeVars{Disposition: "NO_USER_RESPONSE"}, hunt.NoAnswer},
		{BridgeVars{Disposition: "CALL_REJECTED"}, hunt.Rejected},
		{BridgeVars{Disposition: "USER_NOT_REGISTERED"}, hunt.NotRegistered},
		{BridgeVars{Disposition: "SUBSCRIBER_ABSENT"}, hunt.NotRegistered},
		{BridgeVars{Disposition: "NO_ROUTE_DESTINATION"}, hunt.Unreachable},
		{BridgeVars{Disposition: "UNALLOCATED_NUMBER"}, hunt.Unreachable},
		{BridgeVars{Disposition: "DESTINATION_OUT_OF_ORDER"}, hunt.Unreachable},
		{BridgeVars{Disposition: "NETWORK_OUT_OF_ORDER"}, hunt.Unreachable},
		{BridgeVars{Disposition: "NORMAL_CIRCUIT_CONGESTION"}, hunt.Congested},
		{BridgeVars{Disposition: "ORIGINATOR_CANCEL"}, hunt.Cancelled},
		{BridgeVars{Disposition: "NORMAL_TEMPORARY_FAILURE"}, hunt.Failed},
		{BridgeVars{Disposition: "INCOMPATIBLE_DESTINATION"}, hunt.Failed},
		// No disposition: the leg's own hangup cause, then the others.
		{BridgeVars{LegCause: "USER_BUSY", LastBridgeCause: "NO_ANSWER"}, hunt.Busy},
		{BridgeVars{FailedCause: "CALL_REJECTED"}, hunt.Rejected},
		{BridgeVars{LastBridgeCause: "NO_ANSWER"}, hunt.NoAnswer},
		{BridgeVars{Disposition: "failure", LastBridgeCause: "USER_BUSY"}, hunt.Busy},
		{BridgeVars{DialStatus: "NOANSWER"}, hunt.NoAnswer},
		{BridgeVars{DialStatus: "CHANUNAVAIL"}, hunt.Unreachable},
		{BridgeVars{}, hunt.Failed},
		{BridgeVars{Disposition: "garbage <x>"}, hunt.Failed},
	}
	for _, tc := range cases {
		if got, cause := tc.v.Outcome(); got != tc.want {
			t.Errorf("%+v -> %s (%s), want %s", tc.v, got, cause, tc.want)
		}
	}
}

func TestParseChannels(t *testing.T) {
	ids, err := parseChannels(`{"row_count":2,"rows":[{"uuid":"a-1","direction":"inbound"},{"uuid":"b-2"}]}` + "\n")
	if err != nil || len(ids) != 2 || ids[0] != "a-1" || ids[1] != "b-2" {
		t.Fatalf("%v %v", ids, err)
	}
	if ids, err := parseChannels(`{"row_count":0}`); err != nil || len(ids) != 0 {
		t.Fatalf("empty: %v %v", ids, err)
	}
	for _, bad := range []string{"-ERR no reply", `{"row_count":3,"rows":[{"uuid":"a"}]}`, `{"rows":"x"}`} {
		if _, err := parseChannels(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCallInfoFromTransferReplies(t *testing.T) {
	read := func(file string) esl.Headers {
		data, err := os.ReadFile(filepath.Join(tracesDir, "transfers/freeswitch", file))
		if err != nil {
			labtest.Missing(t, "recorded trace not available (%v)", err)
		}
		f, err := esl.NewReader(bytes.NewReader(data)).ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		c := f.Clone()
		return c.Header
	}
	first := callInfo(read("fs1_case2_refer_from_phone.conn1.raw"), "fs1")
	if first.Transfer != 0 || first.Dialed != "1000" || first.Caller != "sipp" || first.Source != "127.0.0.1:5090" {
		t.Errorf("conn1: %+v", first)
	}
	second := callInfo(read("fs1_case2_refer_from_phone.conn2.raw"), "fs1")
	if second.Transfer != routing.Blind || second.Dialed != "2099" || second.OriginalCaller != "sipp" || second.Previous != "1000" {
		t.Errorf("conn2: %+v; want a blind transfer (a REFER) of sipp from 1000 to 2099", second)
	}
	// Referred-By is "<sip:phone@…>": not a number, so the caller stays the
	// transferred party.
	if second.Caller != "sipp" {
		t.Errorf("conn2 caller %q", second.Caller)
	}
	if second.Start.IsZero() || !second.Start.Equal(first.Start) {
		t.Errorf("start times %v / %v", first.Start, second.Start)
	}
	// A REFER from the caller brings the phone's channel back: a blind
	// transfer by the REFER's sender, sipp (not a number: left to the engine).
	fromCaller := callInfo(read("fs1_case2_refer_from_caller.conn2.raw"), "fs1")
	if fromCaller.Transfer != routing.Blind || fromCaller.Previous != "phone" {
		t.Errorf("REFER from the caller, conn2: %+v", fromCaller)
	}
	// uuid_transfer names no user: FreeSWITCH itself moved the call on, an
	// IVR transfer, from the previous destination 1000.
	ivr := callInfo(read("fs1_case1_uuid_transfer.conn2.raw"), "fs1")
	if ivr.Transfer != routing.IVR || ivr.Dialed != "2099" || ivr.Previous != "1000" || ivr.Caller != "sipp" || ivr.OriginalCaller != "sipp" {
		t.Errorf("uuid_transfer, conn2: %+v; want an ivr transfer of sipp from 1000 to 2099", ivr)
	}
	if first := callInfo(read("fs1_case1_uuid_transfer.conn1.raw"), "fs1"); first.Transfer != routing.NoTransfer || first.Previous != "" {
		t.Errorf("uuid_transfer, conn1: %+v", first)
	}
}

// The SIP code the caller gets is the cause's (routing.Cause.SIP): where
// FreeSWITCH's own mapping differs, respond sends it.
func TestRespondCode(t *testing.T) {
	for cause, want := range map[routing.Cause]int{
		routing.CauseUnallocated: 0,   // FreeSWITCH sends 404 itself
		routing.CauseBusy:        0,   // 486
		routing.CauseCongestion:  0,   // 503
		routing.CauseInvalid:     0,   // 484
		routing.CauseOutOfOrder:  0,   // 502
		routing.CauseRejected:    403, // FreeSWITCH would send 603
		routing.CauseFailure:     500, // FreeSWITCH would send 503
		routing.CauseNormal:      0,
	} {
		if got := respondCode(cause); got != want {
			t.Errorf("respondCode(%s) = %d, want %d", cause, got, want)
		}
	}
}
