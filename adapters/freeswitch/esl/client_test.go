package esl

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/percipia/eslgo/command"
)

// The setup commands built with eslgo go through callctl's own line check: a
// password with a line break cannot smuggle a command in.
func TestSetupCommandsAreChecked(t *testing.T) {
	if _, err := setup(command.Auth{Password: "ClueCon\n\napi hupall"}); err == nil {
		t.Fatal("a password with line breaks was sent")
	}
	msg, err := setup(command.Auth{Password: "ClueCon"})
	if err != nil || string(msg) != "auth ClueCon\n\n" {
		t.Fatalf("auth: %q %v", msg, err)
	}
	if string(connectCmd) != "connect\n\n" || string(eventsAndLinger) != "myevents plain\n\nlinger\n\n" {
		t.Fatalf("outbound setup: %q %q", connectCmd, eventsAndLinger)
	}
}

// inboundPeer plays FreeSWITCH's :8021 for one connection: the greeting,
// then +OK to every command, which it reports.
func inboundPeer(t *testing.T, reply func(cmd string) string) (addr string, cmds <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	ch := make(chan string, 16)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		defer close(ch)
		_, _ = nc.Write([]byte("Content-Type: auth/request\n\n"))
		br := bufio.NewReader(nc)
		for {
			var cmd strings.Builder
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if line == "\n" {
					break
				}
				cmd.WriteString(line)
			}
			ch <- cmd.String()
			_, _ = nc.Write([]byte(reply(cmd.String())))
		}
	}()
	return ln.Addr().String(), ch
}

func TestDialAuthenticatesAndSubscribes(t *testing.T) {
	addr, cmds := inboundPeer(t, func(string) string { return "Content-Type: command/reply\nReply-Text: +OK\n\n" })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, DialConfig{Address: addr, Password: "ClueCon", Events: []string{"BACKGROUND_JOB", "HEARTBEAT"},
		Filters: []Filter{{"Event-Name", "BACKGROUND_JOB"}, {"variable_x", "true"}}})
	if err != nil {
		t.Fatal(err)
	}
	c.Abort()
	var got []string
	for cmd := range cmds {
		got = append(got, cmd)
	}
	want := "auth ClueCon\n|event plain BACKGROUND_JOB HEARTBEAT\n|filter Event-Name BACKGROUND_JOB\n|filter variable_x true\n"
	if g := strings.Join(got, "|"); g != want {
		t.Fatalf("commands:\n%q\nwant\n%q", g, want)
	}
}

func TestDialRefusedPassword(t *testing.T) {
	addr, _ := inboundPeer(t, func(string) string { return "Content-Type: command/reply\nReply-Text: -ERR invalid\n\n" })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Dial(ctx, DialConfig{Address: addr, Password: "wrong"}); err == nil || !strings.Contains(err.Error(), "auth refused: -ERR invalid") {
		t.Fatalf("err %v, want auth refused", err)
	}
}
