package asterisk

import (
	"bufio"
	"bytes"
	"github.com/callctl/callctl/internal/labtest"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/hunt"
)

// traceDir holds the transcripts recorded from a real Asterisk 22.10.1.
var traceDir = filepath.Join(labtest.TracesDir(), "asterisk")

func traceFrames(t *testing.T, name string) [][]byte {
	t.Helper()
	f, err := os.Open(filepath.Join(traceDir, name))
	if os.IsNotExist(err) {
		labtest.Missing(t, "trace %s not found under %s: the recorded transcripts are not on this machine", name, traceDir)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
			out = append(out, append([]byte(nil), line...))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// offlineClient is a Client that is not connected: frames are fed to it
// directly. Its REST URL points nowhere reachable (port 9 of loopback).
func offlineClient(t *testing.T) *Client {
	t.Helper()
	c, err := New(Config{Server: "ast1", URL: "http://127.0.0.1:9/ari", User: "u", Password: "p", App: "controller",
		Logger: quietLogger(), MarkFrom: func(string) bool { return false }, RequestTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDecodeEveryTraceFrame(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(traceDir, "*.jsonl"))
	xfer, _ := filepath.Glob(filepath.Join(traceDir, "..", "transfers", "asterisk", "*.jsonl"))
	files = append(files, xfer...)
	if len(files) == 0 {
		labtest.Missing(t, "no transcripts under %s", traceDir)
	}
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			e, err := decodeEvent(line)
			if err != nil {
				t.Errorf("%s: %v: %s", filepath.Base(f), err, head(line))
				continue
			}
			n++
			switch e.Type {
			case "StasisStart", "StasisEnd", "ChannelDestroyed", "ChannelHangupRequest":
				if e.Channel.ID == "" {
					t.Errorf("%s: %s without channel id", filepath.Base(f), e.Type)
				}
			case "Dial":
				if e.Peer.ID == "" {
					t.Errorf("%s: Dial without peer id", filepath.Base(f))
				}
			}
		}
	}
	t.Logf("decoded %d frames from %d transcripts", n, len(files))
}

// replayLeg feeds a transcript to a call with one leg registered under
// legID, as callctl would have after originating it, and returns what Dial
// would return.
func replayLeg(t *testing.T, trace, legID string, local bool) (answered bool, res controller.DialResult) {
	t.Helper()
	frames := traceFrames(t, trace)
	c := offlineClient(t)
	cl := newCall(c, &channelData{ID: "caller-1", Name: "PJSIP/sipp-00000000"}, nil, time.Now())
	l, err := cl.newLeg(legID, local)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		c.handleFrame(f, time.Now())
	}
	select {
	case <-l.answeredCh:
		answered = true
	default:
	}
	select {
	case <-l.endedCh:
	default:
		t.Fatalf("%s: leg %s never ended", trace, legID)
	}
	_, res, err = cl.unanswered(l)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Channels != 0 {
		t.Errorf("%s: %d channels still tracked after the leg ended", trace, s.Channels)
	}
	return answered, res
}

func TestTraceOutcomes(t *testing.T) {
	cases := []struct {
		trace, leg string
		local      bool
		answered   bool
		outcome    hunt.Outcome
		cause      string
	}{
		{"a-answer-local101.jsonl", "trace-a-101", true, true, hunt.Failed, "NORMAL_CLEARING"},
		{"b-busy-local201.jsonl", "trace-b-201", true, false, hunt.Busy, "USER_BUSY"},
		{"c-noanswer-local301.jsonl", "trace-c-301", true, false, hunt.NoAnswer, "NO_ANSWER"},
		{"j-congestion-local401.jsonl", "trace-j-401", true, false, hunt.Congested, "NORMAL_CIRCUIT_CONGESTION"},
		{"f-trunk-ast1-to-ast2.ast1-side.jsonl", "orig-1795306168", false, true, hunt.Failed, "NORMAL_CLEARING"},
	}
	for _, tc := range cases {
		t.Run(tc.trace, func(t *testing.T) {
			answered, res := replayLeg(t, tc.trace, tc.leg, tc.local)
			if answered != tc.answered {
				t.Errorf("answered = %v, want %v", answered, tc.answered)
			}
			if !tc.answered && (res.Outcome != tc.outcome || res.Cause != tc.cause) {
				t.Errorf("outcome = %v %q, want %v %q", res.Outcome, res.Cause, tc.outcome, tc.cause)
			}
		})
	}
}

// recorder is a Handler that keeps the calls it gets and holds each until
// its context ends.
type recorder struct {
	mu    sync.Mutex
	calls []controller.Call
	got   chan controller.Call
}

func (r *recorder) Handle(ms controller.MediaServer, call controller.Call) error {
	r.mu.Lock()
	r.calls = append(r.calls, call)
	r.mu.Unlock()
	if r.got != nil {
		r.got <- call
	}
	<-call.Context().Done()
	return nil
}

func TestTraceInboundCall(t *testing.T) {
	cases := []struct {
		trace, id, source, caller, dialed, domain, endCause string
	}{
		{"e1-sipp-uac-into-ast1-port5070.jsonl", "ast1-1795306163.10", "sipp", "sipp", "1000", "from-sipp", "NORMAL_CLEARING"},
		{"e2-sipp-uac-into-ast1-port5099.jsonl", "ast1-1795305803.12", "sipp", "sipp", "alice", "from-sipp", "NORMAL_CLEARING"},
		{"f-trunk-ast1-to-ast2.ast2-side.jsonl", "ast2-1795306168.0", "ast1", "5550100", "2099", "from-trunk", "NORMAL_CLEARING"},
	}
	for _, tc := range cases {
		t.Run(tc.trace, func(t *testing.T) {
			frames := traceFrames(t, tc.trace)
			c := offlineClient(t)
			rec := &recorder{got: make(chan controller.Call, 1)}
			c.handler, c.accepting = rec, true
			c.handleFrame(frames[0], time.Now())
			var call controller.Call
			select {
			case call = <-rec.got:
			case <-time.After(10 * time.Second):
				t.Fatal("StasisStart did not become a call")
			}
			info := call.Info()
			if call.ID() != tc.id || info.Source != tc.source || info.Caller != tc.caller || info.Dialed != tc.dialed ||
				info.Domain != tc.domain || info.Server != "ast1" || info.Start.IsZero() {
				t.Errorf("call %s info = %+v", call.ID(), info)
			}
			if call.Context().Err() != nil {
				t.Fatal("call context done before the caller left")
			}
			for _, f := range frames[1:] {
				c.handleFrame(f, time.Now())
			}
			select {
			case <-call.Context().Done():
			case <-time.After(10 * time.Second):
				t.Fatal("StasisEnd did not end the call's context")
			}
			if got := call.EndCause(); got != tc.endCause {
				t.Errorf("EndCause = %q, want %q", got, tc.endCause)
			}
			c.callsWG.Wait()
			if s := c.Stats(); s.Active != 0 || s.Channels != 0 {
				t.Errorf("after the call: %+v", s)
			}
		})
	}
}

// TestOddFrames feeds what a newer or broken Asterisk could send: nothing
// of it may stop callctl from handling the events that follow.
func TestOddFrames(t *testing.T) {
	c := offlineClient(t)
	cl := newCall(c, &channelData{ID: "caller-1"}, nil, time.Now())
	l, err := cl.newLeg("leg-1", false)
	if err != nil {
		t.Fatal(err)
	}
	huge := `{"type":"ChannelVarset","variable":"X","value":"` + strings.Repeat("A", 3<<20) + `","channel":{"id":"leg-1"}}`
	odd := []string{
		``, `null`, `[]`, `"ChannelDestroyed"`, `{`, `{"type":`, `{"type":null}`, `{"type":42}`, `{"no":"type"}`,
		`{"type":"ChannelTransfer","refer_to":{"requested_destination":{"destination":"2099"}},"referred_by":{"source_channel":{"id":"caller-1"}}}`,
		`{"type":"ChannelTransfer","state":"channel_progress"}`,
		`{"type":"CallBroadcast"}`, `{"type":"ApplicationRegistered","application":"controller"}`, `{"type":"RESTResponse"}`,
		`{"type":"CallClaimed"}`,
		`{"type":"SomethingFromTheFuture","channel":{"id":"leg-1"}}`,
		`{"type":"StasisStart"}`, `{"type":"StasisStart","channel":null}`, `{"type":"StasisStart","channel":"leg-1"}`,
		`{"type":"StasisStart","channel":{"id":7}}`,
		`{"type":"ChannelDestroyed","channel":{}}`, `{"type":"ChannelDestroyed","channel":{"id":["leg-1"]}}`,
		`{"type":"Dial","peer":{"id":"leg-1"},"dialstatus":17}`,
		`{"type":"ChannelHangupRequest","channel":{"id":"caller-1"},"cause":"busy","soft":"yes"}`,
		"\x00\xff\xfe", huge,
	}
	for _, f := range odd {
		c.handleFrame([]byte(f), time.Now())
	}
	select {
	case <-l.endedCh:
		t.Fatal("an odd frame ended the leg")
	case <-cl.ctx.Done():
		t.Fatal("an odd frame ended the call")
	default:
	}
	s := c.Stats()
	if s.BadFrames < 9 || s.Ignored < 5 {
		t.Errorf("stats after odd frames: %+v", s)
	}
	// A real event with odd neighbours still counts.
	c.handleFrame([]byte(`{"type":"Dial","dialstatus":"BUSY","peer":{"id":"leg-1","creationtime":12,"caller":"x"}}`), time.Now())
	c.handleFrame([]byte(`{"type":"ChannelDestroyed","cause":0,"cause_txt":5,"channel":{"id":"leg-1","state":{},"creationtime":"yesterday","dialplan":[]}}`), time.Now())
	select {
	case <-l.endedCh:
	default:
		t.Fatal("ChannelDestroyed with odd fields did not end the leg")
	}
	_, res, _ := cl.unanswered(l)
	if res.Outcome != hunt.Busy {
		t.Errorf("outcome = %v (%s), want busy", res.Outcome, res.Cause)
	}
}

func FuzzHandleFrame(f *testing.F) {
	f.Add([]byte(`{"type":"StasisStart","args":["from-sipp","1000"],"channel":{"id":"x","name":"PJSIP/a-00000001"}}`))
	f.Add([]byte(`{"type":"ChannelDestroyed","cause":17,"channel":{"id":"leg-1"}}`))
	f.Add([]byte(`{"type":"Dial","dialstatus":"BUSY","peer":{"id":"leg-1"}}`))
	f.Add([]byte(`{"type":"StasisStart","args":[],"channel":{"id":"y"},"replace_channel":{"id":"caller-1"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := offlineClient(t)
		rec := &recorder{}
		c.handler = rec
		// Not accepting: a StasisStart is refused in the background (the
		// REST call fails fast against a closed port).
		cl := newCall(c, &channelData{ID: "caller-1"}, nil, time.Now())
		c.register("caller-1", &chanRef{call: cl})
		if _, err := cl.newLeg("leg-1", true); err != nil {
			t.Fatal(err)
		}
		c.handleFrame(data, time.Now())
		c.bgWG.Wait()
	})
}

// Asterisk splits Stasis() arguments at commas: a dialed string with a comma
// must reach routing whole (and be refused there), never as its first part.
func TestStasisArgumentsKeepTheDialedString(t *testing.T) {
	c := offlineClient(t)
	for _, tc := range []struct {
		args         []string
		domain, want string
	}{
		{[]string{"from-sipp", "122099"}, "from-sipp", "122099"},
		{[]string{"from-sipp", "1000", "user/3998"}, "from-sipp", "1000,user/3998"},
		{[]string{"from-sipp", "1000", "", ""}, "from-sipp", "1000,,"},
	} {
		info := newCall(c, &channelData{ID: "caller-1", Exten: "x"}, tc.args, time.Now()).Info()
		if info.Domain != tc.domain || info.Dialed != tc.want {
			t.Errorf("args %q: domain %q dialed %q, want %q %q", tc.args, info.Domain, info.Dialed, tc.domain, tc.want)
		}
	}
}
