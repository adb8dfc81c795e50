package esl

import (
	"github.com/callctl/callctl/internal/labtest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

var transfersDir = filepath.Join(labtest.TracesDir(), "transfers", "freeswitch")

// loadRawRecording reads a connection capture of the transfer transcripts
// (they have no .session, only the bytes FreeSWITCH sent).
func loadRawRecording(t *testing.T, base string) *recording {
	t.Helper()
	traceDir(t)
	frames, err := parseRaw(filepath.Join(transfersDir, base+".raw"))
	if err != nil {
		t.Fatal(err)
	}
	return &recording{name: base, frames: frames}
}

// collect reads a connection until a frame matches (included).
func collect(t *testing.T, c *rawClient, match func(*frame) bool) []*frame {
	t.Helper()
	return c.until(match)
}

func isLinger(f *frame) bool {
	return f.contentType() == "text/disconnect-notice" && f.get("Content-Disposition") == "linger"
}

// transferScenario plays case 1 of the transfer recordings: a SIP call is
// answered by its outbound socket controller (conn1), then uuid_transfer
// sends it to 2099 in the default context, which runs socket again (conn2,
// same uuid). closeConn1 closes conn1 once it saw the socket application
// end, as the recording ..._conn1_close does.
func transferScenario(t *testing.T, closeConn1 bool) (conn1, conn2 []*frame, uuids map[string]string) {
	ctl := newController(t)
	lab := newTestLab(t, callmodel.ScaledClock(speed),
		testServerSpec{name: "fs1", ip: "127.0.0.11", controllers: []string{ctl.addr()}})
	uuid, err := lab.fleet.PlaceCall("fs1", callmodel.InboundCall{
		Origin:      callmodel.OriginPhone,
		Caller:      callmodel.Party{Name: "sipp", Number: "sipp"},
		Destination: "1000",
		Context:     "public",
		NetworkIP:   "127.0.0.1",
		Plan:        callmodel.CallerPlan{HangupAfterAnswer: 8 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	handshake := func(c *rawClient) []*frame {
		c.send("connect")
		got := []*frame{c.next()}
		c.send("myevents plain")
		c.send("linger")
		c.send("sendmsg\ncall-command: execute\nexecute-app-name: answer")
		return append(got, c.until(isEvent("CHANNEL_EXECUTE_COMPLETE"))...)
	}
	c1 := ctl.accept()
	conn1 = handshake(c1)
	in := lab.inbound(t, "fs1")
	in.send("api uuid_transfer " + uuid + " 2099 XML default")
	if f := in.next(); f.body != "+OK\n" {
		t.Fatalf("uuid_transfer: %v", f)
	}
	socketDone := func(f *frame) bool {
		return f.ev("Event-Name") == "CHANNEL_EXECUTE_COMPLETE" && f.ev("Application") == "socket"
	}
	conn1 = append(conn1, c1.until(socketDone)...)
	c2 := ctl.accept()
	conn2 = handshake(c2)
	if closeConn1 {
		// FreeSWITCH handles conn1's close after conn2's handshake (the
		// recording shows conn2 answered before the call dies)
		c1.close()
	}
	conn2 = append(conn2, c2.until(isLinger)...)
	if !closeConn1 {
		conn1 = append(conn1, c1.until(isLinger)...)
	}
	return conn1, conn2, map[string]string{}
}

func compareTransfer(t *testing.T, base string, closeConn1 bool) {
	rec1 := loadRawRecording(t, base+".conn1")
	rec2 := loadRawRecording(t, base+".conn2")
	got1, got2, uuids := transferScenario(t, closeConn1)
	mu := &sync.Mutex{}
	s1 := newSession(t, rec1, nil, mu, uuids)
	s2 := newSession(t, rec2, nil, mu, uuids)
	for _, f := range got1 {
		s1.take(f)
	}
	for _, f := range got2 {
		s2.take(f)
	}
	c := &comparison{t: t, name: base, uuids: uuids}
	c.compareConnection(rec1, got1, true)
	c.compareConnection(rec2, got2, true)
	// conn2 is for the same channel as conn1
	if got1[0].ev("Unique-ID") != got2[0].ev("Unique-ID") {
		t.Errorf("conn2 is for %s, conn1 for %s", got2[0].ev("Unique-ID"), got1[0].ev("Unique-ID"))
	}
	c.report()
}

func TestTransferKeepsFirstConnection(t *testing.T) {
	compareTransfer(t, "fs1_case1_uuid_transfer", false)
}

func TestTransferThenFirstConnectionClosedKillsCall(t *testing.T) {
	compareTransfer(t, "fs1_case1_uuid_transfer_conn1_close", true)
}

// TestTransferConnectReply checks what the second connection learns about
// the transfer (connect-reply-diff of the recordings).
func TestTransferConnectReply(t *testing.T) {
	traceDir(t)
	_, got2, _ := transferScenario(t, false)
	d := got2[0]
	want := map[string]string{
		"Caller-Destination-Number": "2099",
		"Caller-Context":            "default",
		"Caller-RDNIS":              "1000",
		"Caller-Profile-Index":      "2",
		"Channel-Call-State":        "ACTIVE",
		"Answer-State":              "answered",
		"Caller-Caller-ID-Number":   "sipp",
		"variable_max_forwards":     "69",
		"variable_sip_req_user":     "1000",
	}
	for k, v := range want {
		if d.ev(k) != v {
			t.Errorf("%s = %q, want %q", k, d.ev(k), v)
		}
	}
	for _, k := range []string{"variable_transfer_history", "variable_transfer_source", "Caller-Transfer-Source"} {
		v := d.ev(k)
		if !strings.HasSuffix(v, ":bl_xfer:2099/default/XML") || len(strings.Split(v, ":")) != 4 {
			t.Errorf("%s = %q, want <epoch>:<uuid>:bl_xfer:2099/default/XML", k, v)
		}
	}
	if _, ok := d.event["variable_sip_refer_to"]; ok {
		t.Error("uuid_transfer is not a REFER: no sip_refer_to")
	}
}
