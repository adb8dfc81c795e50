package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/integration/sipp"
)

// attXferStart puts a PSTN call into server 11 through to 3999's phone and
// returns the caller and the phone's channel (the leg callctl connected),
// which FreeSWITCH's att_xfer then runs on.
func attXferStart(t *testing.T, e *RealEnv, caller, did string) (*sipp.Caller, string) {
	t.Helper()
	if e.Fleet.Servers["srv11"].Kind != provision.KindFreeSWITCH {
		t.Skip("att_xfer is FreeSWITCH's own application: server 11 is Asterisk in this fleet")
	}
	cl := e.sipStart(t, "srv11", sipp.Call{Port: e.pstnCaller(), From: caller, Dialed: did})
	e.sipAnswered(t, "srv11", caller, did, cl)
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "3999"), caller)
	e.waitCount(t, "server", "srv11", 1)
	for _, ch := range e.Channels("srv11") {
		if strings.HasPrefix(ch.Name, "sofia/internal/"+PhoneNumber(PhoneAnswers, "3999")+"@") && ch.Ended.IsZero() {
			return cl, ch.ID
		}
	}
	t.Fatalf("no channel of 3999's phone on srv11: %+v", e.Channels("srv11"))
	return nil, ""
}

// SPEC §4, §5, attended, by FreeSWITCH's own att_xfer: a PSTN call into
// server 11 answered by 3999's phone, whose channel consults 122099 itself
// (uuid_broadcast att_xfer::loopback/122099/<phones' context>, what an
// operator's binding runs). The consultation carries the PSTN caller's
// number, but callctl routes it as dialed by 3999, the user it connected
// that channel to: 2099's phone (server 12) shows 113999. 3999 hangs up
// and FreeSWITCH joins the PSTN caller with the consultation (uuid_bridge):
// they talk on, server 11 counts 2 (the PSTN leg and the trunk leg out) and
// server 12 1 until the caller hangs up, nothing after; the consultation's
// record says attended, by 3999, from the PSTN call's record.
func realFSAttXfer(t *testing.T, e *RealEnv) {
	const caller, did = "+4989123456", "+4930100100"
	cl, phone := attXferStart(t, e, caller, did)
	if err := e.AttXfer(realCtx(t), "srv11", phone, "122099"); err != nil {
		t.Fatal(err)
	}
	far := e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "2099"), "113999")
	e.waitCount(t, "server", "srv11", 2)
	e.waitCount(t, "server", "srv12", 1)
	// 3999 completes the transfer by hanging up.
	if err := e.Kill(realCtx(t), "srv11", phone); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
	// Nothing is to change while they talk: watched for a while, the
	// joined legs stay counted and nobody is hung up.
	for watch := time.Now().Add(time.Second); time.Now().Before(watch); time.Sleep(50 * time.Millisecond) {
		if n := e.Count(realCtx(t), "server", "srv11"); n != 2 {
			t.Fatalf("server srv11 counts %d after the transfer, want 2 (the PSTN leg and the trunk leg out)", n)
		}
		if n := e.Count(realCtx(t), "server", "srv12"); n != 1 {
			t.Fatalf("server srv12 counts %d after the transfer, want 1", n)
		}
		if cl.Ended() || e.SIPPhones.HungUpCall(far.CallID) {
			t.Fatalf("the PSTN caller (ended %v) or 2099 (hung up %v) left with the transferring phone", cl.Ended(), e.SIPPhones.HungUpCall(far.CallID))
		}
	}
	if rs := e.SIPPhones.RingsOf(PhoneNumber(PhoneAnswers, "2099")); len(rs) != 1 || rs[0].From.User != "113999" {
		t.Errorf("2099's phone: %+v, want one call showing 113999", rs)
	}
	r := e.hangupSIP(t, "srv11", caller, cl)
	if !waitFor(10*time.Second, func() bool { return e.SIPPhones.HungUpCall(far.CallID) }) {
		t.Errorf("2099's phone was not hung up after the PSTN caller")
	}
	first := e.sipRecord(t, "srv11", caller, did, r)
	if first.Answer == nil || first.Answered != "3999" {
		t.Errorf("the PSTN call's record: answered %v by %q, want by 3999", first.Answer, first.Answered)
	}
	rec := e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == "srv11" && rec.Dialed == "122099" && !rec.Start.Before(r.Invited.Add(-30*time.Second))
	})
	if rec.Caller != "3999" || rec.Answer == nil || rec.CallerID != "113999" || rec.Route != "inter-server" || rec.CallerOrg != "acme" {
		t.Errorf("the consultation's record: caller %s (org %s) answered %v caller id %s route %s; want 3999 of acme, answered, 113999, inter-server",
			rec.Caller, rec.CallerOrg, rec.Answer, rec.CallerID, rec.Route)
	}
	if rec.Transfer != "attended" || first.ID == "" || rec.TransferFrom != first.ID || rec.TransferBy != "3999" {
		t.Errorf("the consultation's record: transfer %q from %q by %q; want attended from %q by 3999", rec.Transfer, rec.TransferFrom, rec.TransferBy, first.ID)
	}
	if len(rec.Legs) != 1 || rec.Legs[0].Server != "srv11" || len(first.Legs) != 1 || first.Legs[0].Server != "srv11" {
		t.Errorf("counted legs: the consultation %+v, the PSTN call %+v; want the trunk leg out and the PSTN leg on srv11", rec.Legs, first.Legs)
	}
	farRec := e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == "srv12" && rec.Dialed == "2099" && !rec.Start.Before(r.Invited.Add(-30*time.Second))
	})
	if farRec.Origin != "trunk" || farRec.CallerID != "113999" || farRec.Answer == nil {
		t.Errorf("server 12's record: origin %s caller id %s answered %v; want trunk 113999 answered", farRec.Origin, farRec.CallerID, farRec.Answer)
	}
	e.waitCount(t, "server", "srv11", 0)
	e.waitCount(t, "server", "srv12", 0)
}

// The same consultation, cancelled: 3999 presses # (att_xfer's cancel key)
// while talking to 2099. FreeSWITCH ends the consultation (2099's phone is
// hung up, server 12 counts 0) and bridges the PSTN caller back to 3999
// outside callctl's bridge (uuid_bridge): the caller stays up and its PSTN
// leg counted (1 on server 11) until 3999 hangs up, which ends the caller's
// call too; nothing is counted after.
func realFSAttXferCancelled(t *testing.T, e *RealEnv) {
	const caller, did = "+4989123456", "+4930100100"
	cl, phone := attXferStart(t, e, caller, did)
	if err := e.AttXfer(realCtx(t), "srv11", phone, "122099"); err != nil {
		t.Fatal(err)
	}
	far := e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "2099"), "113999")
	e.waitCount(t, "server", "srv11", 2)
	e.waitCount(t, "server", "srv12", 1)
	if err := e.RecvDTMF(realCtx(t), "srv11", phone, "#"); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return e.SIPPhones.HungUpCall(far.CallID) }) {
		t.Fatal("2099's phone was not hung up when 3999 cancelled the consultation")
	}
	e.waitCount(t, "server", "srv12", 0)
	e.waitCount(t, "server", "srv11", 1)
	e.sync(t)
	if cl.Ended() {
		t.Fatal("the PSTN caller's call ended when 3999 cancelled the consultation")
	}
	if n := e.Count(realCtx(t), "server", "srv11"); n != 1 {
		t.Fatalf("server srv11 counts %d with the caller back with 3999, want 1 (the PSTN leg)", n)
	}
	// 3999 hangs up: the caller's call ends with it.
	if err := e.Kill(realCtx(t), "srv11", phone); err != nil {
		t.Fatal(err)
	}
	r, err := cl.Wait(realCtx(t))
	if err != nil {
		t.Fatalf("the PSTN caller after 3999 hung up: %v", err)
	}
	first := e.sipRecord(t, "srv11", caller, did, r)
	if first.Answer == nil || first.Answered != "3999" {
		t.Errorf("the PSTN call's record: answered %v by %q, want by 3999", first.Answer, first.Answered)
	}
	rec := e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == "srv11" && rec.Dialed == "122099" && !rec.Start.Before(r.Invited.Add(-30*time.Second))
	})
	if rec.Caller != "3999" || rec.CallerID != "113999" || rec.Answered != "2099" || rec.TransferFrom != first.ID || rec.TransferBy != "3999" {
		t.Errorf("the consultation's record: caller %s caller id %s answered by %q, from %q by %q; want 3999, 113999, 2099, from %q by 3999",
			rec.Caller, rec.CallerID, rec.Answered, rec.TransferFrom, rec.TransferBy, first.ID)
	}
	e.waitCount(t, "server", "srv11", 0)
	e.waitCount(t, "server", "srv12", 0)
}

// The same consultation refused: 2099's phone is busy. The consultation
// fails (its record: 3999 to 122099, busy, attended from the PSTN call's
// record), nothing is counted on server 12, and the PSTN caller stays in
// callctl's bridge with 3999 (1 counted on server 11) until it hangs up.
func realFSAttXferRefused(t *testing.T, e *RealEnv) {
	const caller, did = "+4989123456", "+4930100100"
	cl, phone := attXferStart(t, e, caller, did)
	if err := e.AttXfer(realCtx(t), "srv11", phone, "122099"); err != nil {
		t.Fatal(err)
	}
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneBusy, "2099"), "113999")
	rec := e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == "srv11" && rec.Dialed == "122099" && !rec.End.IsZero()
	})
	e.sync(t)
	if cl.Ended() {
		t.Fatal("the PSTN caller's call ended with the refused consultation")
	}
	e.waitCount(t, "server", "srv12", 0)
	if n := e.Count(realCtx(t), "server", "srv11"); n != 1 {
		t.Fatalf("server srv11 counts %d with the caller still with 3999, want 1 (the PSTN leg)", n)
	}
	r := e.hangupSIP(t, "srv11", caller, cl)
	first := e.sipRecord(t, "srv11", caller, did, r)
	if rec.Caller != "3999" || rec.Answer != nil || rec.HangupCause != "USER_BUSY" || rec.Transfer != "attended" ||
		rec.TransferFrom != first.ID || rec.TransferBy != "3999" {
		t.Errorf("the consultation's record: caller %s answered %v cause %s, transfer %q from %q by %q; want 3999, unanswered, USER_BUSY, attended from %q by 3999",
			rec.Caller, rec.Answer, rec.HangupCause, rec.Transfer, rec.TransferFrom, rec.TransferBy, first.ID)
	}
	if first.Answered != "3999" || first.HangupCause != "NORMAL_CLEARING" {
		t.Errorf("the PSTN call's record: answered by %q, cause %s; want 3999, NORMAL_CLEARING", first.Answered, first.HangupCause)
	}
	e.waitCount(t, "server", "srv11", 0)
}
