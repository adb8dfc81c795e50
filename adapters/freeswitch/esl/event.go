package esl

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Event is a FreeSWITCH event. A plain event keeps its header block (values
// URL-encoded, decoded on access) and points into the frame it came from; a
// JSON event owns a map. Either way Get returns decoded values.
type Event struct {
	// Headers is the header block of a plain event (nil for JSON).
	Headers Headers
	fields  map[string]string
	// Body is the event's own body (BACKGROUND_JOB: the api output).
	Body []byte
}

// ParseEvent parses the event carried by a text/event-plain or
// text/event-json frame.
func ParseEvent(f *Frame) (Event, error) {
	switch ct, _ := f.Header.Lookup("Content-Type"); string(ct) {
	case TypeEventPlain:
		return parsePlain(f.Body)
	case TypeEventJSON:
		return parseJSON(f.Body)
	default:
		return Event{}, fmt.Errorf("%w: not an event (Content-Type %q)", ErrMalformed, ct)
	}
}

// parsePlain reads "Name: url-encoded-value" lines up to a blank line, then an
// inner body of the inner Content-Length (BACKGROUND_JOB).
func parsePlain(b []byte) (Event, error) {
	end, next := headerEnd(b)
	if end < 0 {
		// No blank line: the whole body is the header block.
		return Event{Headers: Headers(b)}, checkEvent(Headers(b))
	}
	ev := Event{Headers: Headers(b[:end])}
	if v, ok := ev.Headers.Lookup("Content-Length"); ok {
		n, err := parseLength(v, len(b)-next)
		if err != nil {
			return ev, fmt.Errorf("event body: %w", err)
		}
		ev.Body = b[next : next+n]
	}
	return ev, checkEvent(ev.Headers)
}

func checkEvent(h Headers) error {
	if _, ok := h.Lookup("Event-Name"); !ok {
		return fmt.Errorf("%w: event without Event-Name", ErrMalformed)
	}
	return nil
}

// parseJSON reads a JSON event: an object of string values (arrays for
// multi-valued headers, rendered as FreeSWITCH's plain ARRAY:: form) with the
// body under "_body".
func parseJSON(b []byte) (Event, error) {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return Event{}, fmt.Errorf("%w: event JSON: %v", ErrMalformed, err)
	}
	ev := Event{fields: make(map[string]string, len(m))}
	for k, v := range m {
		s := jsonString(v)
		if k == "_body" {
			ev.Body = []byte(s)
			continue
		}
		ev.fields[k] = s
	}
	if _, ok := ev.fields["Event-Name"]; !ok {
		return ev, fmt.Errorf("%w: event without Event-Name", ErrMalformed)
	}
	return ev, nil
}

func jsonString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	case []any:
		var b strings.Builder
		b.WriteString("ARRAY::")
		for i, e := range x {
			if i > 0 {
				b.WriteString("|:")
			}
			b.WriteString(jsonString(e))
		}
		return b.String()
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// Get returns the decoded value of header name, or "". Plain lookups are case
// insensitive like FreeSWITCH's; JSON keys are matched exactly first.
func (e *Event) Get(name string) string {
	if e.fields != nil {
		if v, ok := e.fields[name]; ok {
			return v
		}
		for k, v := range e.fields {
			if strings.EqualFold(k, name) {
				return v
			}
		}
		return ""
	}
	return e.Headers.Get(name)
}

// Is reports whether header name has exactly the (decoded) value want,
// without allocating for plain events whose value needs no decoding.
func (e *Event) Is(name, want string) bool {
	if e.fields != nil {
		return e.Get(name) == want
	}
	v, ok := e.Headers.Lookup(name)
	if !ok {
		return false
	}
	if string(v) == want {
		return true
	}
	for _, c := range v {
		if c == '%' {
			return Unescape(v) == want
		}
	}
	return false
}

// Name is the Event-Name.
func (e *Event) Name() string { return e.Get("Event-Name") }

// Sequence is the Event-Sequence (0 when absent or malformed).
func (e *Event) Sequence() uint64 {
	n, _ := strconv.ParseUint(e.Get("Event-Sequence"), 10, 64)
	return n
}
