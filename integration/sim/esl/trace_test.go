package esl

import (
	"bufio"
	"bytes"
	"fmt"
	"github.com/callctl/callctl/internal/labtest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The recorded FreeSWITCH transcripts live outside the repository.
var tracesDir = filepath.Join(labtest.TracesDir(), "freeswitch")

func traceDir(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(tracesDir); err != nil {
		labtest.Missing(t, "recorded traces not found at %s (%v): the fidelity test needs ../shared/traces", tracesDir, err)
	}
	return tracesDir
}

// sessionItem is one block of a .session file.
type sessionItem struct {
	dir  string // "C->S", "S->C" or "NOTE"
	at   time.Duration
	data []byte
	note string
}

var annotation = regexp.MustCompile(`^#### (C->S|S->C|NOTE) \+([0-9.]+)s(?: (\d+) bytes)?(.*)$`)

// parseSession reads a .session transcript. Each block starts with a
// "#### " annotation (direction, time, size, description; a description
// may span lines), and C->S/S->C blocks end with exactly their announced
// number of bytes, right before the next annotation.
func parseSession(path string) ([]sessionItem, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	starts := annotationStarts.FindAllIndex(b, -1)
	var out []sessionItem
	for k, st := range starts {
		end := len(b)
		if k+1 < len(starts) {
			end = starts[k+1][0]
		}
		block := b[st[0]:end]
		nl := bytes.IndexByte(block, '\n')
		if nl < 0 {
			nl = len(block)
		}
		m := annotation.FindStringSubmatch(string(block[:nl]))
		if m == nil {
			return nil, fmt.Errorf("%s: bad annotation %q", path, block[:nl])
		}
		secs, _ := strconv.ParseFloat(m[2], 64)
		it := sessionItem{dir: m[1], at: time.Duration(secs * float64(time.Second))}
		if m[1] == "NOTE" {
			it.note = strings.TrimSpace(m[4])
			out = append(out, it)
			continue
		}
		n, _ := strconv.Atoi(m[3])
		if n > len(block)-nl-1 {
			return nil, fmt.Errorf("%s: block of %d bytes is longer than its text", path, n)
		}
		it.data = block[len(block)-n:]
		out = append(out, it)
	}
	return out, nil
}

var annotationStarts = regexp.MustCompile(`#### (?:C->S|S->C|NOTE) \+[0-9.]+s`)

// parseRaw splits a .raw capture into frames.
func parseRaw(path string) ([]*frame, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReader(bytes.NewReader(b))
	var out []*frame
	for {
		f, err := readFrame(r)
		if err != nil {
			if len(out) > 0 && strings.Contains(err.Error(), "EOF") {
				return out, nil
			}
			return out, err
		}
		out = append(out, f)
	}
}

// recording is one connection of a scenario: what the client sent (with
// how many frames it had received before), what FreeSWITCH sent.
type recording struct {
	name     string
	frames   []*frame
	frameAt  []time.Duration
	commands []recordedCommand
	// closedByServer: the transcript ends with FreeSWITCH closing
	closedByServer bool
}

type recordedCommand struct {
	text   string
	at     time.Duration
	after  int // frames received before it
	lastAt time.Duration
}

func loadRecording(t *testing.T, base string) *recording {
	t.Helper()
	dir := traceDir(t)
	items, err := parseSession(filepath.Join(dir, base+".session"))
	if err != nil {
		t.Fatal(err)
	}
	frames, err := parseRaw(filepath.Join(dir, base+".raw"))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recording{name: base, frames: frames}
	received := 0
	var lastAt time.Duration
	var sent bytes.Buffer
	for _, it := range items {
		switch it.dir {
		case "S->C":
			sent.Write(it.data)
			received++
			lastAt = it.at
			rec.frameAt = append(rec.frameAt, it.at)
		case "C->S":
			rec.commands = append(rec.commands, recordedCommand{text: string(it.data), at: it.at, after: received, lastAt: lastAt})
		}
	}
	raw, _ := os.ReadFile(filepath.Join(dir, base+".raw"))
	if !bytes.Equal(raw, sent.Bytes()) {
		t.Fatalf("%s: the S->C blocks of the session are not the .raw capture", base)
	}
	if received != len(frames) {
		t.Fatalf("%s: %d frames in the session, %d in the .raw", base, received, len(frames))
	}
	if n := len(frames); n > 0 && frames[n-1].contentType() == "text/disconnect-notice" && frames[n-1].get("Content-Disposition") != "linger" {
		rec.closedByServer = true
	}
	return rec
}

func TestParseTraces(t *testing.T) {
	dir := traceDir(t)
	matches, _ := filepath.Glob(filepath.Join(dir, "*.session"))
	if len(matches) < 11 {
		t.Fatalf("expected the 11 FreeSWITCH transcripts, found %d", len(matches))
	}
	for _, m := range matches {
		base := strings.TrimSuffix(filepath.Base(m), ".session")
		rec := loadRecording(t, base)
		events := 0
		for _, f := range rec.frames {
			if f.event != nil {
				events++
				if f.ev("Event-Name") == "" {
					t.Errorf("%s: event without Event-Name", base)
				}
			}
		}
		if events == 0 || len(rec.commands) == 0 {
			t.Errorf("%s: %d events, %d commands", base, events, len(rec.commands))
		}
	}
}
