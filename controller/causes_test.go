package controller_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"testing"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/hunt"
	"github.com/callctl/callctl/internal/labtest"
)

// A cause value as a media server reports it: a cause by name (FreeSWITCH's
// Hangup-Cause and cause variables), a cause by number (Asterisk's
// ChannelDestroyed cause, FreeSWITCH's hangup_cause_q850), or a dial status
// (DIALSTATUS, Asterisk's Dial event).
type causeValue struct{ kind, value string }

// Every cause value the recorded transcripts contain, and what it means for
// an attempt that ended with it: the outcome, the cause the record carries,
// and whether the value decides by itself (false: the next signal does).
var traceCauses = map[causeValue]struct {
	outcome hunt.Outcome
	cause   string
	decides bool
}{
	{"name", "NORMAL_CLEARING"}:          {hunt.Pending, "NORMAL_CLEARING", false},
	{"name", "USER_BUSY"}:                {hunt.Busy, "USER_BUSY", true},
	{"name", "NO_ANSWER"}:                {hunt.NoAnswer, "NO_ANSWER", true},
	{"name", "NORMAL_TEMPORARY_FAILURE"}: {hunt.Failed, "NORMAL_TEMPORARY_FAILURE", true},
	{"name", "DESTINATION_OUT_OF_ORDER"}: {hunt.Unreachable, "DESTINATION_OUT_OF_ORDER", true},
	{"name", "SUCCESS"}:                  {hunt.Pending, "SUCCESS", false}, // originate_disposition of an answer: not a cause
	// originate_disposition of a bridge whose answered leg's caller hung up
	// (an att_xfer consultation cancelled by the phone): not a cause.
	{"name", "failure"}:   {hunt.Pending, "failure", false},
	{"code", "0"}:         {hunt.Pending, "NONE", false},
	{"code", "1"}:         {hunt.Unreachable, "UNALLOCATED_NUMBER", true},
	{"code", "16"}:        {hunt.Pending, "NORMAL_CLEARING", false},
	{"code", "17"}:        {hunt.Busy, "USER_BUSY", true},
	{"code", "19"}:        {hunt.NoAnswer, "NO_ANSWER", true},
	{"code", "27"}:        {hunt.Unreachable, "DESTINATION_OUT_OF_ORDER", true},
	{"code", "32"}:        {hunt.Failed, "CAUSE_32", true}, // ChannelHangupRequest after DELETE: not a Q.850 cause
	{"code", "34"}:        {hunt.Congested, "NORMAL_CIRCUIT_CONGESTION", true},
	{"code", "41"}:        {hunt.Failed, "NORMAL_TEMPORARY_FAILURE", true},
	{"status", ""}:        {hunt.Pending, "", false},
	{"status", "RINGING"}: {hunt.Pending, "", false},
	// FreeSWITCH's DIALSTATUS on that same bridge's end, after the answer:
	// it says nothing of the attempt.
	{"status", "INVALIDARGS"}: {hunt.Pending, "", false},
	{"status", "SUCCESS"}:     {hunt.Answered, controller.AnswerCause, true},
	{"status", "ANSWER"}:      {hunt.Answered, controller.AnswerCause, true},
	{"status", "BUSY"}:        {hunt.Busy, "USER_BUSY", true},
	{"status", "NOANSWER"}:    {hunt.NoAnswer, "NO_ANSWER", true},
	{"status", "CONGESTION"}:  {hunt.Congested, "NORMAL_CIRCUIT_CONGESTION", true},
}

// read says what the controller's mapping makes of a value.
func read(v causeValue) (hunt.Outcome, string, bool) {
	switch v.kind {
	case "code":
		n, _ := strconv.Atoi(v.value)
		name := controller.CauseName(n)
		o, ok := controller.CauseOutcome(name)
		return o, name, ok
	case "status":
		return controller.DialStatusOutcome(v.value)
	}
	o, ok := controller.CauseOutcome(v.value)
	return o, v.value, ok
}

func TestCauseTable(t *testing.T) {
	for v, want := range traceCauses {
		o, cause, ok := read(v)
		if ok != want.decides || ok && (o != want.outcome || cause != want.cause) || !ok && v.kind == "code" && cause != want.cause {
			t.Errorf("%s %q -> %s %q (decides %v), want %s %q (decides %v)", v.kind, v.value, o, cause, ok,
				want.outcome, want.cause, want.decides)
		}
	}
	// A cause means the same by name and by number.
	for code := 0; code < 128; code++ {
		name := controller.CauseName(code)
		o, ok := controller.CauseOutcome(name)
		if ok && o == hunt.Pending {
			t.Errorf("cause %d (%s) decides nothing but says so", code, name)
		}
	}
	for _, v := range []string{"garbage <x>", "failure", "ANSWER", ""} {
		if o, ok := controller.CauseOutcome(v); ok {
			t.Errorf("%q read as a cause (%s)", v, o)
		}
	}
	if o, ok := controller.CauseOutcome("SOME_FUTURE_CAUSE"); !ok || o != hunt.Failed {
		t.Errorf("an unknown cause name -> %s %v, want a failure of the target", o, ok)
	}
}

// causePatterns find cause values in the transcripts, plain, JSON and
// decoded forms alike.
var causePatterns = []struct {
	kind string
	re   *regexp.Regexp
}{
	{"name", regexp.MustCompile(`(?i)\b(?:Hangup-Cause|variable_(?:hangup_cause|bridge_hangup_cause|last_bridge_hangup_cause|originate_failed_cause|originate_disposition))"?\s*[:=]\s*"?([A-Za-z_0-9]+)`)},
	{"code", regexp.MustCompile(`(?:"cause"|\bvariable_hangup_cause_q850|\bvariable_sip_term_cause)"?\s*[:=]\s*"?([0-9]+)`)},
	{"status", regexp.MustCompile(`(?i)(?:\bvariable_DIALSTATUS|"dialstatus")"?\s*[:=]\s*"?([A-Z]*)`)},
}

// Every cause value of the recorded transcripts (../shared/traces and
// integration/traces) is in the table above, so the mapping is checked
// against everything the servers were seen to send.
func TestCauseTableCoversTheTraces(t *testing.T) {
	seen := map[causeValue][]string{}
	for _, dir := range []string{labtest.Traces(t), filepath.Join("..", "integration", "traces")} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, pat := range causePatterns {
				for _, m := range pat.re.FindAllSubmatch(b, -1) {
					v := causeValue{pat.kind, string(m[1])}
					if len(seen[v]) < 3 {
						seen[v] = append(seen[v], p)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) < 10 {
		t.Fatalf("only %d cause values found in the transcripts: %v", len(seen), seen)
	}
	var missing []string
	for v, files := range seen {
		if _, ok := traceCauses[v]; !ok {
			missing = append(missing, v.kind+" "+strconv.Quote(v.value)+" in "+files[0])
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("a cause value of the transcripts is not in the table: %s", m)
	}
}
