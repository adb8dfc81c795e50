package integration

import (
	"context"
	"testing"
	"time"

	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/integration/sim/callmodel"
)

// SPEC §4, §5: 3999 on server 11 consults 2099 on server 12 (who sees
// 113999), then transfers a PSTN call it took to 2099 (a REFER that
// replaces the consultation's dialog). FreeSWITCH joins the PSTN caller to
// the consultation's trunk leg and hangs up both of 3999's channels: the
// joined legs stay counted (2 on server 11: the PSTN leg and the trunk leg
// out; 1 on server 12), the consultation's record says attended by 3999
// from the PSTN call's record, and nothing is counted after the caller
// hangs up.
func TestAttendedTransferKeepsTheJoinedLegsCounted(t *testing.T) {
	scenario(t, Options{Phones: phones("srv11", "3999", answers, "srv12", "2099", answers)}, func(t *testing.T, e *Env) {
		const caller = "+4915112345678"
		consult := e.call(t, "srv11", "3999", "122099")
		bridged(t, consult)
		e.waitAnswered(t, "2099")
		rs := e.Lab.Rings("srv12", "2099")
		if len(rs) != 1 || rs[0].Caller.Number != "113999" {
			t.Fatalf("2099 rings: %+v, want one showing 113999", rs)
		}
		in := e.pstnCall(t, "srv11", "+4930100100", caller)
		bridged(t, in)
		e.waitAnswered(t, "3999")
		e.waitCount(t, "server", "srv11", 2)
		e.waitCount(t, "server", "srv12", 1)
		trunk := consult.Bridged()[0].UUID
		if err := e.Lab.AttendedTransfer("srv11", in.UUID(), consult.UUID()); err != nil {
			t.Fatal(err)
		}
		ended(t, consult)
		// The PSTN caller now talks to the consultation's trunk leg, and
		// stays up.
		deadline := time.Now().Add(10 * time.Second)
		for b := in.Bridged(); b[len(b)-1].UUID != trunk; b = in.Bridged() {
			if time.Now().After(deadline) {
				t.Fatalf("the PSTN caller was bridged with %+v, not with the consultation's trunk leg %s", b, trunk)
			}
			time.Sleep(5 * time.Millisecond)
		}
		for _, ev := range in.Events() {
			if ev.Kind == callmodel.ChannelHangup {
				t.Fatal("the PSTN caller's call ended with the transfer")
			}
		}
		// Nothing is to change while they talk: watched for a while (no
		// signal tells that callctl has taken in every event of the
		// transfer), the counts stay and the PSTN call is not let go.
		for watch := time.Now().Add(time.Second); time.Now().Before(watch); time.Sleep(20 * time.Millisecond) {
			if n := e.Count(ctxT(t), "server", "srv11"); n != 2 {
				t.Fatalf("server srv11 counts %d after the transfer, want 2 (the PSTN leg and the trunk leg out)", n)
			}
			if n := e.Count(ctxT(t), "server", "srv12"); n != 1 {
				t.Fatalf("server srv12 counts %d after the transfer, want 1", n)
			}
			for _, r := range e.Records.All() {
				if r.CallID == in.UUID() {
					t.Fatalf("the PSTN call was let go while its caller talks on: record %+v", r)
				}
			}
		}
		hangup(t, in)
		e.waitCount(t, "server", "srv11", 0)
		e.waitCount(t, "server", "srv12", 0)
		first := e.record(t, of(in))
		rec := e.record(t, of(consult))
		if first.Answered != "3999" || rec.Answered != "2099" || rec.CallerID != "113999" {
			t.Errorf("records: the PSTN call answered by %q, the consultation by %q showing %s; want 3999, 2099 showing 113999",
				first.Answered, rec.Answered, rec.CallerID)
		}
		if rec.Transfer != "attended" || first.ID == "" || rec.TransferFrom != first.ID || rec.TransferBy != "3999" {
			t.Errorf("the consultation's record: transfer %q from %q by %q; want attended from %q by 3999", rec.Transfer, rec.TransferFrom, rec.TransferBy, first.ID)
		}
		if len(rec.Legs) != 1 || rec.Legs[0].Server != "srv11" || len(first.Legs) != 1 {
			t.Errorf("counted legs: the consultation %+v, the PSTN call %+v; want the trunk leg out and the PSTN leg on srv11", rec.Legs, first.Legs)
		}
	})
}

// The same transfer, then callctl's event socket connections to server 11
// drop (a network fault): the joined PSTN caller, whose end callctl can no
// longer see on its own connection, is ended through the inbound connection
// as any call whose socket went (SPEC §8), so nothing stays up uncounted:
// its partner on server 12 ends with it and nothing stays counted. Asterisk
// keeps its calls when the ARI websocket drops: callctl reconnects, the
// joined legs stay counted, and the caller's hang-up ends everything.
func TestAttendedTransferThenSocketLost(t *testing.T) {
	scenario(t, Options{Phones: phones("srv11", "3999", answers, "srv12", "2099", answers)}, func(t *testing.T, e *Env) {
		consult := e.call(t, "srv11", "3999", "122099")
		bridged(t, consult)
		e.waitAnswered(t, "2099")
		in := e.pstnCall(t, "srv11", "+4930100100", "+4915112345678")
		bridged(t, in)
		e.waitAnswered(t, "3999")
		trunk := consult.Bridged()[0].UUID
		if err := e.Lab.AttendedTransfer("srv11", in.UUID(), consult.UUID()); err != nil {
			t.Fatal(err)
		}
		ended(t, consult)
		deadline := time.Now().Add(10 * time.Second)
		for b := in.Bridged(); b[len(b)-1].UUID != trunk; b = in.Bridged() {
			if time.Now().After(deadline) {
				t.Fatalf("the PSTN caller was bridged with %+v, not with the consultation's trunk leg %s", b, trunk)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if _, err := e.Lab.DropConnections("srv11"); err != nil {
			t.Fatal(err)
		}
		if e.Fleet.Kinds["srv11"] == provision.KindAsterisk {
			rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := e.Node.Ready(rctx, e.asteriskServers()...); err != nil {
				t.Fatal(err)
			}
			e.waitCount(t, "server", "srv11", 2)
			e.waitCount(t, "server", "srv12", 1)
			hangup(t, in)
		}
		ended(t, in)
		e.waitCount(t, "server", "srv11", 0)
		e.waitCount(t, "server", "srv12", 0)
	})
}
