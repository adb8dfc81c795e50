package esl

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{
		"auth ClueCon\n\n",
		"sendmsg x\ncall-command: execute\nContent-Length: 3\n\nabc",
		"\r\n\r\napi status\r\n\r\n",
		"x\nContent-Length: -1\n\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r := bufio.NewReader(strings.NewReader(in))
		for i := 0; i < 10; i++ {
			if _, err := readCommand(r); err != nil {
				return
			}
		}
	})
}

func FuzzParseDialString(f *testing.F) {
	for _, s := range []string{
		"{a=1,b='x,y'}[c=2]user/1000,loopback/101/targets|sofia/gateway/pstn/+49",
		"{^^:a=1:b=2}user/1",
		"<x=1>{y=2}[z=3]error/USER_BUSY:_:user/2",
		"{{{[[[",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ds, err := parseDialString(in)
		if err != nil {
			return
		}
		for _, g := range ds.groups {
			for _, l := range g {
				if l.endpoint == "" {
					t.Fatalf("empty endpoint from %q", in)
				}
			}
		}
	})
}

// fuzzLab is one simulated server shared by the fuzz iterations.
var (
	fuzzOnce sync.Once
	fuzzSrv  *Server
)

func fuzzServer(t *testing.T) *Server {
	fuzzOnce.Do(func() {
		fleet := callmodel.NewFleet(callmodel.WithClock(callmodel.ScaledClock(100)))
		m, _ := fleet.AddServer(callmodel.ServerConfig{Name: "fz", Kind: callmodel.FreeSWITCH, IP: "127.0.0.50"})
		fleet.SetPhone("fz", "2000", callmodel.Answer(0))
		s, err := New(m, Config{Heartbeat: -1, ConnectTimeout: 100 * time.Millisecond, Controllers: []string{"127.0.0.1:1"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		fuzzSrv = s
	})
	return fuzzSrv
}

// FuzzInboundCommands sends arbitrary command frames on an authenticated
// connection: the server must answer or close, never crash or hang.
func FuzzInboundCommands(f *testing.F) {
	for _, s := range []string{
		"api originate {origination_uuid=abc}user/2000 &park()",
		"api uuid_transfer abc 2099 XML default",
		"sendmsg abc\ncall-command: execute\nexecute-app-name: bridge\nexecute-app-arg: user/2000|{x}[y",
		"bgapi originate loopback/1000/default &bridge(loopback/201/targets)",
		"api show channels as json",
		"filter Unique-ID /([/",
		"event json ALL CUSTOM a b",
		"myevents abc json",
		"api uuid_bridge a b",
		"api hupall X y z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cmd string) {
		srv := fuzzServer(t)
		nc, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(nc)
		if _, err := readFrame(r); err != nil {
			t.Fatal(err)
		}
		cmd = strings.ReplaceAll(cmd, "\n\n", "\n")
		_, _ = nc.Write([]byte("auth ClueCon\n\n" + cmd + "\n\napi uuid_exists x\n\n"))
		for {
			fr, err := readFrame(r)
			if err != nil {
				// the command may legitimately end the connection (exit, a
				// frame too long); the server must still serve others
				probe, err := net.Dial("tcp", srv.Addr())
				if err != nil {
					t.Fatalf("server gone after %q: %v", cmd, err)
				}
				_ = probe.Close()
				return
			}
			if fr.contentType() == "api/response" && (fr.body == "false" || fr.body == "true") {
				return
			}
		}
	})
}
