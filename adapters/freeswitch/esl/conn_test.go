package esl

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a Handler that keeps the names of the events it gets.
type recorder struct {
	mu     sync.Mutex
	events []string
	closed chan error
}

func (r *recorder) OnEvent(ev *Event, _ time.Time) {
	r.mu.Lock()
	r.events = append(r.events, ev.Get("Event-Name")+"/"+ev.Get("Event-Sequence"))
	r.mu.Unlock()
}
func (r *recorder) OnNotice(*Frame, time.Time) {}
func (r *recorder) OnClose(err error)          { r.closed <- err }

// pipePeer returns a started Conn and FreeSWITCH's end of its socket, with
// the commands the Conn writes.
func pipePeer(t *testing.T) (*Conn, net.Conn, <-chan string, *recorder) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	cmds := make(chan string, 16)
	go func() {
		br := bufio.NewReader(b)
		var cmd strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				close(cmds)
				return
			}
			if line == "\n" {
				cmds <- cmd.String()
				cmd.Reset()
				continue
			}
			cmd.WriteString(line)
		}
	}()
	c := NewConn(a, nil)
	r := &recorder{closed: make(chan error, 1)}
	c.Start(r)
	return c, b, cmds, r
}

func write(t *testing.T, nc net.Conn, s string) {
	t.Helper()
	if _, err := nc.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func event(headers string) string {
	body := headers + "\n\n"
	return "Content-Length: " + itoa(len(body)) + "\nContent-Type: text/event-plain\n\n" + body
}

func itoa(n int) string { return strconv.Itoa(n) }

// A command whose caller gave up keeps its place: its late reply is not
// taken for the next command's.
func TestAbandonedReplyIsNotTheNextOne(t *testing.T) {
	c, fs, cmds, _ := pipePeer(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := c.Command(ctx, []byte("api first\n\n")); errc <- err }()
	<-cmds
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("first: %v", err)
	}
	got := make(chan Reply, 1)
	go func() {
		r, _ := c.Command(context.Background(), []byte("api second\n\n"))
		got <- r
	}()
	<-cmds
	write(t, fs, "Content-Type: api/response\nContent-Length: 6\n\nfirst\n")
	write(t, fs, "Content-Type: api/response\nContent-Length: 7\n\nsecond\n")
	if r := <-got; r.Text != "second\n" {
		t.Fatalf("second command got %q", r.Text)
	}
}

// bgapi results are matched by callctl's Job-UUID, whatever their order,
// and events around them reach the handler in order.
func TestBGAPIJobsByIDAndEventsInOrder(t *testing.T) {
	c, fs, cmds, rec := pipePeer(t)
	res := map[string]chan string{"job-a": make(chan string, 1), "job-b": make(chan string, 1)}
	for id, ch := range res {
		go func() {
			out, err := c.BGAPI(context.Background(), id, "status")
			if err != nil {
				out = "error: " + err.Error()
			}
			ch <- out
		}()
		cmd := <-cmds
		if !strings.Contains(cmd, "Job-UUID: "+id) {
			t.Fatalf("bgapi without its Job-UUID: %q", cmd)
		}
		write(t, fs, "Content-Type: command/reply\nReply-Text: +OK Job-UUID: "+id+"\nJob-UUID: "+id+"\n\n")
	}
	write(t, fs, event("Event-Name: HEARTBEAT\nEvent-Sequence: 1"))
	write(t, fs, bgEvent("job-b", "+OK b\n"))
	write(t, fs, event("Event-Name: CHANNEL_HANGUP_COMPLETE\nEvent-Sequence: 2"))
	write(t, fs, bgEvent("job-a", "-ERR a\n"))
	if out := <-res["job-b"]; out != "+OK b\n" {
		t.Errorf("job-b: %q", out)
	}
	if out := <-res["job-a"]; !strings.Contains(out, "command failed: -ERR a") {
		t.Errorf("job-a: %q, want a failed command", out)
	}
	write(t, fs, event("Event-Name: HEARTBEAT\nEvent-Sequence: 3"))
	_ = fs.Close()
	<-rec.closed
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := strings.Join(rec.events, " "); got != "HEARTBEAT/1 CHANNEL_HANGUP_COMPLETE/2 HEARTBEAT/3" {
		t.Fatalf("events %s", got)
	}
}

func bgEvent(id, out string) string {
	body := "Event-Name: BACKGROUND_JOB\nJob-UUID: " + id + "\nContent-Length: " + itoa(len(out)) + "\n\n" + out
	return "Content-Length: " + itoa(len(body)) + "\nContent-Type: text/event-plain\n\n" + body
}

// A connection that closes fails what waits on it (a job may still run on
// the server) and does not come back by itself.
func TestCloseFailsWaitersAndDoesNotReconnect(t *testing.T) {
	c, fs, cmds, rec := pipePeer(t)
	errc := make(chan error, 1)
	go func() { _, err := c.BGAPI(context.Background(), "job-c", "status"); errc <- err }()
	<-cmds
	write(t, fs, "Content-Type: command/reply\nReply-Text: +OK Job-UUID: job-c\n\n")
	_ = fs.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrJobLost) || !errors.Is(err, ErrClosed) {
			t.Fatalf("job on a lost connection: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a job on a lost connection still waits")
	}
	<-rec.closed
	<-c.Done()
	if _, err := c.Command(context.Background(), []byte("api status\n\n")); !errors.Is(err, ErrClosed) {
		t.Fatalf("command after the close: %v", err)
	}
}
