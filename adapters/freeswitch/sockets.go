package freeswitch

import (
	"context"
	"time"

	"github.com/callctl/callctl/adapters/freeswitch/esl"
)

// socket is what a call needs of its outbound connection (an *esl.Conn;
// esltest.Socket in tests): its events, commands written in order with one
// reply each (sendmsg execute/hangup, api on the channel's own socket), a
// command the reader goroutine can post without waiting, and its end.
type socket interface {
	Start(h esl.Handler)
	Subscribe(ctx context.Context) error
	Send(ctx context.Context, n int, msg []byte) ([]esl.Reply, error)
	Command(ctx context.Context, msg []byte) (esl.Reply, error)
	Post(msg []byte) error
	Close()
	Closed() bool
	Done() <-chan struct{}
	Unread() (int, bool)
}

// inbound is what a MediaServer needs of its inbound connection (an
// *esl.Conn; esltest.Inbound in tests): api and bgapi, the events it
// subscribed to, and its end.
type inbound interface {
	Start(h esl.Handler)
	API(ctx context.Context, cmd string, args ...string) (string, error)
	BGAPI(ctx context.Context, jobID, cmd string) (string, error)
	Close()
	Done() <-chan struct{}
	Err() error
	Unread() (int, bool)
}

var (
	_ socket  = (*esl.Conn)(nil)
	_ inbound = (*esl.Conn)(nil)
)

// ErrClosed is returned for commands on a connection that is gone.
var ErrClosed = esl.ErrClosed

// ErrCommandFailed wraps a -ERR reply.
var ErrCommandFailed = esl.ErrCommandFailed

// inboundEvents hands one inbound connection's events and end to its
// MediaServer.
type inboundEvents struct {
	m *MediaServer
	c inbound
}

func (h inboundEvents) OnEvent(ev *esl.Event, at time.Time) { h.m.onEvent(ev, at) }
func (h inboundEvents) OnNotice(*esl.Frame, time.Time)      {}
func (h inboundEvents) OnClose(error)                       { h.m.dropped(h.c) }
