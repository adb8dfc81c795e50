package esl

import (
	"bufio"
	"bytes"
	"errors"
	"github.com/callctl/callctl/internal/labtest"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// The recorded transcripts of real FreeSWITCH 1.10 servers live outside the
// repository (see ../shared/traces/README.md); tests that need them skip
// when they are absent.
var tracesDir = labtest.TracesDir()

func rawTraces(t testing.TB) []string {
	t.Helper()
	var files []string
	for _, dir := range []string{"freeswitch", "transfers/freeswitch"} {
		m, _ := filepath.Glob(filepath.Join(tracesDir, dir, "*.raw"))
		files = append(files, m...)
	}
	if len(files) == 0 {
		labtest.Missing(t, "no recorded FreeSWITCH transcripts under %s", tracesDir)
	}
	return files
}

func readAll(t testing.TB, src io.Reader) ([]Frame, error) {
	t.Helper()
	rd := NewReader(src)
	defer rd.Release()
	var out []Frame
	for {
		f, err := rd.ReadFrame()
		if err != nil {
			return out, err
		}
		out = append(out, f.Clone())
	}
}

// summaryLine matches one frame of a .summary.txt: index, then content type
// or "event NAME".
var summaryLine = regexp.MustCompile(`^\s*(\d+) (\S+)(?: (\S+))?`)

// TestTracesFrameByFrame reads every recorded stream and checks each frame's
// content type (and event name) against the recorder's own summary.
func TestTracesFrameByFrame(t *testing.T) {
	for _, file := range rawTraces(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			frames, err := readAll(t, bytes.NewReader(data))
			if err != io.EOF {
				t.Fatalf("after %d frames: %v", len(frames), err)
			}
			sum, err := os.ReadFile(strings.TrimSuffix(file, ".raw") + ".summary.txt")
			if err != nil {
				labtest.Missing(t, "no summary: %v", err)
			}
			var want [][2]string
			sc := bufio.NewScanner(bytes.NewReader(sum))
			for sc.Scan() {
				m := summaryLine.FindStringSubmatch(sc.Text())
				if m == nil || m[1] != strconv.Itoa(len(want)) {
					continue
				}
				want = append(want, [2]string{m[2], m[3]})
			}
			if len(want) == 0 {
				t.Fatal("summary lists no frames")
			}
			if len(frames) != len(want) {
				t.Fatalf("read %d frames, the summary lists %d", len(frames), len(want))
			}
			for i, f := range frames {
				ct := f.ContentType()
				if want[i][0] != "event" {
					if ct != want[i][0] {
						t.Errorf("frame %d: Content-Type %q, summary says %q", i, ct, want[i][0])
					}
					continue
				}
				ev, err := ParseEvent(&f)
				if err != nil {
					t.Fatalf("frame %d (%s): %v", i, ct, err)
				}
				if got := ev.Name(); got != want[i][1] {
					t.Errorf("frame %d: event %q, summary says %q", i, got, want[i][1])
				}
			}
		})
	}
}

// TestTracesByteByByte reads the streams one byte per Read call: the frames
// must be the same as with whole reads (a socket may split anywhere).
func TestTracesByteByByte(t *testing.T) {
	for _, file := range rawTraces(t)[:4] {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		whole, err1 := readAll(t, bytes.NewReader(data))
		bytewise, err2 := readAll(t, iotest.OneByteReader(bytes.NewReader(data)))
		if err1 != io.EOF || err2 != io.EOF {
			t.Fatalf("%s: errors %v / %v", file, err1, err2)
		}
		if len(whole) != len(bytewise) {
			t.Fatalf("%s: %d frames whole, %d byte by byte", file, len(whole), len(bytewise))
		}
		for i := range whole {
			if !bytes.Equal(whole[i].Header, bytewise[i].Header) || !bytes.Equal(whole[i].Body, bytewise[i].Body) {
				t.Fatalf("%s: frame %d differs", file, i)
			}
		}
	}
}

// TestTracesPrefixes cuts every stream at many points: the reader returns the
// complete frames before the cut and then io.EOF (cut between frames) or an
// ErrMalformed error (cut inside one), never anything else, never a panic.
func TestTracesPrefixes(t *testing.T) {
	for _, file := range rawTraces(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		full, _ := readAll(t, bytes.NewReader(data))
		step := len(data)/300 + 1
		for cut := 0; cut < len(data); cut += step {
			frames, err := readAll(t, bytes.NewReader(data[:cut]))
			if err != io.EOF && !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s cut at %d: unexpected error %v", file, cut, err)
			}
			if len(frames) > len(full) {
				t.Fatalf("%s cut at %d: more frames than the whole stream", file, cut)
			}
			for i := range frames {
				if !bytes.Equal(frames[i].Header, full[i].Header) {
					t.Fatalf("%s cut at %d: frame %d differs", file, cut, i)
				}
			}
		}
	}
}

func TestConnectReplyChannelData(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(tracesDir, "freeswitch", "f_fs2_outbound_socket_call_from_fs1_over_sip.plain.raw"))
	if err != nil {
		labtest.Missing(t, "trace not available: %v", err)
	}
	rd := NewReader(bytes.NewReader(data))
	f, err := rd.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	h := f.Header
	if ct := f.ContentType(); ct != TypeReply {
		t.Fatalf("connect reply Content-Type %q", ct)
	}
	// Reply-Text comes URL-encoded at the end of the channel data.
	if got := h.Get("Reply-Text"); got != "+OK\n" {
		t.Errorf("Reply-Text %q", got)
	}
	for name, want := range map[string]string{
		"FreeSWITCH-Switchname":     "fs2",
		"Caller-Context":            "public",
		"Channel-Name":              "sofia/internal/0000000000@127.0.0.1",
		"Caller-Destination-Number": "1000",
		"Socket-Mode":               "async",
		"Control":                   "full",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if h.Get("Unique-ID") == "" || h.Get("variable_sip_network_ip") != "127.0.0.1" {
		t.Errorf("Unique-ID %q, sip_network_ip %q", h.Get("Unique-ID"), h.Get("variable_sip_network_ip"))
	}
}

func TestBackgroundJobBodies(t *testing.T) {
	cases := map[string]string{
		"c_inbound_originate_301_timeout5_no_answer.plain.raw":     "-ERR NO_ANSWER\n",
		"e_inbound_originate_401_failure.plain.raw":                "-ERR NORMAL_TEMPORARY_FAILURE\n",
		"a2_inbound_bgapi_originate_101_client_uuid_kill.json.raw": "+OK 0f5b0071-121d-4e81-818b-897d167176de\n",
	}
	for file, want := range cases {
		data, err := os.ReadFile(filepath.Join(tracesDir, "freeswitch", file))
		if err != nil {
			labtest.Missing(t, "trace not available: %v", err)
		}
		frames, _ := readAll(t, bytes.NewReader(data))
		found := false
		for i := range frames {
			ct := frames[i].ContentType()
			if ct != TypeEventPlain && ct != TypeEventJSON {
				continue
			}
			ev, err := ParseEvent(&frames[i])
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if ev.Name() != "BACKGROUND_JOB" {
				continue
			}
			found = true
			if string(ev.Body) != want {
				t.Errorf("%s: BACKGROUND_JOB body %q, want %q", file, ev.Body, want)
			}
			if ev.Get("Job-UUID") == "" {
				t.Errorf("%s: BACKGROUND_JOB without Job-UUID", file)
			}
		}
		if !found {
			t.Errorf("%s: no BACKGROUND_JOB", file)
		}
	}
}

func TestBridgeFailureVariables(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(tracesDir, "freeswitch", "b3_inbound_sendmsg_bridge_201_busy_continue_on_fail.plain.raw"))
	if err != nil {
		labtest.Missing(t, "trace not available: %v", err)
	}
	frames, _ := readAll(t, bytes.NewReader(data))
	for i := range frames {
		if frames[i].ContentType() != TypeEventPlain {
			continue
		}
		ev, err := ParseEvent(&frames[i])
		if err != nil {
			t.Fatal(err)
		}
		if !ev.Is("Event-Name", "CHANNEL_EXECUTE_COMPLETE") || !ev.Is("Application", "bridge") {
			continue
		}
		for name, want := range map[string]string{
			"variable_originate_disposition":    "USER_BUSY",
			"variable_DIALSTATUS":               "BUSY",
			"variable_last_bridge_hangup_cause": "USER_BUSY",
			"variable_originate_failed_cause":   "USER_BUSY",
			"Application-Data":                  "loopback/201/targets",
		} {
			if got := ev.Get(name); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
		return
	}
	t.Fatal("no bridge CHANNEL_EXECUTE_COMPLETE in b3")
}

func TestMalformedLengths(t *testing.T) {
	for _, in := range []string{
		"Content-Type: api/response\nContent-Length: -1\n\n",
		"Content-Type: api/response\nContent-Length: 99999999999999999999\n\n",
		"Content-Type: api/response\nContent-Length: 12x\n\n",
		"Content-Type: api/response\nContent-Length: 2000000\n\n",
		"Content-Type: api/response\nContent-Length: \n\n",
	} {
		_, err := readAll(t, strings.NewReader(in))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: error %v, want ErrMalformed", in, err)
		}
	}
	// A header block that never ends is refused once over the limit.
	rd := NewReader(strings.NewReader("X: " + strings.Repeat("a", DefaultMaxHeader+10)))
	if _, err := rd.ReadFrame(); !errors.Is(err, ErrMalformed) {
		t.Errorf("endless header: %v", err)
	}
}

func TestCRLFAndBlankLines(t *testing.T) {
	in := "\n\r\nContent-Type: api/response\r\nContent-Length: 3\r\n\r\n+OK\n\nContent-Type: command/reply\nReply-Text: +OK bye\n\n"
	frames, err := readAll(t, strings.NewReader(in))
	if err != io.EOF || len(frames) != 2 {
		t.Fatalf("%d frames, %v", len(frames), err)
	}
	if string(frames[0].Body) != "+OK" || frames[0].ContentType() != TypeAPIResponse {
		t.Errorf("frame 0: %q %q", frames[0].ContentType(), frames[0].Body)
	}
	if frames[1].Header.Raw("Reply-Text") != "+OK bye" {
		t.Errorf("frame 1 Reply-Text %q", frames[1].Header.Raw("Reply-Text"))
	}
}

func TestLargeFrameGrowsAndIdleReleases(t *testing.T) {
	body := strings.Repeat("x", 300<<10)
	in := "Content-Type: api/response\nContent-Length: 307200\n\n" + body + "Content-Type: command/reply\nReply-Text: +OK\n\n"
	rd := NewReader(strings.NewReader(in))
	f, err := rd.ReadFrame()
	if err != nil || len(f.Body) != len(body) {
		t.Fatalf("large frame: %d bytes, %v", len(f.Body), err)
	}
	f, err = rd.ReadFrame()
	if err != nil || f.Header.Raw("Reply-Text") != "+OK" {
		t.Fatalf("frame after the large one: %v", err)
	}
	if _, err := rd.ReadFrame(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if rd.pooled != nil || len(rd.buf) != idleBufSize {
		t.Errorf("an idle reader still holds a %d-byte buffer", len(rd.buf))
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		"%2BOK%0A":          "+OK\n",
		"fd00%3A%3A2":       "fd00::2",
		"100%":              "100%",
		"50%zz":             "50%zz",
		"a+b":               "a+b",
		"Outbound%20Call":   "Outbound Call",
		"%e2%82%ac":         "€",
		"plain":             "plain",
		"%":                 "%",
		"%4":                "%4",
		"Sun,%2022%20Nov%2": "Sun, 22 Nov%2",
	} {
		if got := Unescape([]byte(in)); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}
