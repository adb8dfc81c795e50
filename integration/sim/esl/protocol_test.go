package esl

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

func fastLab(t *testing.T, specs ...testServerSpec) *testLab {
	if len(specs) == 0 {
		specs = []testServerSpec{{name: "fs1", ip: "127.0.0.11"}}
	}
	return newTestLab(t, callmodel.ScaledClock(speed), specs...)
}

func reply(t *testing.T, c *rawClient, cmd, want string) *frame {
	t.Helper()
	c.send(cmd)
	fs := c.until(func(f *frame) bool {
		return f.event == nil || f.contentType() == "command/reply"
	})
	f := fs[len(fs)-1]
	got := f.get("Reply-Text")
	if f.contentType() == "api/response" {
		got = f.body
	}
	if got != want {
		t.Fatalf("%q: got %s %q, want %q", cmd, f.contentType(), got, want)
	}
	return f
}

func TestAuthentication(t *testing.T) {
	lab := fastLab(t)
	c := dialClient(t, lab.servers["fs1"].Addr())
	if f := c.next(); f.contentType() != "auth/request" || len(f.headers) != 1 {
		t.Fatalf("greeting %+v", f.headers)
	}
	reply(t, c, "api status", "-ERR command not found")
	reply(t, c, "auth wrong", "-ERR invalid")
	rest := c.closed()
	if len(rest) != 1 || rest[0].contentType() != "text/disconnect-notice" ||
		rest[0].body != "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n" {
		t.Fatalf("after a wrong password: %v", rest)
	}

	c = lab.inbound(t, "fs1")
	reply(t, c, "exit", "+OK bye")
	if rest := c.closed(); len(rest) != 1 || rest[0].contentType() != "text/disconnect-notice" {
		t.Fatalf("after exit: %v", rest)
	}
}

func TestCommandReplies(t *testing.T) {
	lab := fastLab(t)
	lab.fleet.SetPhone("fs1", "2000", callmodel.Answer(0))
	lab.fleet.SetPhone("fs1", "2001", callmodel.Unregistered())
	c := lab.inbound(t, "fs1")
	reply(t, c, "bogus", "-ERR command not found")
	reply(t, c, "api bogus_cmd arg", "-ERR bogus_cmd Command not found!\n")
	reply(t, c, "event", "-ERR no keywords supplied")
	reply(t, c, "event json CHANNEL_ANSWER CHANNEL_HANGUP", "+OK event listener enabled json")
	reply(t, c, "nixevent CHANNEL_HANGUP", "+OK events nixed")
	reply(t, c, "filter Unique-ID abc", "+OK filter added. [Unique-ID]=[abc]")
	reply(t, c, "filter delete Unique-ID abc", "+OK filter deleted. [Unique-ID][abc]")
	reply(t, c, "noevents", "+OK no longer listening for events")
	reply(t, c, "noevents", "-ERR not listening for events")
	reply(t, c, "linger", "-ERR not controlling a session")
	reply(t, c, "sendmsg 00000000-0000-0000-0000-000000000000\ncall-command: hangup", "-ERR invalid session id [00000000-0000-0000-0000-000000000000]")
	reply(t, c, "api uuid_kill 00000000-0000-0000-0000-000000000000", "-ERR No such channel!\n")
	reply(t, c, "api uuid_exists 00000000-0000-0000-0000-000000000000", "false")
	reply(t, c, "api sofia_contact 2000", "sofia/internal/sip:2000@127.0.0.11:5060")
	reply(t, c, "api sofia_contact internal/2001@example.com", "error/user_not_registered")
	reply(t, c, "api originate user/2001 &park()", "-ERR USER_NOT_REGISTERED\n")
	reply(t, c, "api originate sofia/gateway/nowhere/1000 &park()", "-ERR INVALID_GATEWAY\n")
	reply(t, c, "api originate loopback/201/targets &park()", "-ERR USER_BUSY\n")
	reply(t, c, "api show channels as json", "{\"row_count\":0}\n")
	c.send("api status")
	if f := c.next(); !strings.HasPrefix(f.body, "UP ") || !strings.Contains(f.body, "is ready") {
		t.Fatalf("status: %q", f.body)
	}
}

func TestBgapiWithJobUUIDAndChannelAPI(t *testing.T) {
	lab := fastLab(t)
	c := lab.inbound(t, "fs1")
	reply(t, c, "event plain BACKGROUND_JOB CHANNEL_ANSWER", "+OK event listener enabled plain")
	c.send("bgapi originate {origination_uuid=11111111-2222-3333-4444-555555555555}loopback/501/targets &park()\nJob-UUID: my-job-1")
	f := c.next()
	if f.get("Reply-Text") != "+OK Job-UUID: my-job-1" || f.get("Job-UUID") != "my-job-1" {
		t.Fatalf("bgapi reply %+v", f.headers)
	}
	job := c.until(isEvent("BACKGROUND_JOB"))
	bj := job[len(job)-1]
	if bj.ev("Job-UUID") != "my-job-1" || bj.ev("_body") != "+OK 11111111-2222-3333-4444-555555555555\n" ||
		bj.ev("Job-Command") != "originate" {
		t.Fatalf("background job %v", bj.event)
	}
	uuid := "11111111-2222-3333-4444-555555555555"
	reply(t, c, "api uuid_exists "+uuid, "true")
	reply(t, c, "api uuid_setvar "+uuid+" callctl_call abc 123", "+OK\n")
	reply(t, c, "api uuid_getvar "+uuid+" callctl_call", "abc 123")
	reply(t, c, "api uuid_getvar "+uuid+" nothing_here", "_undef_")
	c.send("api show channels as json")
	var shown struct {
		RowCount int                 `json:"row_count"`
		Rows     []map[string]string `json:"rows"`
	}
	if err := json.Unmarshal([]byte(c.next().body), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.RowCount != 2 || shown.Rows[0]["uuid"] != uuid || shown.Rows[0]["callstate"] != "ACTIVE" ||
		shown.Rows[0]["application"] != "park" {
		t.Fatalf("show channels %+v", shown)
	}
	reply(t, c, "api hupall NORMAL_CLEARING", "+OK hangup all channels with cause NORMAL_CLEARING\n")
	waitIdle(t, lab)
}

func waitIdle(t *testing.T, lab *testLab) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		n := 0
		for _, s := range lab.servers {
			n += s.model.ChannelCount()
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d channels left", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMyeventsOnInboundConnection(t *testing.T) {
	lab := fastLab(t)
	c := lab.inbound(t, "fs1")
	c.send("api originate {origination_uuid=aaaaaaaa-2222-3333-4444-555555555555}loopback/501/targets &park()")
	c.next()
	c2 := lab.inbound(t, "fs1")
	c2.send("api originate loopback/501/targets &park()")
	other := strings.TrimSpace(strings.TrimPrefix(c2.next().body, "+OK "))
	reply(t, c, "myevents aaaaaaaa-2222-3333-4444-555555555555 json", "+OK Events Enabled")
	reply(t, c, "api uuid_kill "+other, "+OK\n")
	reply(t, c, "api uuid_kill aaaaaaaa-2222-3333-4444-555555555555", "+OK\n")
	got := c.until(isEvent("CHANNEL_HANGUP_COMPLETE"))
	for _, f := range got {
		if f.event != nil && f.ev("Unique-ID") != "aaaaaaaa-2222-3333-4444-555555555555" {
			t.Fatalf("myevents delivered another channel's event: %v", f)
		}
		if f.event != nil && f.contentType() != "text/event-json" {
			t.Fatalf("format %s", f.contentType())
		}
	}
}

// bridgeScenario answers a call with a test controller and bridges it.
func bridgeScenario(t *testing.T, lab *testLab, ctl *controller, setup []string, dial string) (*rawClient, string) {
	t.Helper()
	uuid, err := lab.fleet.PlaceCall("fs1", callmodel.InboundCall{
		Origin: callmodel.OriginPhone, Caller: callmodel.Party{Number: "3000"}, Destination: "9999", NetworkIP: "127.0.0.100",
	})
	if err != nil {
		t.Fatal(err)
	}
	c := ctl.accept()
	c.send("connect")
	c.next()
	reply(t, c, "myevents", "+OK Events Enabled")
	reply(t, c, "linger 1", "+OK will linger 1 seconds")
	for _, s := range setup {
		reply(t, c, "sendmsg\ncall-command: execute\nexecute-app-name: set\nexecute-app-arg: "+s, "+OK")
	}
	reply(t, c, "sendmsg\ncall-command: execute\nexecute-app-name: bridge\nexecute-app-arg: "+dial, "+OK")
	return c, uuid
}

func TestBridgeFailoverAndSimultaneousRing(t *testing.T) {
	ctl := newController(t)
	lab := fastLab(t, testServerSpec{name: "fs1", ip: "127.0.0.11", controllers: []string{ctl.addr()}})
	lab.fleet.SetPhone("fs1", "2001", callmodel.Busy())
	lab.fleet.SetPhone("fs1", "2002", callmodel.Answer(100*time.Millisecond))
	lab.fleet.SetPhone("fs1", "2003", callmodel.Answer(2*time.Second))
	lab.fleet.SetPhone("fs1", "2004", callmodel.RingForever())

	// 2001 is busy, the failover reaches 2002
	c, uuid := bridgeScenario(t, lab, ctl, nil, "user/2001|user/2002")
	br := c.until(isEvent("CHANNEL_BRIDGE"))[0:]
	bridge := br[len(br)-1]
	if !strings.HasPrefix(bridge.ev("Other-Leg-Channel-Name"), "sofia/internal/2002@") ||
		bridge.ev("variable_originate_causes") == "" || bridge.ev("variable_DIALSTATUS") != "SUCCESS" {
		t.Fatalf("bridged %v", bridge.event)
	}
	r1, r2 := lab.fleet.RingsOf("fs1", "2001"), lab.fleet.RingsOf("fs1", "2002")
	if len(r1) != 1 || r1[0].Outcome != callmodel.OutcomeBusy || len(r2) != 1 {
		t.Fatalf("rings 2001 %+v 2002 %+v", r1, r2)
	}
	_ = lab.servers["fs1"].model.Do(func(tx *callmodel.Tx) error {
		tx.Hangup(uuid, callmodel.CauseNormalClearing, callmodel.ByRemote)
		return nil
	})
	waitIdle(t, lab)

	// 2003 and 2004 ring together; 2003 answers, 2004 loses the race
	c, uuid = bridgeScenario(t, lab, ctl, nil, "user/2003,user/2004")
	c.until(isEvent("CHANNEL_BRIDGE"))
	r4 := lab.fleet.RingsOf("fs1", "2004")
	if len(r4) != 1 || r4[0].Outcome != callmodel.OutcomeCancelled || r4[0].Cause != callmodel.CauseLoseRace {
		t.Fatalf("2004 rings %+v", r4)
	}
	_ = lab.servers["fs1"].model.Do(func(tx *callmodel.Tx) error {
		tx.Hangup(uuid, callmodel.CauseNormalClearing, callmodel.ByRemote)
		return nil
	})
	waitIdle(t, lab)
}

// Each leg of a failover bridge takes its own origination_uuid from its
// [...] variables, the second leg too: FreeSWITCH 1.10.12 creates b1, then
// b2, for bridge [origination_uuid=b1]loopback/203/targets|
// [origination_uuid=b2]loopback/204/targets.
func TestBridgeFailoverLegUUIDs(t *testing.T) {
	ctl := newController(t)
	lab := fastLab(t, testServerSpec{name: "fs1", ip: "127.0.0.11", controllers: []string{ctl.addr()}})
	lab.fleet.SetPhone("fs1", "2001", callmodel.Busy())
	lab.fleet.SetPhone("fs1", "2002", callmodel.Answer(50*time.Millisecond))
	const b1, b2 = "bbbbbbbb-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"
	c, uuid := bridgeScenario(t, lab, ctl, nil, "[origination_uuid="+b1+"]user/2001|[origination_uuid="+b2+"]user/2002")
	br := c.until(isEvent("CHANNEL_BRIDGE"))
	if got := br[len(br)-1].ev("Other-Leg-Unique-ID"); got != b2 {
		t.Errorf("bridged with %q, want the second leg's own uuid %s", got, b2)
	}
	r1, r2 := lab.fleet.RingsOf("fs1", "2001"), lab.fleet.RingsOf("fs1", "2002")
	if len(r1) != 1 || r1[0].UUID != b1 || len(r2) != 1 || r2[0].UUID != b2 {
		t.Errorf("rings 2001 %+v 2002 %+v", r1, r2)
	}
	_ = lab.servers["fs1"].model.Do(func(tx *callmodel.Tx) error {
		tx.Hangup(uuid, callmodel.CauseNormalClearing, callmodel.ByRemote)
		return nil
	})
	waitIdle(t, lab)
}

func TestBridgeTimeoutAndContinueOnFailList(t *testing.T) {
	ctl := newController(t)
	lab := fastLab(t, testServerSpec{name: "fs1", ip: "127.0.0.11", controllers: []string{ctl.addr()}})
	lab.fleet.SetPhone("fs1", "2004", callmodel.RingForever())
	lab.fleet.SetPhone("fs1", "2001", callmodel.Busy())

	// no answer within call_timeout: NO_ANSWER, and the list lets the call go on
	c, uuid := bridgeScenario(t, lab, ctl, []string{"call_timeout=2", "continue_on_fail=NO_ANSWER,USER_BUSY"}, "user/2004")
	done := c.until(func(f *frame) bool {
		return f.ev("Event-Name") == "CHANNEL_EXECUTE_COMPLETE" && f.ev("Application") == "bridge"
	})
	last := done[len(done)-1]
	if last.ev("variable_originate_disposition") != "NO_ANSWER" || last.ev("variable_DIALSTATUS") != "NOANSWER" ||
		last.ev("Answer-State") == "hangup" {
		t.Fatalf("timeout result %v", last.event)
	}
	if r := lab.fleet.RingsOf("fs1", "2004"); len(r) != 1 || r[0].Cause != callmodel.CauseNoAnswer {
		t.Fatalf("2004 ring %+v", r)
	}
	// the next bridge fails busy, also in the list: still up
	reply(t, c, "sendmsg\ncall-command: execute\nexecute-app-name: bridge\nexecute-app-arg: user/2001", "+OK")
	done = c.until(func(f *frame) bool {
		return f.ev("Event-Name") == "CHANNEL_EXECUTE_COMPLETE" && f.ev("Application") == "bridge"
	})
	if last = done[len(done)-1]; last.ev("variable_DIALSTATUS") != "BUSY" || last.ev("Answer-State") == "hangup" {
		t.Fatalf("busy result %v", last.event)
	}
	// the controller hangs up
	reply(t, c, "sendmsg\ncall-command: hangup\nhangup-cause: CALL_REJECTED", "+OK")
	hu := c.until(isEvent("CHANNEL_HANGUP"))
	if h := hu[len(hu)-1]; h.ev("Hangup-Cause") != "CALL_REJECTED" || h.ev("Unique-ID") != uuid {
		t.Fatalf("hangup %v", h.event)
	}
	c.until(isLinger)
}

func TestControllerClosingWithoutHangupEndsTheCall(t *testing.T) {
	ctl := newController(t)
	lab := fastLab(t, testServerSpec{name: "fs1", ip: "127.0.0.11", controllers: []string{ctl.addr()}})
	ev := make(chan callmodel.Event, 64)
	lab.servers["fs1"].model.Subscribe(func(_ *callmodel.Tx, e *callmodel.Event) { ev <- *e })
	uuid, err := lab.fleet.PlaceCall("fs1", callmodel.InboundCall{Caller: callmodel.Party{Number: "3000"}, Destination: "1000"})
	if err != nil {
		t.Fatal(err)
	}
	c := ctl.accept()
	c.send("connect")
	c.next()
	reply(t, c, "sendmsg\ncall-command: execute\nexecute-app-name: answer", "+OK")
	time.Sleep(20 * time.Millisecond)
	c.close()
	deadline := time.After(waitLong)
	for {
		select {
		case e := <-ev:
			if e.Kind == callmodel.ChannelHangup && e.Channel.UUID == uuid {
				if e.Channel.Cause != callmodel.CauseDestinationOutOfOrder {
					t.Fatalf("cause %v", e.Channel.Cause)
				}
				return
			}
		case <-deadline:
			t.Fatal("the call survived its controller")
		}
	}
}
