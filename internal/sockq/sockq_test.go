package sockq

import (
	"io"
	"net"
	"testing"
)

func TestUnreadCountsWhatThePeerSent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	defer server.Close()
	if n, ok := Unread(server); !ok || n != 0 {
		t.Fatalf("before anything was sent: %d, %v", n, ok)
	}
	msg := []byte("Event-Name: HEARTBEAT\n\n")
	if _, err := client.Write(msg); err != nil {
		t.Fatal(err)
	}
	// Reading one byte waits until the data is there; the rest stays queued.
	if _, err := io.ReadFull(server, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if n, ok := Unread(server); !ok || n != len(msg)-1 {
		t.Errorf("after the peer sent %d bytes and 1 was read: %d, %v", len(msg), n, ok)
	}
	server.Close()
	if _, ok := Unread(server); ok {
		t.Error("a closed connection still reports its queue")
	}
}
