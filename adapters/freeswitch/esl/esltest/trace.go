package esltest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/callctl/callctl/adapters/freeswitch/esl"
)

// ReadTrace returns the frames of a recording of what FreeSWITCH sent (a
// .raw file of the traces), each owning its bytes.
func ReadTrace(path string) ([]esl.Frame, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rd := esl.NewReader(bytes.NewReader(b))
	rd.MaxBody = 64 << 20
	defer rd.Release()
	var out []esl.Frame
	for {
		f, err := rd.ReadFrame()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("%s: frame %d: %w", path, len(out), err)
		}
		out = append(out, f.Clone())
	}
}

// ChannelData returns the connect reply of an outbound recording: the first
// command/reply carrying a Unique-ID.
func ChannelData(frames []esl.Frame) (esl.Frame, bool) {
	for _, f := range frames {
		if f.ContentType() == esl.TypeReply && f.Header.Get("Unique-ID") != "" {
			return f, true
		}
	}
	return esl.Frame{}, false
}

// Events returns the event frames for which keep is true, in order.
func Events(frames []esl.Frame, keep func(ev *esl.Event) bool) []esl.Frame {
	var out []esl.Frame
	for i := range frames {
		ev, err := esl.ParseEvent(&frames[i])
		if err == nil && keep(&ev) {
			out = append(out, frames[i])
		}
	}
	return out
}

// Of keeps the events of channel uuid, optionally only those named names.
func Of(uuid string, names ...string) func(ev *esl.Event) bool {
	return func(ev *esl.Event) bool {
		if !ev.Is("Unique-ID", uuid) {
			return false
		}
		if len(names) == 0 {
			return true
		}
		for _, n := range names {
			if ev.Is("Event-Name", n) {
				return true
			}
		}
		return false
	}
}

// To addresses frames to a connection.
func To(c *Conn, frames ...esl.Frame) []Emit {
	out := make([]Emit, len(frames))
	for i, f := range frames {
		out[i] = Emit{To: c, Frame: f}
	}
	return out
}

// Event builds a plain event from "Name: value" pairs (values are
// URL-encoded as FreeSWITCH does).
func Event(headers ...string) esl.Frame {
	var b strings.Builder
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		b.WriteString(k + ": " + url.PathEscape(v) + "\n")
	}
	b.WriteString("\n")
	return esl.Frame{Header: esl.Headers("Content-Length: " + fmt.Sprint(b.Len()) + "\nContent-Type: text/event-plain"),
		Body: []byte(b.String())}
}

// Edit returns a copy of a plain event frame with headers ("Name: value",
// the value URL-encoded) set, replacing those of the same names.
func Edit(f esl.Frame, headers ...string) esl.Frame {
	ev, err := esl.ParseEvent(&f)
	if err != nil || ev.Headers == nil {
		panic(fmt.Sprintf("esltest: Edit of a frame that is not a plain event: %v", err))
	}
	set := map[string]string{}
	var order []string
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		set[strings.ToLower(k)] = url.PathEscape(v)
		order = append(order, k)
	}
	var b strings.Builder
	ev.Headers.Each(func(k, v []byte) bool {
		if _, ok := set[strings.ToLower(string(k))]; !ok {
			b.WriteString(string(k) + ": " + string(v) + "\n")
		}
		return true
	})
	for _, k := range order {
		b.WriteString(k + ": " + set[strings.ToLower(k)] + "\n")
	}
	b.WriteString("\n")
	return esl.Frame{Header: esl.Headers("Content-Length: " + fmt.Sprint(b.Len()) + "\nContent-Type: text/event-plain"),
		Body: []byte(b.String())}
}

// Notice builds a text/disconnect-notice (disposition "linger" or
// "disconnect").
func Notice(disposition string) esl.Frame {
	return esl.Frame{Header: esl.Headers("Content-Type: text/disconnect-notice\nContent-Disposition: " + disposition)}
}

// ConnectReply makes the connect reply of an outbound connection for the
// channel of a plain event (for a recording made on an inbound connection):
// the event's headers as channel data, then Content-Type and Reply-Text
// last, as FreeSWITCH writes them.
func ConnectReply(event esl.Frame) esl.Frame {
	ev, err := esl.ParseEvent(&event)
	if err != nil || ev.Headers == nil {
		panic(fmt.Sprintf("esltest: ConnectReply of a frame that is not a plain event: %v", err))
	}
	h := strings.TrimRight(string(ev.Headers), "\n") + "\nContent-Type: command/reply\nReply-Text: %2BOK%0A"
	return esl.Frame{Header: esl.Headers(h)}
}
