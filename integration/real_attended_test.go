package integration

import (
	"fmt"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/integration/sipp"
	"github.com/callctl/callctl/internal/labtest"
)

// SPEC §4, §5, attended: 3999 (a SIP phone on server 11) calls 122099 on
// its second line (2099's phone on server 12 shows 113999), then takes a
// PSTN call and transfers it to 2099 with a REFER that replaces the second
// line's dialog. FreeSWITCH joins the PSTN caller to the second line's
// trunk leg and ends both of 3999's lines (the replaced one with
// transfer_disposition=replaced); Asterisk (core handling) links the two
// calls with a Local channel. Either way 2099's phone shows the transferring
// extension (113999) and talks on with the PSTN caller; server 11 counts 2
// (the PSTN leg and the trunk leg out) and server 12 1 until the caller
// hangs up; the second line's record says attended by 3999 from the PSTN
// call's record; nothing stays counted.
func realAttendedOn11(t *testing.T, e *RealEnv) {
	if e.Fleet.SIP == nil || e.sipDir == "" {
		labtest.Missing(t, "real SIP phones: set %s", EnvSIPP)
	}
	const caller, did = "+4989123456", "+4930100100"
	second := e.sipStart(t, "srv11", sipp.Call{From: "3999", Dialed: "122099"})
	e.sipAnswered(t, "srv11", "3999", "122099", second)
	e.waitPhone(t, e.SIPPhones, PhoneNumber(PhoneAnswers, "2099"), "113999")
	e.waitCount(t, "server", "srv11", 1)
	e.waitCount(t, "server", "srv12", 1)
	callID, local, remote := dialogTags(t, second)
	srv11 := e.Fleet.Servers["srv11"].SIP
	referTo := fmt.Sprintf("sip:122099@%s?Replaces=%s%%3Bto-tag%%3D%s%%3Bfrom-tag%%3D%s", srv11, url.QueryEscape(callID),
		url.QueryEscape(remote), url.QueryEscape(local))
	tr, err := sipp.StartTransferer(realCtx(t), filepath.Join(e.sipDir, "transferer"), e.Fleet.SIP.Transferer(), referTo)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	cl := e.sipStart(t, "srv11", sipp.Call{Port: e.pstnCaller(), From: caller, Dialed: did})
	e.sipAnswered(t, "srv11", caller, did, cl)
	e.waitPhone(t, tr, PhoneNumber(PhoneTransfers, "3999"), caller)
	n := waitNotifies(t, tr)
	t.Logf("the transferring phone's NOTIFYs: %v", n)
	if n[len(n)-1] != 200 {
		t.Errorf("the transferring phone's NOTIFYs: %v, want a final 200", n)
	}
	// The server ends the replaced second line itself.
	if _, err := second.Wait(realCtx(t)); err != nil {
		t.Fatalf("the second line after the transfer: %v", err)
	}
	if !waitFor(10*time.Second, tr.HungUp) {
		t.Errorf("the transferring phone is still in its first line after the transfer")
	}
	e.sync(t)
	if cl.Ended() || e.SIPPhones.HungUp() {
		t.Fatalf("the PSTN caller (ended %v) or 2099 (hung up %v) left with the transferring phone", cl.Ended(), e.SIPPhones.HungUp())
	}
	if rs := e.SIPPhones.RingsOf(PhoneNumber(PhoneAnswers, "2099")); len(rs) != 1 || rs[0].From.User != "113999" {
		t.Errorf("2099's phone: %+v, want one call showing 113999", rs)
	}
	// Nothing is to change while they talk: watched for a while, the
	// joined legs stay counted.
	for watch := time.Now().Add(time.Second); time.Now().Before(watch); time.Sleep(50 * time.Millisecond) {
		if n := e.Count(realCtx(t), "server", "srv11"); n != 2 {
			t.Fatalf("server srv11 counts %d after the transfer, want 2 (the PSTN leg and the trunk leg out)", n)
		}
		if n := e.Count(realCtx(t), "server", "srv12"); n != 1 {
			t.Fatalf("server srv12 counts %d after the transfer, want 1", n)
		}
	}
	r := e.hangupSIP(t, "srv11", caller, cl)
	if !waitFor(10*time.Second, e.SIPPhones.HungUp) {
		t.Errorf("2099's phone was not hung up after the PSTN caller")
	}
	first := e.sipRecord(t, "srv11", caller, did, r)
	if first.Answer == nil || first.Answered != "3999" {
		t.Errorf("the PSTN call's record: answered %v by %q, want by 3999", first.Answer, first.Answered)
	}
	rec := e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == "srv11" && rec.Caller == "3999" && rec.Dialed == "122099" && !rec.Start.Before(r.Invited.Add(-30*time.Second))
	})
	if rec.Answer == nil || rec.CallerID != "113999" || rec.Route != "inter-server" {
		t.Errorf("the second line's record: answered %v caller id %s route %s; want answered, 113999, inter-server", rec.Answer, rec.CallerID, rec.Route)
	}
	if rec.Transfer != "attended" || first.ID == "" || rec.TransferFrom != first.ID || rec.TransferBy != "3999" {
		t.Errorf("the second line's record: transfer %q from %q by %q; want attended from %q by 3999", rec.Transfer, rec.TransferFrom, rec.TransferBy, first.ID)
	}
	far := e.recordWhere(t, func(rec *controller.Record) bool {
		return rec.Server == "srv12" && rec.Dialed == "2099" && !rec.Start.Before(r.Invited.Add(-30*time.Second))
	})
	if far.Origin != "trunk" || far.CallerID != "113999" || far.Answer == nil {
		t.Errorf("server 12's record: origin %s caller id %s answered %v; want trunk 113999 answered", far.Origin, far.CallerID, far.Answer)
	}
	e.waitCount(t, "server", "srv11", 0)
	e.waitCount(t, "server", "srv12", 0)
}
