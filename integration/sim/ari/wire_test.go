package ari

import (
	"bufio"
	"bytes"
	"encoding/json"
	"github.com/callctl/callctl/internal/labtest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// tracesDir is where the recorded transcripts live (../shared/traces).
var tracesDir = labtest.TracesDir()

func traceFile(t testing.TB, parts ...string) string {
	t.Helper()
	p := filepath.Join(append([]string{tracesDir}, parts...)...)
	if _, err := os.Stat(p); err != nil {
		labtest.Missing(t, "recorded traces not available (%s): %v", p, err)
	}
	return p
}

// Test-side decoding of the trace JSON, written independently of the
// encoders under test.
type jParty struct {
	Name   string `json:"name"`
	Number string `json:"number"`
}

type jChannel struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	State       string `json:"state"`
	ProtocolID  string `json:"protocol_id"`
	Caller      jParty `json:"caller"`
	Connected   jParty `json:"connected"`
	AccountCode string `json:"accountcode"`
	Dialplan    struct {
		Context  string `json:"context"`
		Exten    string `json:"exten"`
		Priority int    `json:"priority"`
		AppName  string `json:"app_name"`
		AppData  string `json:"app_data"`
	} `json:"dialplan"`
	CreationTime string `json:"creationtime"`
	Language     string `json:"language"`
}

type jBridge struct {
	ID           string   `json:"id"`
	Technology   string   `json:"technology"`
	BridgeType   string   `json:"bridge_type"`
	BridgeClass  string   `json:"bridge_class"`
	Creator      string   `json:"creator"`
	Name         string   `json:"name"`
	Channels     []string `json:"channels"`
	CreationTime string   `json:"creationtime"`
	VideoMode    string   `json:"video_mode"`
}

type jEvent struct {
	Type           string    `json:"type"`
	Timestamp      string    `json:"timestamp"`
	AsteriskID     string    `json:"asterisk_id"`
	Application    string    `json:"application"`
	Channel        *jChannel `json:"channel"`
	Peer           *jChannel `json:"peer"`
	Caller         *jChannel `json:"caller"`
	ReplaceChannel *jChannel `json:"replace_channel"`
	Transferee     *jChannel `json:"transferee"`
	Bridge         *jBridge  `json:"bridge"`
	Args           []string  `json:"args"`
	Cause          *int      `json:"cause"`
	CauseTxt       string    `json:"cause_txt"`
	Soft           *bool     `json:"soft"`
	DialStatus     *string   `json:"dialstatus"`
	Forward        string    `json:"forward"`
	DialString     string    `json:"dialstring"`
	DialplanApp    string    `json:"dialplan_app"`
	DialplanData   string    `json:"dialplan_app_data"`
	Variable       string    `json:"variable"`
	Value          string    `json:"value"`
	CallerPres     int       `json:"caller_presentation"`
	Exten          string    `json:"exten"`
	Context        string    `json:"context"`
	Result         string    `json:"result"`
	IsExternal     bool      `json:"is_external"`
	State          string    `json:"state"`
	ReferTo        *struct {
		RequestedDestination struct {
			Destination string `json:"destination"`
		} `json:"requested_destination"`
	} `json:"refer_to"`
	ReferredBy *struct {
		SourceChannel    *jChannel `json:"source_channel"`
		ConnectedChannel *jChannel `json:"connected_channel"`
		Bridge           *jBridge  `json:"bridge"`
	} `json:"referred_by"`
}

func parseTS(t testing.TB, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(tsLayout, s)
	if err != nil {
		t.Fatalf("timestamp %q: %v", s, err)
	}
	return ts
}

func snapOf(t testing.TB, c *jChannel) *chanSnap {
	if c == nil {
		return nil
	}
	return &chanSnap{
		ID: c.ID, Name: c.Name, State: c.State, ProtocolID: c.ProtocolID,
		Caller:      party{c.Caller.Name, c.Caller.Number},
		Connected:   party{c.Connected.Name, c.Connected.Number},
		AccountCode: c.AccountCode,
		Dialplan: cep{Context: c.Dialplan.Context, Exten: c.Dialplan.Exten, Priority: c.Dialplan.Priority,
			AppName: c.Dialplan.AppName, AppData: c.Dialplan.AppData},
		Created:  parseTS(t, c.CreationTime),
		Language: c.Language,
	}
}

func bridgeOf(t testing.TB, b *jBridge) *bridgeSnap {
	if b == nil {
		return nil
	}
	return &bridgeSnap{ID: b.ID, Technology: b.Technology, Type: b.BridgeType, Class: b.BridgeClass,
		Creator: b.Creator, Name: b.Name, Channels: b.Channels, Created: parseTS(t, b.CreationTime), VideoMode: b.VideoMode}
}

// reencode rebuilds an event frame from its decoded fields with the
// simulator's encoders. ok is false for event types the simulator never
// sends.
func reencode(t testing.TB, e *jEvent) (out []byte, ok bool) {
	ts := parseTS(t, e.Timestamp)
	var b []byte
	switch e.Type {
	case "StasisEnd", "ChannelCreated", "ChannelStateChange", "ChannelConnectedLine", "ChannelUnhold", "ChannelHold":
		b = encChannelEvent(nil, e.Type, ts, snapOf(t, e.Channel))
	case "StasisStart":
		b = encStasisStart(nil, ts, e.Args, snapOf(t, e.Channel), snapOf(t, e.ReplaceChannel))
	case "ChannelCallerId":
		b = encCallerID(nil, ts, e.CallerPres, snapOf(t, e.Channel))
	case "ChannelDialplan":
		b = encDialplan(nil, ts, e.DialplanApp, e.DialplanData, snapOf(t, e.Channel))
	case "ChannelVarset":
		b = encVarset(nil, ts, e.Variable, e.Value, snapOf(t, e.Channel))
	case "ChannelHangupRequest":
		hr := hangupRequest{}
		if e.Cause != nil {
			hr.HasCause, hr.Cause = true, *e.Cause
		}
		if e.Soft != nil {
			hr.Soft = *e.Soft
		}
		b = encHangupRequest(nil, ts, hr, snapOf(t, e.Channel))
	case "ChannelDestroyed":
		if causeText(*e.Cause) != e.CauseTxt {
			t.Errorf("cause %d: text %q, trace says %q", *e.Cause, causeText(*e.Cause), e.CauseTxt)
		}
		b = encDestroyed(nil, ts, *e.Cause, snapOf(t, e.Channel))
	case "Dial":
		b = encDial(nil, ts, snapOf(t, e.Caller), *e.DialStatus, e.Forward, e.DialString, snapOf(t, e.Peer))
	case "ChannelEnteredBridge", "ChannelLeftBridge":
		b = encBridgeChannel(nil, e.Type, ts, bridgeOf(t, e.Bridge), snapOf(t, e.Channel))
	case "BridgeCreated", "BridgeDestroyed":
		b = encBridgeEvent(nil, e.Type, ts, bridgeOf(t, e.Bridge))
	case "BridgeBlindTransfer":
		b = encBlindTransfer(nil, ts, &blindTransfer{
			Transferer: snapOf(t, e.Channel), Exten: e.Exten, Context: e.Context, Result: e.Result,
			External: e.IsExternal, Transferee: snapOf(t, e.Transferee), Replace: snapOf(t, e.ReplaceChannel),
			Bridge: bridgeOf(t, e.Bridge),
		})
	case "ChannelTransfer":
		if e.ReferTo == nil || e.ReferredBy == nil {
			return nil, false
		}
		b = encChannelTransfer(nil, ts, &channelTransfer{
			Destination: e.ReferTo.RequestedDestination.Destination,
			Source:      snapOf(t, e.ReferredBy.SourceChannel),
			Connected:   snapOf(t, e.ReferredBy.ConnectedChannel),
			Bridge:      bridgeOf(t, e.ReferredBy.Bridge),
			State:       e.State,
		})
	default:
		return nil, false
	}
	return finishEvent(nil, b, e.AsteriskID, e.Application), true
}

// TestEncodersReproduceRecordedFrames re-encodes every recorded frame of a
// type the simulator emits and requires the exact bytes Asterisk sent.
func TestEncodersReproduceRecordedFrames(t *testing.T) {
	dir := traceFile(t, "asterisk")
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	// The blind-transfer ari-only trace has ChannelTransfer frames; the
	// core one BridgeBlindTransfer and replace_channel.
	for _, extra := range []string{
		"ast1_case3_blind_refer_core_subscribeAll_false.jsonl",
		"ast1_case3_blind_refer_ari-only_subscribeAll_false.jsonl",
	} {
		files = append(files, filepath.Join(tracesDir, "transfers", "asterisk", extra))
	}
	seen := map[string]int{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatalf("open %s: %v", f, err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		line := 0
		for sc.Scan() {
			line++
			raw := bytes.TrimSpace(sc.Bytes())
			if len(raw) == 0 {
				continue
			}
			var e jEvent
			if err := json.Unmarshal(raw, &e); err != nil {
				t.Fatalf("%s:%d: %v", f, line, err)
			}
			got, ok := reencode(t, &e)
			if !ok {
				continue
			}
			seen[e.Type]++
			if !bytes.Equal(got, raw) {
				t.Errorf("%s:%d %s:\n got %s\nwant %s", filepath.Base(f), line, e.Type, got, raw)
			}
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
	}
	for _, typ := range []string{"StasisStart", "StasisEnd", "ChannelDestroyed", "ChannelHangupRequest", "Dial",
		"ChannelVarset", "ChannelDialplan", "ChannelCallerId", "ChannelEnteredBridge", "BridgeDestroyed",
		"BridgeBlindTransfer", "ChannelTransfer"} {
		if seen[typ] == 0 {
			t.Errorf("no recorded %s frame was checked", typ)
		}
	}
}

func TestAppendStringEscapes(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote\back`, "ctl\x00\x1f\n\t\r", "utf8 ✓ é", "bad\xffbyte", "<sip:a@b>"} {
		got := appendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q encoded as invalid JSON %s: %v", s, got, err)
		}
		want := s
		if s == "bad\xffbyte" {
			want = "bad\ufffdbyte"
		}
		if back != want {
			t.Errorf("%q round-tripped to %q", s, back)
		}
	}
}
