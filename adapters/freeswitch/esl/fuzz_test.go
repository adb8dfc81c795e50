package esl

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"testing/iotest"
)

// FuzzReadFrame feeds arbitrary bytes to the reader and the event parser: they
// may fail, never panic, and a failure is io.EOF or ErrMalformed.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte("Content-Type: auth/request\n\n"))
	f.Add([]byte("Content-Type: api/response\nContent-Length: 4\n\n+OK\n"))
	f.Add([]byte("Content-Length: 40\nContent-Type: text/event-plain\n\nEvent-Name: HEARTBEAT\nContent-Length: 2\n\nok"))
	f.Add([]byte("Content-Length: 30\nContent-Type: text/event-json\n\n{\"Event-Name\":\"X\",\"_body\":[1]}"))
	f.Add([]byte("Content-Type: api/response\nContent-Length: -1\n\n"))
	for _, file := range []string{"freeswitch/d3_outbound_socket_loopback_1000_bridge_201_busy.json.raw",
		"freeswitch/d1_outbound_socket_sipp_call_answer_hold.plain.raw",
		"freeswitch/c_inbound_originate_301_timeout5_no_answer.plain.raw"} {
		if data, err := os.ReadFile(tracesDir + "/" + file); err == nil {
			f.Add(data[:min(len(data), 4000)])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := readFuzzed(t, bytes.NewReader(data))
		// The same bytes a few at a time (a slow peer) give the same frames:
		// what the reader remembers between reads is right.
		slow := readFuzzed(t, iotest.HalfReader(iotest.OneByteReader(bytes.NewReader(data))))
		if len(whole) != len(slow) {
			t.Fatalf("%d frames read whole, %d read byte by byte", len(whole), len(slow))
		}
		for i := range whole {
			if !bytes.Equal(whole[i].Header, slow[i].Header) || !bytes.Equal(whole[i].Body, slow[i].Body) {
				t.Fatalf("frame %d differs read byte by byte:\n%q\n%q", i, whole[i].Header, slow[i].Header)
			}
		}
	})
}

// readFuzzed reads every frame of src with the fuzz target's limits, checking
// each, and returns copies of them.
func readFuzzed(t *testing.T, src io.Reader) []Frame {
	rd := NewReader(src)
	rd.MaxBody = 64 << 10
	defer rd.Release()
	var out []Frame
	for {
		fr, err := rd.ReadFrame()
		if err != nil {
			if err != io.EOF && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			return out
		}
		if len(fr.Body) > rd.MaxBody {
			t.Fatalf("body of %d bytes over the limit", len(fr.Body))
		}
		fr.Header.Each(func(name, value []byte) bool { return true })
		_ = fr.Header.Get("Reply-Text")
		if ev, err := ParseEvent(&fr); err == nil {
			_ = ev.Name()
			_ = ev.Get("Unique-ID")
			_ = ev.Sequence()
			_ = ev.Is("Application", "bridge")
		}
		out = append(out, fr.Clone())
	}
}
