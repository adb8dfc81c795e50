// Frames: a frame is a header block ("Name: value" lines ended by an empty
// line) followed by Content-Length bytes of body when that header is present.
// The reader is strict about what it cannot trust (lengths, sizes) and
// lenient about what does not matter (CR before LF, malformed header lines):
// a peer can make it return an error, never panic or allocate without bound.
//
// It is written here rather than taken from eslgo v1.5.2 because eslgo's
// reader panics on a negative Content-Length (make with a negative size, in its
// own goroutine, which ends the process), allocates whatever length a peer
// announces, and stops its receive loop on any error other than EOF without
// telling anybody, leaving a half-open connection.

package esl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Limits of a Reader. A frame whose header block or body is larger is an
// error: the connection is then unusable (the stream cannot be resynchronised)
// and must be closed.
const (
	DefaultMaxHeader = 64 << 10
	DefaultMaxBody   = 1 << 20
)

// ErrMalformed is wrapped by every error about bytes that are not ESL.
var ErrMalformed = errors.New("malformed ESL frame")

// Headers is a raw header block: lines "Name: value" separated by LF (a CR
// before the LF is tolerated). Lookups scan it; nothing is copied.
type Headers []byte

// Lookup returns the raw value of the first header called name (ASCII case
// insensitive) and whether it is present.
func (h Headers) Lookup(name string) ([]byte, bool) {
	rest := []byte(h)
	for len(rest) > 0 {
		var line []byte
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			line, rest = rest, nil
		}
		if len(line) <= len(name) || line[len(name)] != ':' || !equalFold(line[:len(name)], name) {
			continue
		}
		v := line[len(name)+1:]
		for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
			v = v[1:]
		}
		if n := len(v); n > 0 && v[n-1] == '\r' {
			v = v[:n-1]
		}
		return v, true
	}
	return nil, false
}

// Raw returns the raw (not URL-decoded) value of header name, or "".
func (h Headers) Raw(name string) string {
	v, _ := h.Lookup(name)
	return string(v)
}

// Get returns the URL-decoded value of header name, or "". FreeSWITCH
// URL-encodes the values of plain events and of the channel data in the
// connect reply; decoding a value that was not encoded leaves it unchanged
// unless it contains a valid %XX sequence.
func (h Headers) Get(name string) string {
	v, _ := h.Lookup(name)
	return Unescape(v)
}

// Is reports whether header name is present with exactly the raw value want.
func (h Headers) Is(name, want string) bool {
	v, ok := h.Lookup(name)
	return ok && string(v) == want
}

// Each calls fn for every well-formed header line, in order, until fn returns
// false. Values are raw.
func (h Headers) Each(fn func(name, value []byte) bool) {
	rest := []byte(h)
	for len(rest) > 0 {
		var line []byte
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			line, rest = rest, nil
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			continue
		}
		v := line[c+1:]
		for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
			v = v[1:]
		}
		if !fn(line[:c], v) {
			return
		}
	}
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Unescape decodes %XX sequences (FreeSWITCH's switch_url_encode). Invalid
// sequences are kept as they are; '+' is not a space.
func Unescape(v []byte) string {
	i := bytes.IndexByte(v, '%')
	if i < 0 {
		return string(v)
	}
	out := make([]byte, 0, len(v))
	out = append(out, v[:i]...)
	for ; i < len(v); i++ {
		c := v[i]
		if c == '%' && i+2 < len(v) {
			if h, ok := unhex(v[i+1]); ok {
				if l, ok := unhex(v[i+2]); ok {
					out = append(out, h<<4|l)
					i += 2
					continue
				}
			}
		}
		out = append(out, c)
	}
	return string(out)
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Frame is one message read from the socket. Its slices point into the
// Reader's buffer: they are valid until the next ReadFrame. Use Clone to keep
// a frame longer.
type Frame struct {
	Header Headers
	Body   []byte
}

// ContentType returns the raw Content-Type header.
func (f *Frame) ContentType() string {
	v, _ := f.Header.Lookup("Content-Type")
	return string(v)
}

// Clone returns a copy of the frame that owns its bytes.
func (f *Frame) Clone() Frame {
	b := make([]byte, len(f.Header)+len(f.Body))
	n := copy(b, f.Header)
	copy(b[n:], f.Body)
	return Frame{Header: Headers(b[:n:n]), Body: b[n:]}
}

// Content types FreeSWITCH sends.
const (
	TypeAuthRequest = "auth/request"
	TypeReply       = "command/reply"
	TypeAPIResponse = "api/response"
	TypeEventPlain  = "text/event-plain"
	TypeEventJSON   = "text/event-json"
	TypeEventXML    = "text/event-xml"
	TypeDisconnect  = "text/disconnect-notice"
	TypeRudeReject  = "text/rude-rejection"
	TypeLog         = "log/data"
)

// bufPool holds the buffers frames are read into. A connection holds one only
// while it has unread bytes: an idle connection (the usual state of a call's
// socket) blocks on a small array of its own, so thousands of idle
// connections do not pin thousands of frame buffers.
var bufPool = sync.Pool{New: func() any { b := make([]byte, poolBufSize); return &b }}

const (
	poolBufSize = 16 << 10
	idleBufSize = 256
)

// Reader reads frames from a stream. It is not safe for concurrent use.
type Reader struct {
	src       io.Reader
	MaxHeader int
	MaxBody   int

	buf    []byte
	pooled *[]byte // buf comes from bufPool
	r, w   int
	idle   [idleBufSize]byte

	// What is known of the frame at r, so that each read scans only the new
	// bytes (a peer sending its header a byte at a time would otherwise cost
	// time quadratic in its length): scanned is how far from r the header
	// was searched for its end without finding it; once found, hdrEnd is the
	// header block's length, bodyAt where its body starts, bodyLen its length
	// (all relative to r).
	scanned, hdrEnd, bodyAt, bodyLen int
}

// NewReader returns a Reader with the default limits.
func NewReader(src io.Reader) *Reader {
	return &Reader{src: src, MaxHeader: DefaultMaxHeader, MaxBody: DefaultMaxBody}
}

// Release returns the reader's buffer to the pool; the reader must not be used
// afterwards.
func (r *Reader) Release() {
	r.dropBuf()
	r.buf = nil
}

func (r *Reader) dropBuf() {
	if r.pooled != nil {
		*r.pooled = r.buf[:cap(r.buf)]
		bufPool.Put(r.pooled)
		r.pooled = nil
	}
	r.buf = r.idle[:]
	r.r, r.w = 0, 0
	r.scanned, r.hdrEnd = 0, 0
}

// ReadFrame reads the next frame. Empty lines between frames are skipped. An
// error other than io.EOF means the stream is broken (or is not ESL) and the
// connection must be closed.
func (r *Reader) ReadFrame() (Frame, error) {
	if r.r == r.w {
		// Nothing buffered: give the big buffer back before blocking.
		r.dropBuf()
	}
	for {
		// Skip blank lines between frames (only ever before a frame's
		// first byte: nothing of it is scanned yet).
		for r.hdrEnd == 0 && r.r < r.w && (r.buf[r.r] == '\n' || r.buf[r.r] == '\r') {
			r.r++
			r.scanned = 0
		}
		if f, ok, err := r.parse(); err != nil || ok {
			return f, err
		}
		if err := r.fill(); err != nil {
			if err == io.EOF && r.r < r.w {
				return Frame{}, fmt.Errorf("%w: stream ended inside a frame", ErrMalformed)
			}
			return Frame{}, err
		}
	}
}

// parse tries to cut one frame out of the buffered bytes. It scans only
// what it has not scanned before.
func (r *Reader) parse() (Frame, bool, error) {
	data := r.buf[r.r:r.w]
	if r.hdrEnd == 0 {
		end, next, resume := headerEndFrom(data, r.scanned)
		if end < 0 {
			if len(data) > r.MaxHeader {
				return Frame{}, false, fmt.Errorf("%w: header block longer than %d bytes", ErrMalformed, r.MaxHeader)
			}
			r.scanned = resume
			return Frame{}, false, nil
		}
		if end > r.MaxHeader {
			return Frame{}, false, fmt.Errorf("%w: header block longer than %d bytes", ErrMalformed, r.MaxHeader)
		}
		n := 0
		if v, ok := Headers(data[:end]).Lookup("Content-Length"); ok {
			var err error
			if n, err = parseLength(v, r.MaxBody); err != nil {
				return Frame{}, false, err
			}
		}
		r.hdrEnd, r.bodyAt, r.bodyLen = end, next, n
	}
	end, next, n := r.hdrEnd, r.bodyAt, r.bodyLen
	if len(data)-next < n {
		return Frame{}, false, r.reserve(next + n)
	}
	r.r += next + n
	r.scanned, r.hdrEnd = 0, 0
	return Frame{Header: Headers(data[:end]), Body: data[next : next+n : next+n]}, true, nil
}

// headerEnd finds the blank line ending a header block: it returns the length
// of the block and the offset just after the blank line, or -1.
func headerEnd(data []byte) (int, int) {
	end, next, _ := headerEndFrom(data, 0)
	return end, next
}

// headerEndFrom is headerEnd searching from offset from, where the bytes
// before are known to hold no end. When there is no end yet, resume is
// where the next search, with more bytes, must start: a line break at the
// very end may begin the blank line.
func headerEndFrom(data []byte, from int) (end, next, resume int) {
	for {
		i := bytes.IndexByte(data[from:], '\n')
		if i < 0 {
			return -1, -1, len(data)
		}
		i += from
		// data[i] is a LF; a blank line follows if the next byte is LF, or CR LF.
		if i+1 < len(data) && data[i+1] == '\n' {
			return i + 1, i + 2, 0
		}
		if i+2 < len(data) && data[i+1] == '\r' && data[i+2] == '\n' {
			return i + 1, i + 3, 0
		}
		if i+1 >= len(data) || (data[i+1] == '\r' && i+2 >= len(data)) {
			return -1, -1, i
		}
		from = i + 1
	}
}

func parseLength(v []byte, max int) (int, error) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || len(v) > 10 {
		return 0, fmt.Errorf("%w: bad Content-Length %q", ErrMalformed, v)
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: bad Content-Length %q", ErrMalformed, v)
		}
		n = n*10 + int(c-'0')
	}
	if n > max {
		return 0, fmt.Errorf("%w: Content-Length %d over the limit of %d", ErrMalformed, n, max)
	}
	return n, nil
}

// reserve makes sure a frame of size bytes starting at r.r fits in the buffer.
func (r *Reader) reserve(size int) error {
	if r.r+size <= len(r.buf) {
		return nil
	}
	if size <= len(r.buf) {
		r.compact()
		return nil
	}
	r.resize(size)
	return nil
}

// compact moves the unread bytes to the front of the buffer.
func (r *Reader) compact() {
	n := copy(r.buf, r.buf[r.r:r.w])
	r.r, r.w = 0, n
}

// resize moves the unread bytes into a buffer of at least size bytes: a pooled
// one when it fits, else a private one (large frames are rare: api responses
// such as "show channels" on a busy server).
func (r *Reader) resize(size int) {
	var nb []byte
	var pooled *[]byte
	if size <= poolBufSize {
		pooled = bufPool.Get().(*[]byte)
		nb = (*pooled)[:poolBufSize]
	} else {
		nb = make([]byte, size)
	}
	n := copy(nb, r.buf[r.r:r.w])
	if r.pooled != nil {
		*r.pooled = r.buf[:cap(r.buf)]
		bufPool.Put(r.pooled)
	}
	r.buf, r.pooled = nb, pooled
	r.r, r.w = 0, n
}

// fill reads more bytes, making room first.
func (r *Reader) fill() error {
	if r.w == len(r.buf) {
		if r.r > 0 {
			r.compact()
		} else {
			size := 2 * len(r.buf)
			if size < poolBufSize {
				size = poolBufSize
			}
			r.resize(size)
		}
	}
	n, err := r.src.Read(r.buf[r.w:])
	r.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}
