package asterisk

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/integration/sim/callmodel"
	"github.com/callctl/callctl/internal/labtest"
)

// The phone that answered transfers the caller (a blind REFER, core
// handling): Asterisk puts a Local channel in its place in callctl's bridge
// and hands the Local pair's other half to callctl as a new call. callctl
// routes it as dialed by the transferring user, showing the original
// caller; the caller talks to the new target; when that one hangs up, the
// caller is hung up; nothing is left.
func TestBlindTransferByCallee(t *testing.T) {
	l := newLab(t, labOptions{})
	l.fleet.SetPhone("srv12", "2002", callmodel.Answer(0))
	l.fleet.SetPhone("srv12", "2003", callmodel.Answer(0))
	caller := l.call("2001", "2002", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool { return l.obs.get(caller).bridged != "" }, "2001 bridged with 2002")
	leg := l.fleet.RingsOf("srv12", "2002")[0].UUID // the model keeps the ARI id of originated channels
	if err := l.ast["srv12"].BlindTransfer(leg, "2003"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		r := l.fleet.RingsOf("srv12", "2003")
		return len(r) == 1 && !r[0].Answered.IsZero()
	}, "2003 answered")
	if got := l.fleet.RingsOf("srv12", "2003")[0].Caller.Number; got != "2001" {
		t.Errorf("2003 saw %q, want the original caller 2001", got)
	}
	waitConnected(t, l, "2003")
	// The transferring phone hangs up, as phones do after the NOTIFY:
	// callctl says the call goes on once it has handled that end.
	l.hangup("srv12", leg)
	waitFor(t, 10*time.Second, func() bool {
		return l.logs.contains("the party a transfer replaced has left; the call goes on with the stand-in")
	}, "the transferer's end handled")
	if s := l.obs.get(caller); !s.hungup.IsZero() {
		t.Fatalf("the caller was hung up with the transferer: %+v", s)
	}
	// The transfer target hangs up: the caller goes too.
	target := l.fleet.RingsOf("srv12", "2003")[0].UUID
	l.hangup("srv12", target)
	waitFor(t, 10*time.Second, func() bool { return !l.obs.get(caller).hungup.IsZero() }, "caller hung up after the target")
	x := l.record("2002", "2003")
	if x.Transfer != "blind" || x.Answered != "2003" {
		t.Errorf("transfer record: transfer %q answered %q attempts %v", x.Transfer, x.Answered, outcomes(x.Attempts))
	}
	first := l.record("2001", "2002")
	if first.Answered != "2002" {
		t.Errorf("first record: %+v", first)
	}
	// The transfer's record links to the call it came from and names the
	// transferring phone (SPEC §4).
	if first.ID == "" || x.TransferFrom != first.ID || x.TransferBy != "2002" {
		t.Errorf("transfer record: from record %q by %q, want %q (the first record) by 2002", x.TransferFrom, x.TransferBy, first.ID)
	}
	l.settled(15 * time.Second)
}

// The caller transfers the phone it talks to: the first call ends for
// callctl as TRANSFERRED when the caller hangs up, the phone talks to the
// new target (which sees the phone's number), and when the target hangs up
// the phone is hung up; nothing is left.
func TestBlindTransferByCaller(t *testing.T) {
	l := newLab(t, labOptions{})
	l.fleet.SetPhone("srv12", "2002", callmodel.Answer(0))
	l.fleet.SetPhone("srv12", "2003", callmodel.Answer(0))
	caller := l.call("2001", "2002", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool { return l.obs.get(caller).bridged != "" }, "2001 bridged with 2002")
	phone := l.fleet.RingsOf("srv12", "2002")[0].UUID
	if err := l.ast["srv12"].BlindTransfer(l.ariCaller("srv12", "2001"), "2003"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		r := l.fleet.RingsOf("srv12", "2003")
		return len(r) == 1 && !r[0].Answered.IsZero()
	}, "2003 answered")
	if got := l.fleet.RingsOf("srv12", "2003")[0].Caller.Number; got != "2002" {
		t.Errorf("2003 saw %q, want the transferred party 2002", got)
	}
	waitConnected(t, l, "2003")
	l.hangup("srv12", caller)
	waitFor(t, 10*time.Second, func() bool {
		return l.logs.contains("the caller left after a transfer took its place")
	}, "the caller's end handled")
	if s := l.obs.get(phone); !s.hungup.IsZero() {
		t.Fatalf("the transferred phone was hung up with the caller: %+v", s)
	}
	// The phone's leg is still the first call's: its record is written
	// when the phone's channel ends, not when the caller left (SPEC §5).
	if r := l.recs.find("2001", "2002"); r != nil {
		t.Fatalf("the first call was recorded while its leg is still up: %+v", r)
	}
	target := l.fleet.RingsOf("srv12", "2003")[0].UUID
	l.hangup("srv12", target)
	waitFor(t, 10*time.Second, func() bool { return !l.obs.get(phone).hungup.IsZero() }, "phone hung up after the target")
	first := l.record("2001", "2002")
	if first.HangupCause != "TRANSFERRED" || first.Answered != "2002" {
		t.Errorf("first record: cause %q answered %q", first.HangupCause, first.Answered)
	}
	l.settled(15 * time.Second)
}

// waitConnected waits until callctl has connected a call to target: the
// transfer is complete on callctl's side too.
func waitConnected(t *testing.T, l *lab, target string) {
	t.Helper()
	waitFor(t, 10*time.Second, func() bool {
		for _, v := range l.eng.Calls() {
			if v.Answered == target {
				return true
			}
		}
		return false
	}, "callctl connected "+target)
}

// ariOnly makes phone ext of srv12 send its REFERs as ChannelTransfer, as
// set_var = PJSIP_TRANSFER_HANDLING()=ari-only on its endpoint does.
func (l *lab) ariOnly(ext string) {
	l.ast["srv12"].SetEndpointVar(ext, "PJSIP_TRANSFER_HANDLING()", "ari-only")
}

// notifies are the NOTIFY sipfrags the phone ext got about its REFER.
func (l *lab) notifies(ext string) []int {
	r := l.fleet.RingsOf("srv12", ext)
	if len(r) == 0 {
		return nil
	}
	return r[len(r)-1].Notifies
}

// Under ari-only handling Asterisk only reports the phone's REFER
// (ChannelTransfer): callctl carries the blind transfer out itself, routes
// it as dialed by the transferring phone, and tells the phone 100 then 200.
// The target sees the original caller; the caller talks to it; when the
// target hangs up the caller is hung up; nothing is left.
func TestAriOnlyBlindTransferByCallee(t *testing.T) {
	l := newLab(t, labOptions{})
	l.ariOnly("2002")
	l.fleet.SetPhone("srv12", "2002", callmodel.Answer(0))
	l.fleet.SetPhone("srv12", "2003", callmodel.Answer(0))
	caller := l.call("2001", "2002", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool { return l.obs.get(caller).bridged != "" }, "2001 bridged with 2002")
	leg := l.fleet.RingsOf("srv12", "2002")[0].UUID
	if err := l.ast["srv12"].BlindTransfer(leg, "2003"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		r := l.fleet.RingsOf("srv12", "2003")
		return len(r) == 1 && !r[0].Answered.IsZero()
	}, "2003 answered")
	if got := l.fleet.RingsOf("srv12", "2003")[0].Caller.Number; got != "2001" {
		t.Errorf("2003 saw %q, want the original caller 2001", got)
	}
	waitConnected(t, l, "2003")
	waitFor(t, 10*time.Second, func() bool { return len(l.notifies("2002")) == 2 }, "2002 told how its transfer went")
	if got := l.notifies("2002"); got[0] != 100 || got[1] != 200 {
		t.Errorf("2002's NOTIFYs: %v, want [100 200]", got)
	}
	// The transferring phone hangs up after the final NOTIFY.
	l.hangup("srv12", leg)
	waitFor(t, 10*time.Second, func() bool {
		return l.logs.contains("the party a transfer replaced has left; the call goes on with the stand-in")
	}, "the transferer's end handled")
	if s := l.obs.get(caller); !s.hungup.IsZero() {
		t.Fatalf("the caller was hung up with the transferer: %+v", s)
	}
	target := l.fleet.RingsOf("srv12", "2003")[0].UUID
	l.hangup("srv12", target)
	waitFor(t, 10*time.Second, func() bool { return !l.obs.get(caller).hungup.IsZero() }, "caller hung up after the target")
	x := l.record("2002", "2003")
	first := l.record("2001", "2002")
	if x.Transfer != "blind" || x.Answered != "2003" {
		t.Errorf("transfer record: transfer %q answered %q attempts %v", x.Transfer, x.Answered, outcomes(x.Attempts))
	}
	if first.ID == "" || x.TransferFrom != first.ID || x.TransferBy != "2002" {
		t.Errorf("transfer record: from record %q by %q, want %q (the first record) by 2002", x.TransferFrom, x.TransferBy, first.ID)
	}
	l.settled(15 * time.Second)
}

// A transfer to a number callctl refuses (no such extension) or to a busy
// phone: the transferring phone hears 603 and is back in the call with
// the caller, which goes on until one of them hangs up.
func TestAriOnlyBlindTransferRefused(t *testing.T) {
	for _, tc := range []struct {
		name, dest string
	}{{"unallocated", "2999"}, {"busy", "2003"}} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, labOptions{})
			l.ariOnly("2002")
			l.fleet.SetPhone("srv12", "2002", callmodel.Answer(0))
			l.fleet.SetPhone("srv12", "2003", callmodel.Busy())
			caller := l.call("2001", "2002", callmodel.CallerPlan{})
			waitFor(t, 10*time.Second, func() bool { return l.obs.get(caller).bridged != "" }, "2001 bridged with 2002")
			leg := l.fleet.RingsOf("srv12", "2002")[0].UUID
			if err := l.ast["srv12"].BlindTransfer(leg, tc.dest); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, func() bool { return len(l.notifies("2002")) == 2 }, "2002 told how its transfer went")
			if got := l.notifies("2002"); got[0] != 100 || got[1] != 603 {
				t.Errorf("2002's NOTIFYs: %v, want [100 603]", got)
			}
			x := l.record("2002", tc.dest)
			if x.Transfer != "blind" || x.Answer != nil {
				t.Errorf("transfer record: transfer %q answered %q cause %s", x.Transfer, x.Answered, x.HangupCause)
			}
			waitFor(t, 10*time.Second, func() bool { return l.obs.get(caller).bridged == leg }, "2001 bridged with 2002 again")
			if s := l.obs.get(caller); !s.hungup.IsZero() {
				t.Fatalf("the caller was hung up: %+v", s)
			}
			l.hangup("srv12", leg)
			waitFor(t, 10*time.Second, func() bool { return !l.obs.get(caller).hungup.IsZero() }, "caller hung up after 2002")
			if first := l.record("2001", "2002"); first.Answered != "2002" {
				t.Errorf("first record: answered %q", first.Answered)
			}
			l.settled(15 * time.Second)
		})
	}
}

// The ChannelTransfer events recorded from Asterisk 22.10.1 (ari-only
// handling) decode to who transferred, in which bridge, to where; an
// attended one names the dialog it replaces and that dialog's channels.
func TestDecodeChannelTransfer(t *testing.T) {
	dir := filepath.Join(traceDir, "..", "transfers", "asterisk")
	first := func(name string) *transferData {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(dir, name))
		if os.IsNotExist(err) {
			labtest.Missing(t, "trace %s not found under %s", name, dir)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			if !bytes.Contains(line, []byte(`"type":"ChannelTransfer"`)) {
				continue
			}
			e, err := decodeEvent(line)
			if err != nil || e.Transfer == nil {
				t.Fatalf("%s: %v %+v", name, err, e)
			}
			return e.Transfer
		}
		t.Fatalf("%s: no ChannelTransfer", name)
		return nil
	}
	b := first("ast1_case3_blind_refer_ari-only_subscribeAll_false.jsonl")
	if b.State != "" || b.Destination != "2099" || b.ProtocolID != "" || b.Source.ID != "ast1-1795308227.0" ||
		b.Source.Context != "from-sipp" || b.Connected != "xfer-phone" || b.Bridge != "xfer-bridge" {
		t.Errorf("blind: %+v", b)
	}
	a := first("ast1_case4_attended_refer_ari-only_subscribeAll_false.jsonl")
	if a.Destination != "1001" || a.ProtocolID == "" || a.Replaced == "" || a.Target != "xfer-phone-1001" ||
		a.TargetBridge != "xfer-bridge-1001" || a.Connected != "xfer-phone" || a.Bridge != "xfer-bridge" {
		t.Errorf("attended: %+v", a)
	}
	// Odd shapes: never a panic, and what is readable is read.
	for _, f := range []string{
		`{"type":"ChannelTransfer"}`,
		`{"type":"ChannelTransfer","refer_to":"2099","referred_by":[]}`,
		`{"type":"ChannelTransfer","refer_to":{"requested_destination":"2099"},"referred_by":{"source_channel":{"id":"a"}}}`,
		`{"type":"ChannelTransfer","refer_to":{"requested_destination":{"destination":2099}},"referred_by":{"source_channel":"a"}}`,
		`{"type":"ChannelTransfer","refer_to":null,"referred_by":null,"state":7}`,
	} {
		e, err := decodeEvent([]byte(f))
		if err != nil || e.Type != "ChannelTransfer" || e.Transfer == nil {
			t.Errorf("%s: %v %+v", f, err, e)
		}
	}
	e, _ := decodeEvent([]byte(`{"type":"ChannelTransfer","refer_to":{"requested_destination":"2099"},"referred_by":{"source_channel":{"id":"a"}}}`))
	if e.Transfer.Source.ID != "a" {
		t.Errorf("an odd refer_to lost the transferer: %+v", e.Transfer)
	}
}

// A REFER from a channel no call of callctl owns (another application's,
// an earlier owner's) is refused: the transferer hears 503, and nothing is
// dialed.
func TestAriOnlyTransferFromUnknownChannelRefused(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	c, err := New(Config{Server: "ast1", URL: srv.URL + "/ari", User: "u", Password: "p", App: "callctl", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	c.handleFrame([]byte(`{"type":"ChannelTransfer","refer_to":{"requested_destination":{"destination":"2099"}},`+
		`"referred_by":{"source_channel":{"id":"stranger-1","name":"PJSIP/x-00000001","dialplan":{"context":"from-sipp"}}}}`), time.Now())
	c.bgWG.Wait()
	mu.Lock()
	defer mu.Unlock()
	want := []string{"POST /ari/channels/stranger-1/transfer_progress?states=channel_unavailable"}
	if !slices.Equal(got, want) {
		t.Errorf("requests: %q, want %q", got, want)
	}
}

// An attended transfer with Asterisk's core handling: 2002 talks to 2001
// (the first call), calls 3001 on srv13 (the second call) and transfers
// 2001 to it (REFER with Replaces). Asterisk links the two calls' bridges
// with a Local pair; 3001 still shows 122002, the transferring extension
// as it rang (SPEC §4); the second call's trunk leg stays counted on both
// servers while 2001 and 3001 talk, though its caller (2002's second
// line) is gone; when 3001 hangs up everything ends and nothing is left.
func TestAttendedTransferCore(t *testing.T) {
	l := newLab(t, labOptions{})
	l.fleet.SetPhone("srv12", "2002", callmodel.Answer(0))
	l.fleet.SetPhone("srv13", "3001", callmodel.Answer(0))
	caller := l.call("2001", "2002", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool { return l.obs.get(caller).bridged != "" }, "2001 bridged with 2002")
	a := l.fleet.RingsOf("srv12", "2002")[0].UUID
	consult := l.call("2002", "133001", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool { return l.obs.get(consult).answered != (time.Time{}) }, "2002's second call answered")
	waitSecondLine(t, l)
	if got := l.fleet.RingsOf("srv13", "3001")[0].Caller.Number; got != "122002" {
		t.Errorf("3001 saw %q, want 122002", got)
	}
	l.waitCounts(map[string]int{"srv12": 1, "srv13": 1})
	b := l.ariCaller("srv12", "2002")
	if err := l.ast["srv12"].AttendedTransfer(a, b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return len(l.notifies("2002")) == 2 }, "2002 told how its transfer went")
	waitFor(t, 10*time.Second, func() bool {
		return l.logs.contains("the caller left after a transfer took its place")
	}, "the second call's caller (hung up by Asterisk) handled")
	// The phone hangs up its first line after the NOTIFY.
	l.hangup("srv12", a)
	waitFor(t, 10*time.Second, func() bool {
		return l.logs.contains("the party a transfer replaced has left; the call goes on with the stand-in")
	}, "the first line's end handled")
	if s := l.obs.get(caller); !s.hungup.IsZero() {
		t.Fatalf("2001 was hung up: %+v", s)
	}
	target := l.fleet.RingsOf("srv13", "3001")[0].UUID
	if s := l.obs.get(target); !s.hungup.IsZero() {
		t.Fatalf("3001 was hung up: %+v", s)
	}
	// 2001 and 3001 talk over the second call's trunk leg: still counted.
	l.waitCounts(map[string]int{"srv12": 1, "srv13": 1})
	if r := l.recs.find("2002", "133001"); r != nil {
		t.Fatalf("the second call was recorded while its leg is up: %+v", r)
	}
	l.hangup("srv13", target)
	waitFor(t, 10*time.Second, func() bool { return !l.obs.get(caller).hungup.IsZero() }, "2001 hung up after 3001")
	second := l.record("2002", "133001")
	if second.HangupCause != "TRANSFERRED" || second.Answer == nil {
		t.Errorf("second record: cause %q answered %v", second.HangupCause, second.Answer)
	}
	first := l.record("2001", "2002")
	if first.Answered != "2002" {
		t.Errorf("first record: answered %q", first.Answered)
	}
	checkAttendedRecord(t, second, first)
	l.settled(15 * time.Second)
}

// waitCounts waits until each server counts want legs.
func (l *lab) waitCounts(want map[string]int) {
	l.t.Helper()
	waitFor(l.t, 10*time.Second, func() bool {
		for s, n := range want {
			if got, err := l.store.Count(context.Background(), "server", s); err != nil || got != n {
				return false
			}
		}
		return true
	}, fmt.Sprintf("counts %v", want))
}

// The same attended transfer with PJSIP_TRANSFER_HANDLING(ari-only) on
// 2002's endpoint: Asterisk only reports the REFER (ChannelTransfer with
// the dialog it replaces); callctl links the two calls itself and tells
// 2002 100, then 200. 2001 and 3001 talk; the second call's trunk leg stays
// counted until 3001 hangs up; then everything ends.
func TestAriOnlyAttendedTransfer(t *testing.T) {
	l := newLab(t, labOptions{})
	l.ariOnly("2002")
	l.fleet.SetPhone("srv12", "2002", callmodel.Answer(0))
	l.fleet.SetPhone("srv13", "3001", callmodel.Answer(0))
	caller := l.call("2001", "2002", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool { return l.obs.get(caller).bridged != "" }, "2001 bridged with 2002")
	a := l.fleet.RingsOf("srv12", "2002")[0].UUID
	consult := l.call("2002", "133001", callmodel.CallerPlan{})
	waitFor(t, 10*time.Second, func() bool { return l.obs.get(consult).answered != (time.Time{}) }, "2002's second call answered")
	waitSecondLine(t, l)
	l.waitCounts(map[string]int{"srv12": 1, "srv13": 1})
	b := l.ariCaller("srv12", "2002")
	if err := l.ast["srv12"].AttendedTransfer(a, b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return len(l.notifies("2002")) == 2 }, "2002 told how its transfer went")
	if got := l.notifies("2002"); got[0] != 100 || got[1] != 200 {
		t.Errorf("2002's NOTIFYs: %v, want [100 200]", got)
	}
	// Asterisk hangs up neither line under ari-only handling: the phone
	// does, after the final NOTIFY.
	l.hangup("srv12", a)
	l.hangup("srv12", consult)
	waitFor(t, 10*time.Second, func() bool {
		return l.logs.contains("the caller left after a transfer took its place") &&
			l.logs.contains("the party a transfer replaced has left; the call goes on with the stand-in")
	}, "both of 2002's lines' ends handled")
	target := l.fleet.RingsOf("srv13", "3001")[0].UUID
	if s, s2 := l.obs.get(caller), l.obs.get(target); !s.hungup.IsZero() || !s2.hungup.IsZero() {
		t.Fatalf("2001 or 3001 was hung up: %+v %+v", s, s2)
	}
	l.waitCounts(map[string]int{"srv12": 1, "srv13": 1})
	l.hangup("srv13", target)
	waitFor(t, 10*time.Second, func() bool { return !l.obs.get(caller).hungup.IsZero() }, "2001 hung up after 3001")
	second := l.record("2002", "133001")
	if second.HangupCause != "TRANSFERRED" || second.Answer == nil {
		t.Errorf("second record: cause %q answered %v", second.HangupCause, second.Answer)
	}
	checkAttendedRecord(t, second, l.record("2001", "2002"))
	l.settled(15 * time.Second)
}

// checkAttendedRecord: the record of the call the attended transfer linked
// the transferred party into names the transfer, links to the record of
// the call the party came from and names the transferring phone (SPEC §4).
func checkAttendedRecord(t *testing.T, second, first *controller.Record) {
	t.Helper()
	if second.Transfer != "attended" || first.ID == "" || second.TransferFrom != first.ID || second.TransferBy != "2002" {
		t.Errorf("second record: transfer %q from %q by %q; want attended from %q (the first record) by 2002",
			second.Transfer, second.TransferFrom, second.TransferBy, first.ID)
	}
}

// waitSecondLine waits until callctl connected 2002's second call on srv12
// (not only srv13's end of it).
func waitSecondLine(t *testing.T, l *lab) {
	t.Helper()
	waitFor(t, 10*time.Second, func() bool {
		for _, v := range l.eng.Calls() {
			if v.Server == "srv12" && v.Caller == "2002" && v.Answered == "3001" {
				return true
			}
		}
		return false
	}, "callctl connected 2002's second call")
}
