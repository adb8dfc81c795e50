package freeswitch

import (
	"fmt"
	"strings"

	"github.com/percipia/eslgo/command"

	"github.com/callctl/callctl/adapters/freeswitch/esl"
)

// The setup commands of both connections (auth, event subscriptions and
// filters; connect, myevents and linger on the outbound socket) are built
// with eslgo's command types: they are plain string builders and sound.
// What eslgo gets wrong for a controller under load is its connection (one
// goroutine per event, replies matched by arrival, no stop for its outbound
// listener, no reconnect), so callctl reads and writes frames itself (esl/).
//
// eslgo does not check what it formats: a password or value carrying a line
// break would smuggle a second command in, so every built line goes through
// the same check as callctl's own commands.

// setup builds one command line with eslgo and frames it.
func setup(c command.Command) ([]byte, error) {
	line := c.BuildMessage()
	parts := strings.Split(line, " ")
	msg, err := esl.AppendCommand(nil, parts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", parts[0], err)
	}
	return msg, nil
}

// setupAll frames several commands, for one write.
func setupAll(cs ...command.Command) ([]byte, error) {
	var out []byte
	for _, c := range cs {
		msg, err := setup(c)
		if err != nil {
			return nil, err
		}
		out = append(out, msg...)
	}
	return out, nil
}

// Outbound socket: connect (the reply is the channel data), then this
// channel's events and lingering, so that the last events arrive after the
// hangup. eslgo's Linger formats a number of seconds as a Duration's
// nanoseconds, so it is used without one (linger until the socket closes).
var (
	connectCmd      = must(setup(command.Connect{}))
	eventsAndLinger = must(setupAll(command.MyEvents{Format: "plain"}, command.Linger{Enabled: true}))
)

// inboundSubscriptions are what the inbound connection listens to: the end
// of the legs callctl creates (marked with callctl_leg, so FreeSWITCH itself
// filters a busy server's other channels out: positive filters pass an event
// that matches any of them), background job results, and heartbeats.
func inboundSubscriptions() []command.Command {
	return []command.Command{
		command.Event{Format: "plain", Listen: []string{"CHANNEL_HANGUP_COMPLETE", "BACKGROUND_JOB", "HEARTBEAT"}},
		command.Filter{EventHeader: "variable_" + legMarkVar, FilterValue: "true"},
		command.Filter{EventHeader: "Event-Name", FilterValue: "BACKGROUND_JOB"},
		command.Filter{EventHeader: "Event-Name", FilterValue: "HEARTBEAT"},
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err) // constant commands: a failure is a programming error
	}
	return b
}
