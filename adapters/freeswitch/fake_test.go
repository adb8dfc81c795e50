package freeswitch

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/freeswitch/esl"
	"github.com/callctl/callctl/adapters/freeswitch/esl/esltest"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/hunt"
	"github.com/callctl/callctl/controller/routing"
	"github.com/callctl/callctl/internal/labtest"
)

// The adapter's state machines over esltest's fake FreeSWITCH: each case
// replays what a real FreeSWITCH sent (the recordings in the traces), on the
// caller's socket and on the inbound connection, and checks what the adapter
// reports to the engine.

// fakeFS is one FreeSWITCH played by esltest, with its MediaServer connected
// and a Server whose handler holds each call until it ends.
type fakeFS struct {
	fs  *esltest.Server
	in  *esltest.Conn
	ms  *MediaServer
	srv *Server
	h   *holdHandler
	// socks are the outbound connections so far; all are lost at the end.
	socks []*esltest.Conn
}

// holdHandler plays the engine: it keeps each call until the test lets go
// (release) and the call has ended.
type holdHandler struct {
	calls chan controller.Call
	hold  chan struct{}
	once  sync.Once
}

func (h *holdHandler) Handle(_ controller.MediaServer, c controller.Call) error {
	h.calls <- c
	<-h.hold
	<-c.Context().Done()
	return nil
}

// release lets the handler return once each call has ended.
func (f *fakeFS) release() { f.h.once.Do(func() { close(f.h.hold) }) }

func newFakeFS(t *testing.T) *fakeFS {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := &fakeFS{fs: esltest.NewServer(), h: &holdHandler{calls: make(chan controller.Call, 4), hold: make(chan struct{})}}
	// The recorded channels are gone by the time their bridge reports its
	// end (CHANNEL_DESTROY comes first).
	f.fs.Default = func(c esltest.Command) string {
		if strings.HasPrefix(c.Line, "api uuid_exists ") {
			return "false"
		}
		return "+OK"
	}
	f.in = f.fs.Inbound()
	f.ms = NewMediaServer(MediaServerConfig{Name: "fs1", Logger: log})
	f.ms.dial = func(context.Context) (inbound, error) { return f.in, nil }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = f.ms.Run(ctx); close(done) }()
	t.Cleanup(func() {
		for _, s := range f.socks {
			s.Drop(io.EOF)
		}
		for _, s := range f.socks {
			<-s.Done()
		}
		f.release()
		cancel()
		<-done
		f.fs.Close()
	})
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if err := f.ms.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	f.srv = NewServer(f.h, []*MediaServer{f.ms}, Options{Logger: log, LegGoneWait: 2 * time.Second,
		SettleWait: 100 * time.Millisecond, TransferWait: 5 * time.Second})
	return f
}

// arrive hands the Server a new outbound connection with channel data data,
// as serveConn does after the handshake, and returns its socket and the call
// the handler got (nil if none within 5 s).
func (f *fakeFS) arrive(t *testing.T, data esl.Frame) (*esltest.Conn, *call) {
	t.Helper()
	sock := f.fs.Socket(data)
	f.socks = append(f.socks, sock)
	c, err := f.srv.newCall(sock, sock.Data, netip.MustParseAddr("127.0.0.1"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f.srv.wg.Add(1) // as Serve does for each connection
	if err := f.srv.open(c); err != nil {
		t.Fatal(err)
	}
	go f.srv.serveCall(c, time.Now())
	select {
	case got := <-f.h.calls:
		return sock, got.(*call)
	case <-time.After(5 * time.Second):
		return sock, nil
	}
}

// trace reads a recording; a missing one skips or fails as labtest says.
func trace(t *testing.T, file string) []esl.Frame {
	t.Helper()
	fr, err := esltest.ReadTrace(filepath.Join(tracesDir, file))
	if err != nil {
		labtest.Missing(t, "recorded trace not available (%v)", err)
	}
	return fr
}

// at returns frame i of a recording, checking that it is the event expected
// there (name, channel), so that a wrong index fails loudly.
func at(t *testing.T, fr []esl.Frame, i int, name, uuid string) esl.Frame {
	t.Helper()
	ev, err := esl.ParseEvent(&fr[i])
	if err != nil || !ev.Is("Event-Name", name) || !ev.Is("Unique-ID", uuid) {
		t.Fatalf("frame %d is %s of %s, want %s of %s (%v)", i, ev.Get("Event-Name"), ev.Get("Unique-ID"), name, uuid, err)
	}
	return fr[i]
}

// The b3 recording: an answered caller (loopback/501-a) bridged with
// continue_on_fail to a busy target (loopback/201-a).
const (
	b3File   = "freeswitch/b3_inbound_sendmsg_bridge_201_busy_continue_on_fail.plain.raw"
	b3Caller = "c2d6dbc7-e23f-40a7-bac5-74f84d438a58"
	b3Leg    = "b128961f-4222-4149-9529-791f57310eee"
	// d2: a socket-owned caller (loopback/1000-b) bridged to loopback/101,
	// which answers; callctl hangs up.
	d2File   = "freeswitch/d2_outbound_socket_loopback_1000_answer_bridge_101.plain.raw"
	d2Caller = "75e14d0f-7e2e-4da1-84c9-62714800c6d1"
	d2Leg    = "865c440c-d093-4aa0-aef9-7e9dca3d2871"
)

type dialResult struct {
	leg controller.Leg
	res controller.DialResult
	err error
}

// dialAsync runs Dial as the engine does, while the test plays FreeSWITCH.
func dialAsync(c *call, ctx context.Context, spec controller.DialSpec) <-chan dialResult {
	got := make(chan dialResult, 1)
	go func() {
		leg, res, err := c.Dial(ctx, spec)
		got <- dialResult{leg, res, err}
	}()
	return got
}

// wait returns Dial's result, failing the test when it does not come.
func wait(t *testing.T, got <-chan dialResult) dialResult {
	t.Helper()
	select {
	case r := <-got:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Dial did not return")
		return dialResult{}
	}
}

var bridgeCmd = []string{"execute-app-name: bridge"}

func killCmd(id, cause string) []string { return []string{"api uuid_kill " + id + " " + cause} }

// The outcome of one bridge, for each way it ends, from the recordings.
func TestDialOutcomesFromTraces(t *testing.T) {
	b3 := trace(t, b3File)
	bridgeStart := at(t, b3, 38, "CHANNEL_EXECUTE", b3Caller)
	legEnd := at(t, b3, 66, "CHANNEL_HANGUP_COMPLETE", b3Leg)
	bridgeEnd := at(t, b3, 71, "CHANNEL_EXECUTE_COMPLETE", b3Caller)
	callerHangup := at(t, b3, 79, "CHANNEL_HANGUP", b3Caller)
	// A bridge ended by FreeSWITCH's own ring limit (leg_timeout, callctl's
	// backstop): the recording's busy end with the causes of a ring that
	// ran out (as trace c's originate_timeout shows them).
	noAnswer := func(f esl.Frame) esl.Frame {
		return esltest.Edit(f, "Hangup-Cause: NO_ANSWER", "variable_originate_disposition: NO_ANSWER",
			"variable_DIALSTATUS: NOANSWER", "variable_last_bridge_hangup_cause: NO_ANSWER",
			"variable_originate_failed_cause: NO_ANSWER")
	}
	cancelled := func(f esl.Frame) esl.Frame {
		return esltest.Edit(f, "Hangup-Cause: ORIGINATOR_CANCEL", "variable_originate_disposition: ORIGINATOR_CANCEL",
			"variable_DIALSTATUS: CANCEL", "variable_last_bridge_hangup_cause: ORIGINATOR_CANCEL",
			"variable_originate_failed_cause: ORIGINATOR_CANCEL")
	}

	for _, tc := range []struct {
		name string
		// script sets the fake up; act runs while Dial waits (nil: nothing).
		script  func(f *fakeFS, sock *esltest.Conn)
		act     func(t *testing.T, f *fakeFS, sock *esltest.Conn)
		ring    time.Duration // the engine's ring timeout (0: none)
		outcome hunt.Outcome
		cause   string
		err     error
		end     string   // the call's end cause afterwards ("": still up)
		sent    []string // a command the adapter must have sent
	}{
		{
			name: "busy",
			script: func(f *fakeFS, sock *esltest.Conn) {
				f.fs.On(bridgeCmd, "+OK", append(esltest.To(sock, bridgeStart),
					append(esltest.To(f.in, legEnd), esltest.To(sock, bridgeEnd)...)...)...)
			},
			outcome: hunt.Busy, cause: "USER_BUSY",
		},
		{
			name: "busy, the leg's end read after the bridge's",
			script: func(f *fakeFS, sock *esltest.Conn) {
				f.fs.On(bridgeCmd, "+OK", append(esltest.To(sock, bridgeStart, bridgeEnd), esltest.To(f.in, legEnd)...)...)
			},
			outcome: hunt.Busy, cause: "USER_BUSY",
		},
		{
			name: "no answer within FreeSWITCH's ring limit",
			script: func(f *fakeFS, sock *esltest.Conn) {
				f.fs.On(bridgeCmd, "+OK", append(esltest.To(sock, bridgeStart),
					append(esltest.To(f.in, noAnswer(legEnd)), esltest.To(sock, noAnswer(bridgeEnd))...)...)...)
			},
			outcome: hunt.NoAnswer, cause: "NO_ANSWER",
		},
		{
			name: "callctl's ring time runs out: the leg is cancelled",
			script: func(f *fakeFS, sock *esltest.Conn) {
				f.fs.On(bridgeCmd, "+OK", esltest.To(sock, bridgeStart)...)
				f.fs.On(killCmd(b3Leg, "ORIGINATOR_CANCEL"), "+OK",
					append(esltest.To(f.in, cancelled(legEnd)), esltest.To(sock, cancelled(bridgeEnd))...)...)
			},
			ring:    50 * time.Millisecond,
			outcome: hunt.Cancelled, cause: "ORIGINATOR_CANCEL",
			sent: killCmd(b3Leg, "ORIGINATOR_CANCEL"),
		},
		{
			name: "the caller hangs up while it rings",
			script: func(f *fakeFS, sock *esltest.Conn) {
				f.fs.On(bridgeCmd, "+OK", esltest.To(sock, bridgeStart)...)
				f.fs.On(killCmd(b3Leg, "ORIGINATOR_CANCEL"), "+OK", esltest.To(f.in, cancelled(legEnd))...)
			},
			act: func(t *testing.T, f *fakeFS, sock *esltest.Conn) {
				f.fs.Emit(esltest.To(sock, esltest.Edit(callerHangup, "Hangup-Cause: ORIGINATOR_CANCEL"))...)
			},
			outcome: hunt.Cancelled, cause: "ORIGINATOR_CANCEL",
			end:  "ORIGINATOR_CANCEL",
			sent: killCmd(b3Leg, "ORIGINATOR_CANCEL"),
		},
		{
			name: "the caller's socket is lost while it rings",
			script: func(f *fakeFS, sock *esltest.Conn) {
				f.fs.On(bridgeCmd, "+OK", esltest.To(sock, bridgeStart)...)
				// The caller and its leg are ended on the inbound connection.
				f.fs.On(killCmd(b3Leg, "ORIGINATOR_CANCEL"), "+OK", esltest.To(f.in, cancelled(legEnd))...)
			},
			act: func(t *testing.T, f *fakeFS, sock *esltest.Conn) {
				sock.Drop(io.ErrUnexpectedEOF)
			},
			outcome: hunt.Cancelled, cause: "CONNECTION_LOST", err: controller.ErrCallGone,
			end:  "CONNECTION_LOST",
			sent: killCmd(b3Caller, "NORMAL_TEMPORARY_FAILURE"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeFS(t)
			sock, c := f.arrive(t, esltest.ConnectReply(at(t, b3, 30, "CHANNEL_PARK", b3Caller)))
			if c == nil {
				t.Fatal("the call was not handed to the handler")
			}
			tc.script(f, sock)
			ctx, cancel := c.Context(), context.CancelFunc(func() {})
			if tc.ring > 0 {
				ctx, cancel = context.WithTimeout(ctx, tc.ring)
			}
			defer cancel()
			got := dialAsync(c, ctx, controller.DialSpec{LegID: b3Leg, Target: "loopback/201/targets"})
			if tc.act != nil {
				wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := f.fs.WaitCommand(wctx, bridgeCmd...)
				wcancel()
				if err != nil {
					t.Fatal(err)
				}
				tc.act(t, f, sock)
			}
			r := wait(t, got)
			f.release()
			if r.res.Outcome != tc.outcome || r.res.Cause != tc.cause || r.leg != nil {
				t.Errorf("Dial: %v %s (leg %v), want %v %s", r.res.Outcome, r.res.Cause, r.leg, tc.outcome, tc.cause)
			}
			if tc.err == nil && r.err != nil || tc.err != nil && !errors.Is(r.err, tc.err) {
				t.Errorf("Dial error %v, want %v", r.err, tc.err)
			}
			if tc.sent != nil {
				wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := f.fs.WaitCommand(wctx, tc.sent...)
				wcancel()
				if err != nil {
					t.Error(err)
				}
			}
			if tc.end == "" {
				if c.Context().Err() != nil {
					t.Errorf("the caller's call ended (%s): a failed bridge must leave it up for the next target", c.EndCause())
				}
			} else {
				select {
				case <-c.Context().Done():
				case <-time.After(5 * time.Second):
					t.Fatal("the call did not end")
				}
				if c.EndCause() != tc.end {
					t.Errorf("end cause %s, want %s", c.EndCause(), tc.end)
				}
			}
			if n := f.ms.watched(); n != 0 {
				t.Errorf("%d legs still watched after the attempt", n)
			}
		})
	}
}

// An answered bridge, then callctl hangs the caller up: the d2 recording.
func TestDialAnsweredThenHangupFromTrace(t *testing.T) {
	d2 := trace(t, d2File)
	f := newFakeFS(t)
	sock, c := f.arrive(t, d2[0])
	if c == nil {
		t.Fatal("the call was not handed to the handler")
	}
	if c.ID() != d2Caller || c.Info().Server != "fs1" || c.Info().Dialed != "1000" {
		t.Fatalf("call %s on %s dialed %q: the channel data was not read", c.ID(), c.Info().Server, c.Info().Dialed)
	}
	f.fs.On(bridgeCmd, "+OK", esltest.To(sock, at(t, d2, 9, "CHANNEL_EXECUTE", d2Caller), at(t, d2, 10, "CHANNEL_BRIDGE", d2Caller))...)
	r := wait(t, dialAsync(c, c.Context(), controller.DialSpec{LegID: d2Leg, Target: "loopback/101/targets"}))
	leg, res, err := r.leg, r.res, r.err
	if err != nil || res.Outcome != hunt.Answered || leg == nil || leg.ID() != d2Leg {
		t.Fatalf("Dial: %v %s leg %v err %v; want answered by %s", res.Outcome, res.Cause, leg, err, d2Leg)
	}
	// The rest of the recording is FreeSWITCH's answer to callctl's hangup:
	// the caller's hangup, the bridge's end, the linger and final notices.
	f.fs.On([]string{"call-command: hangup", "hangup-cause: NORMAL_CLEARING"}, "+OK", esltest.To(sock, d2[12:]...)...)
	f.release()
	if err := c.Hangup(context.Background(), routing.CauseNormal); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the call did not end")
	}
	if c.EndCause() != "NORMAL_CLEARING" {
		t.Errorf("end cause %s, want NORMAL_CLEARING", c.EndCause())
	}
	// The handler returned and FreeSWITCH is done: callctl closes the socket.
	select {
	case <-sock.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the socket was not closed after the call ended")
	}
	if n := f.srv.ActiveCalls(); n != 0 {
		t.Errorf("%d calls still active", n)
	}
}

// uuid_transfer of a socket-owned call (transfers case 1): the first
// connection sees its socket application end while the call is up, then a
// second connection arrives for the same channel. The first call ends as
// transferred and stops its events without closing its socket (which would
// kill the call); the second is handed over as an IVR transfer from 1000.
func TestUUIDTransferSecondConnectionFromTrace(t *testing.T) {
	const id = "25551389-b33d-43ec-bc70-6688bf400fdd"
	conn1 := trace(t, "transfers/freeswitch/fs1_case1_uuid_transfer.conn1.raw")
	conn2 := trace(t, "transfers/freeswitch/fs1_case1_uuid_transfer.conn2.raw")
	f := newFakeFS(t)
	f.release()
	sock1, c1 := f.arrive(t, conn1[0])
	if c1 == nil || c1.ID() != id {
		t.Fatalf("first call %v", c1)
	}
	// answer, the socket application's end (the transfer), while answered.
	f.fs.Emit(esltest.To(sock1, conn1[4:9]...)...)
	if c1.Context().Err() != nil {
		t.Fatalf("the call ended (%s) when its socket application ended: it is up, and a transfer's connection may follow", c1.EndCause())
	}
	sock2, c2 := f.arrive(t, conn2[0])
	if c2 == nil || c2.ID() != id {
		t.Fatalf("second call %v", c2)
	}
	if c1.EndCause() != "TRANSFERRED" {
		t.Errorf("first call's end cause %s, want TRANSFERRED", c1.EndCause())
	}
	info := c2.Info()
	if info.Transfer != routing.IVR || info.Dialed != "2099" || info.Previous != "1000" {
		t.Errorf("second call: transfer %v dialed %s previous %s; want an IVR transfer to 2099 from 1000",
			info.Transfer, info.Dialed, info.Previous)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if _, err := f.fs.WaitCommand(wctx, "noevents"); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range f.fs.Commands() {
		if cmd.On == sock1 && cmd.Has("call-command: hangup") {
			t.Errorf("the first connection hung the transferred call up: %q", cmd)
		}
	}
	if sock1.Closed() {
		t.Fatal("the first connection closed its socket before the linger notice: FreeSWITCH would end the new session's park")
	}
	// The caller hangs up: both connections see it; the first closes on its
	// linger notice.
	f.fs.Emit(esltest.To(sock1, conn1[9:]...)...)
	select {
	case <-sock1.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the first connection was not closed after its linger notice")
	}
	f.fs.Emit(esltest.To(sock2, conn2[4:]...)...)
	select {
	case <-c2.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the second call did not end")
	}
	if c2.EndCause() != "NORMAL_CLEARING" {
		t.Errorf("second call's end cause %s, want NORMAL_CLEARING", c2.EndCause())
	}
}

// The inbound connection subscribes to what MediaServer needs, and only to
// the legs callctl marks (FreeSWITCH filters a busy server's other channels
// out): the commands a real :8021 reads.
func TestInboundSubscriptions(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []string, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer nc.Close()
		_, _ = nc.Write([]byte("Content-Type: auth/request\n\n"))
		br := bufio.NewReader(nc)
		var cmds []string
		for len(cmds) < 5 {
			var cmd strings.Builder
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					got <- cmds
					return
				}
				if line == "\n" {
					break
				}
				cmd.WriteString(strings.TrimSuffix(line, "\n"))
			}
			cmds = append(cmds, cmd.String())
			_, _ = nc.Write([]byte("Content-Type: command/reply\nReply-Text: +OK\n\n"))
		}
		got <- cmds
	}()
	ms := NewMediaServer(MediaServerConfig{Name: "fs1", Address: ln.Addr().String(), Password: "ClueCon"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := ms.dialESL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	want := "auth ClueCon|event plain CHANNEL_HANGUP_COMPLETE BACKGROUND_JOB HEARTBEAT|filter variable_callctl_leg true|" +
		"filter Event-Name BACKGROUND_JOB|filter Event-Name HEARTBEAT"
	if g := strings.Join(<-got, "|"); g != want {
		t.Fatalf("inbound setup:\n%q\nwant\n%q", g, want)
	}
}
