package esl

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadCommand(t *testing.T) {
	in := "\r\n\nauth ClueCon\n\n" +
		"sendmsg 1234\r\ncall-command: execute\r\nexecute-app-name: playback\r\nContent-Length: 5\r\n\r\nhello" +
		"api status\n\n" +
		"bgapi originate user/1000 &park()\nJob-UUID: abc\n\n" +
		"no-colon-line\nbroken header\nX:  spaced\n\n"
	r := bufio.NewReader(strings.NewReader(in))
	c, err := readCommand(r)
	if err != nil || c.line != "auth ClueCon" || len(c.headers) != 0 {
		t.Fatalf("auth: %+v %v", c, err)
	}
	c, err = readCommand(r)
	if err != nil || c.line != "sendmsg 1234" || c.get("CALL-COMMAND") != "execute" || c.get("execute-app-name") != "playback" || c.body != "hello" {
		t.Fatalf("sendmsg: %+v %v", c, err)
	}
	c, _ = readCommand(r)
	if c.line != "api status" {
		t.Fatalf("api: %+v", c)
	}
	c, _ = readCommand(r)
	if c.get("Job-UUID") != "abc" {
		t.Fatalf("bgapi: %+v", c)
	}
	c, _ = readCommand(r)
	if c.line != "no-colon-line" || len(c.headers) != 1 || c.get("X") != "spaced" {
		t.Fatalf("tolerant parse: %+v", c)
	}
	if _, err := readCommand(r); err == nil {
		t.Fatal("read past the end")
	}
}

func TestReadCommandRejectsHugeAndBadFrames(t *testing.T) {
	huge := "api " + strings.Repeat("x", maxFrameLen+10) + "\n\n"
	if _, err := readCommand(bufio.NewReader(strings.NewReader(huge))); !errors.Is(err, errFrameTooLong) {
		t.Fatalf("huge line: %v", err)
	}
	body := "sendmsg\nContent-Length: 99999999999\n\n"
	if _, err := readCommand(bufio.NewReader(strings.NewReader(body))); err == nil {
		t.Fatal("absurd content-length accepted")
	}
	if _, err := readCommand(bufio.NewReader(strings.NewReader("sendmsg\nContent-Length: -3\n\n"))); err == nil {
		t.Fatal("negative content-length accepted")
	}
	if _, err := readCommand(bufio.NewReader(strings.NewReader("sendmsg\nContent-Length: 10\n\nshort"))); err == nil {
		t.Fatal("truncated body accepted")
	}
}

func TestURLEncodeLikeFreeSWITCH(t *testing.T) {
	for in, want := range map[string]string{
		"tone_stream://%(500,500,440);loops=-1": "tone_stream%3A//%25(500,500,440)%3Bloops%3D-1",
		"127.0.0.1:18084 async full":            "127.0.0.1%3A18084%20async%20full",
		"sipp <sip:sipp@127.0.0.1:5090>;tag=1":  "sipp%20%3Csip%3Asipp%40127.0.0.1%3A5090%3E%3Btag%3D1",
		"already%20encoded %2b":                 "already%20encoded%20%252b",
		"+OK\n":                                 "%2BOK%0A",
		"ARRAY::1000|:1000":                     "ARRAY%3A%3A1000%7C%3A1000",
		"plain-value_1.2/3,(x)*!~$":             "plain-value_1.2/3,(x)*!~$",
		"é":                                     "%C3%A9",
		`"Outbound Call" <targets>`:             "%22Outbound%20Call%22%20%3Ctargets%3E",
		"{origination_uuid=x}loopback/101/targets &park()": "%7Borigination_uuid%3Dx%7Dloopback/101/targets%20%26park()",
	} {
		if got := urlEncode(in); got != want {
			t.Errorf("urlEncode(%q) = %q, want %q", in, got, want)
		}
		if want != "already%20encoded%20%252b" {
			if back := urlDecode(urlEncode(in)); back != in {
				t.Errorf("round trip of %q gave %q", in, back)
			}
		}
	}
}

func TestJSONStringLikeCJSON(t *testing.T) {
	got := string(appendJSONString(nil, "a\"b\\c\n\r\t\x01/<é>&"))
	want := `"a\"b\\c\n\r\t\u0001/<é>&"`
	if got != want {
		t.Fatalf("got %s want %s", got, want)
	}
	var back string
	if err := json.Unmarshal([]byte(got), &back); err != nil || back != "a\"b\\c\n\r\t\x01/<é>&" {
		t.Fatalf("not valid JSON: %v %q", err, back)
	}
}

// TestEncoderMatchesRecordedBytes re-encodes every event FreeSWITCH sent
// in the transcripts from its decoded headers and expects the very same
// bytes: url encoding, header layout, bodies, JSON.
func TestEncoderMatchesRecordedBytes(t *testing.T) {
	dir := traceDir(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*.raw"))
	more, _ := filepath.Glob(filepath.Join(dir, "../transfers/freeswitch/*.raw"))
	files = append(files, more...)
	checked := 0
	for _, path := range files {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(strings.NewReader(string(raw)))
		for {
			hdr, body, err := rawFrame(r)
			if err != nil {
				break
			}
			ct := headerValue(hdr, "Content-Type")
			var e *fsEvent
			var got []byte
			switch {
			case ct == "text/event-plain":
				e = plainToEvent(t, body)
				got = e.serializePlain()
			case ct == "text/event-json":
				e = jsonToEvent(t, body)
				got = e.serializeJSON()
			case ct == "command/reply" && headerValue(hdr, "Event-Name") != "":
				// the connect reply: its header block is a serialized event
				e = &fsEvent{}
				for _, h := range hdr {
					e.headers = append(e.headers, header{h.name, urlDecode(h.value)})
				}
				body = serializeHeaderBlock(hdr)
				got = e.serializePlain()
			default:
				continue
			}
			if string(got) != body {
				t.Errorf("%s: %s re-encoded differently:\nrecorded:\n%s\nencoded:\n%s", filepath.Base(path), ct, body, got)
				return
			}
			if ct != "command/reply" {
				framed := frameEvent(strings.TrimPrefix(ct, "text/event-"), got)
				if !strings.Contains(string(raw), string(framed)) {
					t.Errorf("%s: framing differs for an event", filepath.Base(path))
				}
			}
			checked++
		}
	}
	if checked < 500 {
		t.Fatalf("only %d events checked", checked)
	}
	t.Logf("%d recorded events re-encoded byte for byte", checked)
}

func rawFrame(r *bufio.Reader) ([]header, string, error) {
	var hdr []header
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, "", err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if len(hdr) == 0 {
				continue
			}
			break
		}
		n, v, _ := strings.Cut(line, ": ")
		hdr = append(hdr, header{n, v})
	}
	if cl := headerValue(hdr, "Content-Length"); cl != "" {
		var n int
		for _, c := range cl {
			n = n*10 + int(c-'0')
		}
		b := make([]byte, n)
		if _, err := ioReadFull(r, b); err != nil {
			return nil, "", err
		}
		return hdr, string(b), nil
	}
	return hdr, "", nil
}

func headerValue(hdr []header, name string) string {
	for _, h := range hdr {
		if h.name == name {
			return h.value
		}
	}
	return ""
}

func serializeHeaderBlock(hdr []header) string {
	var b strings.Builder
	for _, h := range hdr {
		b.WriteString(h.name + ": " + h.value + "\n")
	}
	b.WriteString("\n")
	return b.String()
}

func plainToEvent(t *testing.T, body string) *fsEvent {
	e := &fsEvent{}
	block, rest, _ := strings.Cut(body, "\n\n")
	for _, line := range strings.Split(block, "\n") {
		n, v, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("bad event line %q", line)
		}
		if n == "Content-Length" {
			e.hasBody = true
			e.body = rest
			continue
		}
		e.headers = append(e.headers, header{n, urlDecode(v)})
	}
	return e
}

func jsonToEvent(t *testing.T, body string) *fsEvent {
	e := &fsEvent{}
	dec := json.NewDecoder(strings.NewReader(body))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		name := k.(string)
		var value string
		switch x := v.(type) {
		case string:
			value = x
		case []any:
			parts := make([]string, len(x))
			for i, p := range x {
				parts[i], _ = p.(string)
			}
			value = "ARRAY::" + strings.Join(parts, "|:")
		default:
			t.Fatalf("unexpected JSON value %v for %s", v, name)
		}
		switch name {
		case "Content-Length":
		case "_body":
			e.hasBody, e.body = true, value
		default:
			e.headers = append(e.headers, header{name, value})
		}
	}
	return e
}

func TestParseDialString(t *testing.T) {
	ds, err := parseDialString("{origination_uuid=abc,sip_h_X-A='a,b'}[leg_timeout=5]user/2001,[x=1]user/2002|sofia/gateway/pstn/+4930:_:loopback/101/targets")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.global) != 2 || ds.global[1].value != "a,b" {
		t.Fatalf("globals %+v", ds.global)
	}
	if len(ds.groups) != 2 || len(ds.groups[0]) != 2 || len(ds.groups[1]) != 2 {
		t.Fatalf("groups %+v", ds.groups)
	}
	if g := ds.groups[0]; g[0].endpoint != "user/2001" || g[0].vars[0].name != "leg_timeout" || g[1].vars[0].value != "1" {
		t.Fatalf("first group %+v", g)
	}
	if g := ds.groups[1]; g[0].endpoint != "sofia/gateway/pstn/+4930" || g[1].endpoint != "loopback/101/targets" {
		t.Fatalf("second group %+v", g)
	}
	ds, err = parseDialString("{^^:a=1,2:b=3}user/1")
	if err != nil || len(ds.global) != 2 || ds.global[0].value != "1,2" {
		t.Fatalf("custom delimiter: %+v %v", ds, err)
	}
	for _, bad := range []string{"", "   ", "{a=1", "[x=1", "{a=1}", "|,|"} {
		if _, err := parseDialString(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got := splitArgs("{a='x y'}loopback/1/targets &socket(127.0.0.1:1 async full) XML default"); len(got) != 4 || got[1] != "&socket(127.0.0.1:1 async full)" {
		t.Fatalf("splitArgs %q", got)
	}
}

func TestFilters(t *testing.T) {
	ev := &fsEvent{name: "CHANNEL_ANSWER", headers: []header{{"Event-Name", "CHANNEL_ANSWER"}, {"Unique-ID", "u1"}, {"Channel-Name", "sofia/internal/2000@x"}}}
	cases := []struct {
		filters []filter
		want    bool
	}{
		{nil, true},
		{[]filter{{name: "Unique-ID", value: "u1"}}, true},
		{[]filter{{name: "Unique-ID", value: "u2"}}, false},
		{[]filter{{name: "Unique-ID", value: "u2"}, {name: "Event-Name", value: "channel_answer"}}, true},
		{[]filter{{name: "Event-Name", value: "CHANNEL_ANSWER"}, {name: "Unique-ID", value: "-u1"}}, false},
		{[]filter{{name: "Missing", value: "x"}}, false},
	}
	for i, c := range cases {
		sub := subscription{enabled: true, all: true, filters: c.filters}
		if got := sub.wants(ev); got != c.want {
			t.Errorf("case %d: %v, want %v", i, got, c.want)
		}
	}
	sub := subscription{enabled: true, names: map[string]bool{"CHANNEL_HANGUP": true}}
	if sub.wants(ev) {
		t.Error("event not subscribed to was wanted")
	}
	sub = subscription{enabled: true, all: true, myevents: true, uuid: "u2"}
	if sub.wants(ev) {
		t.Error("myevents let another channel's event through")
	}
}
