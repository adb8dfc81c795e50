package esl

import (
	"bytes"
	"fmt"
	"testing"
	"testing/iotest"
)

// slowHeader is a frame whose header block is size bytes of short header
// lines (the most lines a peer can send in that many bytes), then the blank
// line.
func slowHeader(size int) []byte {
	var b bytes.Buffer
	b.WriteString("Content-Type: command/reply\n")
	for b.Len() < size-32 {
		b.WriteString("x: y\n")
	}
	b.WriteString("Reply-Text: +OK\n\n")
	return b.Bytes()
}

// readSlowly reads one frame from data delivered one byte per read, as a
// slow (or hostile) peer sends it.
func readSlowly(tb testing.TB, data []byte) {
	rd := NewReader(iotest.OneByteReader(bytes.NewReader(data)))
	defer rd.Release()
	f, err := rd.ReadFrame()
	if err != nil {
		tb.Fatal(err)
	}
	if f.Header.Get("Reply-Text") != "+OK" {
		tb.Fatalf("frame not read whole: %d header bytes", len(f.Header))
	}
}

// A header of the largest allowed size sent byte by byte is read whole. How
// long it takes is BenchmarkSlowPeerHeader's business: linear in the size
// (the header is scanned once, not again from its start on every read).
func TestSlowPeerHeaderIsReadWhole(t *testing.T) {
	readSlowly(t, slowHeader(DefaultMaxHeader-16))
}

// BenchmarkSlowPeerHeader: one frame whose header arrives one byte per
// read, at 4, 16 and 64 KiB.
func BenchmarkSlowPeerHeader(b *testing.B) {
	for _, size := range []int{4 << 10, 16 << 10, DefaultMaxHeader - 16} {
		data := slowHeader(size)
		b.Run(fmt.Sprintf("%dKiB", (size+512)>>10), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				readSlowly(b, data)
			}
		})
	}
}
