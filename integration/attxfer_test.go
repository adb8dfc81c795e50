package integration

import (
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/integration/sim/callmodel"
)

// SPEC §4, §5, attended, by FreeSWITCH's own att_xfer: a PSTN call into
// server 11 answered by 3999, whose channel consults 122099 itself (the
// consultation carries the PSTN caller's number). callctl routes it as
// dialed by 3999, the user it connected that channel to: 2099 on server 12
// sees 113999. 3999 hangs up and FreeSWITCH joins the PSTN caller with the
// consultation: server 11 counts 2 (the PSTN leg and the trunk leg out) and
// server 12 1 until the caller hangs up, nothing after; the consultation's
// record says attended, by 3999, from the PSTN call's record.
func TestAttXferKeepsTheJoinedLegsCounted(t *testing.T) {
	scenario(t, Options{Phones: phones("srv11", "3999", answers, "srv12", "2099", answers)}, func(t *testing.T, e *Env) {
		if e.Fleet.Kinds["srv11"] != provision.KindFreeSWITCH {
			t.Skip("att_xfer is FreeSWITCH's own application: server 11 is Asterisk in this fleet")
		}
		const caller = "+4915112345678"
		in := e.pstnCall(t, "srv11", "+4930100100", caller)
		bridged(t, in)
		e.waitAnswered(t, "3999")
		e.waitCount(t, "server", "srv11", 1)
		phone, err := e.Lab.AttXfer("srv11", in.UUID(), "122099")
		if err != nil {
			t.Fatal(err)
		}
		e.waitAnswered(t, "2099")
		if rs := e.Lab.Rings("srv12", "2099"); len(rs) != 1 || rs[0].Caller.Number != "113999" {
			t.Fatalf("2099 rings: %+v, want one showing 113999", rs)
		}
		e.waitCount(t, "server", "srv11", 2)
		e.waitCount(t, "server", "srv12", 1)
		// 3999 hangs up: the transfer completes.
		if err := e.Lab.Hangup("srv11", phone, callmodel.CauseNormalClearing); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for b := in.Bridged(); b[len(b)-1].Name != "loopback/122099-a"; b = in.Bridged() {
			if time.Now().After(deadline) {
				t.Fatalf("the PSTN caller was bridged with %+v, not with the consultation", b)
			}
			time.Sleep(5 * time.Millisecond)
		}
		// Nothing is to change while they talk: watched for a while, the
		// joined legs stay counted and the PSTN call is not let go.
		for watch := time.Now().Add(time.Second); time.Now().Before(watch); time.Sleep(20 * time.Millisecond) {
			if n := e.Count(ctxT(t), "server", "srv11"); n != 2 {
				t.Fatalf("server srv11 counts %d after the transfer, want 2 (the PSTN leg and the trunk leg out)", n)
			}
			if n := e.Count(ctxT(t), "server", "srv12"); n != 1 {
				t.Fatalf("server srv12 counts %d after the transfer, want 1", n)
			}
			for _, ev := range in.Events() {
				if ev.Kind == callmodel.ChannelHangup {
					t.Fatal("the PSTN caller's call ended with the transfer")
				}
			}
		}
		hangup(t, in)
		e.waitCount(t, "server", "srv11", 0)
		e.waitCount(t, "server", "srv12", 0)
		first := e.record(t, of(in))
		rec := e.record(t, func(r *controller.Record) bool { return r.Server == "srv11" && r.Dialed == "122099" })
		if first.Answered != "3999" || rec.Answered != "2099" || rec.Caller != "3999" || rec.CallerID != "113999" {
			t.Errorf("records: the PSTN call answered by %q, the consultation from %s answered by %q showing %s; want 3999, 3999 to 2099 showing 113999",
				first.Answered, rec.Caller, rec.Answered, rec.CallerID)
		}
		if rec.Transfer != "attended" || first.ID == "" || rec.TransferFrom != first.ID || rec.TransferBy != "3999" {
			t.Errorf("the consultation's record: transfer %q from %q by %q; want attended from %q by 3999", rec.Transfer, rec.TransferFrom, rec.TransferBy, first.ID)
		}
		if len(rec.Legs) != 1 || rec.Legs[0].Server != "srv11" || len(first.Legs) != 1 {
			t.Errorf("counted legs: the consultation %+v, the PSTN call %+v; want the trunk leg out and the PSTN leg on srv11", rec.Legs, first.Legs)
		}
	})
}

// The same consultation cancelled (3999 presses #): FreeSWITCH ends it and
// bridges the PSTN caller back to 3999 outside callctl's bridge. 2099 is
// released (server 12 counts 0), the PSTN leg stays counted (1) until 3999
// hangs up, which ends the caller's call too.
func TestAttXferCancelledKeepsTheCallerWithThePhone(t *testing.T) {
	scenario(t, Options{Phones: phones("srv11", "3999", answers, "srv12", "2099", answers)}, func(t *testing.T, e *Env) {
		if e.Fleet.Kinds["srv11"] != provision.KindFreeSWITCH {
			t.Skip("att_xfer is FreeSWITCH's own application: server 11 is Asterisk in this fleet")
		}
		in := e.pstnCall(t, "srv11", "+4930100100", "+4915112345678")
		bridged(t, in)
		e.waitAnswered(t, "3999")
		phone, err := e.Lab.AttXfer("srv11", in.UUID(), "122099")
		if err != nil {
			t.Fatal(err)
		}
		e.waitAnswered(t, "2099")
		e.waitCount(t, "server", "srv11", 2)
		e.waitCount(t, "server", "srv12", 1)
		if err := e.Lab.RecvDTMF("srv11", phone, "#"); err != nil {
			t.Fatal(err)
		}
		e.waitCount(t, "server", "srv12", 0)
		e.waitCount(t, "server", "srv11", 1)
		deadline := time.Now().Add(10 * time.Second)
		for b := in.Bridged(); b[len(b)-1].UUID != phone || len(b) < 2; b = in.Bridged() {
			if time.Now().After(deadline) {
				t.Fatalf("the PSTN caller was bridged with %+v, not back with 3999's channel %s", b, phone)
			}
			time.Sleep(5 * time.Millisecond)
		}
		for _, ev := range in.Events() {
			if ev.Kind == callmodel.ChannelHangup {
				t.Fatal("the PSTN caller's call ended with the cancelled consultation")
			}
		}
		if err := e.Lab.Hangup("srv11", phone, callmodel.CauseNormalClearing); err != nil {
			t.Fatal(err)
		}
		ended(t, in)
		e.waitCount(t, "server", "srv11", 0)
	})
}
