package esl

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The wire format of the event socket, as mod_event_socket reads and
// writes it: a block of "Name: value" lines ended by an empty line, then
// Content-Length bytes of body when that header is present. Line ends are
// "\n"; a "\r" before it is tolerated on input.

// maxFrameLen is mod_event_socket's read_packet limit (10 MiB).
const maxFrameLen = 10 << 20

// header is one name/value line, in order.
type header struct {
	name  string
	value string
}

// command is one frame a client sent: its first line and the headers and
// body that follow (sendmsg, bgapi with Job-UUID, ...).
type command struct {
	line    string
	headers []header
	body    string
}

// get returns a header value, matching names case-insensitively as
// switch_event_get_header does.
func (c *command) get(name string) string {
	for _, h := range c.headers {
		if strings.EqualFold(h.name, name) {
			return h.value
		}
	}
	return ""
}

// errFrameTooLong is returned for a frame beyond maxFrameLen.
var errFrameTooLong = errors.New("esl: frame too long")

// readLine reads one line (without its "\n" or "\r\n"), refusing lines that
// would take the frame beyond budget bytes.
func readLine(r *bufio.Reader, budget *int) (string, error) {
	var buf []byte
	for {
		frag, err := r.ReadSlice('\n')
		*budget -= len(frag)
		if *budget < 0 {
			return "", errFrameTooLong
		}
		buf = append(buf, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		break
	}
	s := string(buf[:len(buf)-1])
	return strings.TrimSuffix(s, "\r"), nil
}

// readCommand reads one client frame. Leading empty lines are skipped, as
// read_packet does.
func readCommand(r *bufio.Reader) (*command, error) {
	budget := maxFrameLen
	var c *command
	for {
		line, err := readLine(r, &budget)
		if err != nil {
			return nil, err
		}
		if line == "" {
			if c == nil {
				continue
			}
			break
		}
		if c == nil {
			c = &command{line: line}
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		value = strings.TrimLeft(value, " ")
		c.headers = append(c.headers, header{name, value})
	}
	if cl := c.get("Content-Length"); cl != "" {
		n, err := strconv.Atoi(strings.TrimSpace(cl))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("esl: bad Content-Length %q", cl)
		}
		if n > budget {
			return nil, errFrameTooLong
		}
		body := make([]byte, n)
		if _, err := ioReadFull(r, body); err != nil {
			return nil, err
		}
		c.body = string(body)
	}
	return c, nil
}

func ioReadFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// urlUnsafe is SWITCH_URL_UNSAFE.
const urlUnsafe = "\r\n #%&+:;<=>?@[\\]^`{|}\""

const upperHex = "0123456789ABCDEF"

func isUpperHex(b byte) bool {
	return (b >= '0' && b <= '9') || (b >= 'A' && b <= 'F')
}

// urlEncode encodes a header value the way switch_url_encode does when it
// serializes an event: bytes outside ' '..'~' and the unsafe characters
// become %XX, but an existing %XX escape (upper-case hex) is kept.
func urlEncode(s string) string {
	return string(appendURLEncoded(nil, s))
}

// urlSafe[c] is true for the bytes that are written as they are.
var urlSafe [256]bool

func init() {
	for c := ' '; c <= '~'; c++ {
		urlSafe[c] = !strings.ContainsRune(urlUnsafe, c)
	}
}

// appendURLEncoded appends the url encoding of s to b.
func appendURLEncoded(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if urlSafe[c] {
			b = append(b, c)
			continue
		}
		if c == '%' && i+2 < len(s) && isUpperHex(s[i+1]) && isUpperHex(s[i+2]) {
			b = append(b, c)
			continue
		}
		b = append(b, '%', upperHex[c>>4], upperHex[c&15])
	}
	return b
}

// urlDecode undoes urlEncode (and any %xx escape); a malformed escape is
// kept as is.
func urlDecode(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '+' {
			b.WriteByte(' ')
			continue
		}
		if c == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// appendJSONString appends s as a JSON string the way cJSON prints it:
// only '"', '\\' and control characters are escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			if c < 0x20 {
				b = fmt.Appendf(b, "\\u%04x", c)
				continue
			}
			b = append(b, c)
		}
	}
	return append(b, '"')
}
