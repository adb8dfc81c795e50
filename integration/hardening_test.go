package integration

import (
	"testing"
	"time"

	"github.com/callctl/callctl/integration/sim"
)

// One cause gives one record, whichever kind of server reported it: the
// attempt's outcome and cause are the same on FreeSWITCH (causes by name)
// and on Asterisk (causes by number), and an answered attempt has one name.
func TestSameCauseSameRecordOnEveryKind(t *testing.T) {
	cases := []struct {
		number, cause      string // what the PSTN number does
		outcome, wantCause string // the attempt in the record
	}{
		{"+4930100001", "SUBSCRIBER_ABSENT", "not-registered", "SUBSCRIBER_ABSENT"},
		{"+4930100002", "USER_BUSY", "busy", "USER_BUSY"},
		{"+4930100003", "CALL_REJECTED", "rejected", "CALL_REJECTED"},
		{"+4930100004", "NETWORK_OUT_OF_ORDER", "unreachable", "NETWORK_OUT_OF_ORDER"},
		{"+4930100005", "REQUESTED_CHAN_UNAVAIL", "unreachable", "REQUESTED_CHAN_UNAVAIL"},
		{"+4930100006", "NORMAL_TEMPORARY_FAILURE", "failed", "NORMAL_TEMPORARY_FAILURE"},
		{"+4930100007", "UNALLOCATED_NUMBER", "unreachable", "UNALLOCATED_NUMBER"},
		{"+4930100008", "NORMAL_CIRCUIT_CONGESTION", "congested", "NORMAL_CIRCUIT_CONGESTION"},
		{"+4930100009", "", "answered", "ANSWER"},
	}
	var pstn []sim.PSTNConfig
	for _, tc := range cases {
		b := sim.Behaviour{Mode: "fail", Cause: tc.cause, RingFor: 20 * time.Millisecond}
		if tc.cause == "" {
			b = sim.Behaviour{Mode: "answer", RingFor: 20 * time.Millisecond, HangupAfter: 100 * time.Millisecond}
		}
		pstn = append(pstn, sim.PSTNConfig{Number: tc.number, Behaviour: b})
	}
	scenario(t, Options{PSTN: pstn}, func(t *testing.T, e *Env) {
		for _, tc := range cases {
			c := e.call(t, "srv11", "3999", "0"+tc.number[3:])
			ended(t, c)
			rec := e.record(t, of(c))
			if len(rec.Attempts) != 1 {
				t.Errorf("%s (%s): attempts %q, want one", tc.number, tc.cause, attempts(rec))
				continue
			}
			a := rec.Attempts[0]
			if a.Outcome.String() != tc.outcome || a.Cause != tc.wantCause {
				t.Errorf("%s fails with %s on %s: attempt %s %s, want %s %s", tc.number, tc.cause,
					e.Fleet.Kinds["srv11"], a.Outcome, a.Cause, tc.outcome, tc.wantCause)
			}
		}
	})
}
