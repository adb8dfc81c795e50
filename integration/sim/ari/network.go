package ari

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Network is what lies behind the SIP side of a simulated Asterisk: phones
// registered on it, trunks to other simulated servers, the PSTN. The Lab
// provides one backed by the shared call model.
type Network interface {
	// Dial places an outgoing SIP call for PJSIP/<req.Resource>. The far
	// end's progress is reported to events, possibly before Dial returns
	// and from any goroutine. An error means no call could be attempted
	// (unknown or unregistered endpoint): Asterisk then refuses the
	// originate.
	Dial(req DialRequest, events LegEvents) (Leg, error)
	// Endpoint reports the state of PJSIP endpoint resource: "online",
	// "offline" or "unknown"; ok is false if there is no such endpoint.
	Endpoint(resource string) (state string, ok bool)
	// Endpoints lists the PJSIP endpoints.
	Endpoints() []string
}

// DialRequest is an outgoing SIP call.
type DialRequest struct {
	Server    string // the dialing server's SystemName
	Resource  string // what follows "PJSIP/": "2001", "2099@ast2", ...
	ChannelID string
	Channel   string // channel name, e.g. PJSIP/2001-00000003
	Caller    Party
	// Headers are the SIP headers added with PJSIP_HEADER(add,...).
	Headers map[string]string
	// Variables are the channel's variables at dial time.
	Variables map[string]string
	CallID    string
	Timeout   time.Duration
}

// Party is a caller id.
type Party struct{ Name, Number string }

// LegEvents receives what the far end of a SIP call does.
type LegEvents interface {
	Ringing()
	Answered()
	// Hangup: the far end hung up or refused the call with a Q.850 cause.
	Hangup(cause int)
}

// Leg is the simulated server's side of a SIP call: what it can tell the
// far end. Ring and Answer only make sense for calls it received.
type Leg interface {
	Ring()
	Answer()
	Hangup(cause int)
}

// BridgeAware is implemented by legs that want to know which other legs
// share their ARI bridge (others is empty when the leg left the bridge).
type BridgeAware interface {
	Bridged(bridgeID string, others []Leg)
}

// InboundCall is a SIP call arriving at the simulated server: from a phone,
// the PSTN or another server's trunk. It runs the dialplan of Context:
// Stasis(<app>,<context>,<exten>).
type InboundCall struct {
	// Endpoint is the PJSIP endpoint the call matched: the phone's
	// extension, the sending server's name for a trunk, "pstn".
	Endpoint string
	// Trunk marks a call from another server's trunk.
	Trunk   bool
	Context string
	Exten   string
	Caller  Party
	// Headers are the SIP headers received, readable with
	// PJSIP_HEADER(read,<name>).
	Headers map[string]string
	CallID  string
	// ChannelID, when set, is used as the channel's unique id.
	ChannelID string
	// RemoteAddr is the caller's SIP host:port (Referred-By of its REFERs).
	RemoteAddr string
	// Leg carries ringing, answer and hangup back to the caller.
	Leg Leg

	name string // channel name already allocated (model front)
}

// ErrClosed is returned for calls offered to a stopped server.
var ErrClosed = errors.New("ari: server closed")

// legEvents adapts the network's callbacks to the engine. The callbacks
// only queue work on the engine's inbox and return at once. They may come
// before the channel exists (the far end answered before Dial returned);
// the events are then held until attach.
type legEvents struct {
	e       *engine
	c       *channel
	epoch   int
	pending []func(*channel)
}

func (h *legEvents) run(f func(c *channel)) {
	h.e.inbox.push([]func(){func() { h.apply(f) }})
}

func (h *legEvents) apply(f func(c *channel)) {
	e := h.e
	e.lock()
	defer e.unlock()
	if e.closed || e.epoch != h.epoch {
		return
	}
	if h.c == nil {
		h.pending = append(h.pending, f)
		return
	}
	if h.c.gone {
		return
	}
	f(h.c)
}

// attach binds the handler to its channel and replays early events. Called
// with the engine locked.
func (h *legEvents) attach(c *channel) {
	h.c = c
	for _, f := range h.pending {
		if c.gone {
			break
		}
		f(c)
	}
	h.pending = nil
}

func (h *legEvents) Ringing() {
	h.run(func(c *channel) {
		if c.dial != nil && c.snap.State == stateDown {
			e := h.e
			e.dialRinging(c)
		}
	})
}

func (h *legEvents) Answered() {
	h.run(func(c *channel) {
		if c.snap.State != stateUp {
			h.e.dialAnswered(c)
		}
	})
}

func (h *legEvents) Hangup(cause int) {
	h.run(func(c *channel) {
		e := h.e
		c.leg = nil // the far end is gone: nothing to send back
		if c.dial != nil {
			// chan_pjsip queues the hangup with the SIP cause; the dial
			// then reads it and publishes the matching status.
			e.hangupRequest(c, hangupRequest{HasCause: true, Cause: cause})
			e.dialFailed(c, dialStatusForCause(cause), cause)
			return
		}
		// A BYE from a phone carries no cause in ChannelHangupRequest; one
		// from another Asterisk over the trunk does (recorded f/g traces).
		hr := hangupRequest{}
		if c.trunk {
			hr = hangupRequest{HasCause: true, Cause: cause}
		}
		e.hangup(c, cause, &hr)
	})
}

// answerLeg answers the caller of an inbound SIP channel.
func (e *engine) answerLeg(c *channel) {
	if c.leg != nil && c.inbound {
		leg := c.leg
		e.later(leg.Answer)
	}
}

// pjsipName parses PJSIP/<resource> into the endpoint whose name the
// channel takes: "2001" for a phone, "ast2" for "2099@ast2".
func pjsipEndpointName(resource string) string {
	if i := strings.IndexByte(resource, '/'); i >= 0 {
		return resource[:i]
	}
	if i := strings.LastIndexByte(resource, '@'); i >= 0 {
		return resource[i+1:]
	}
	return resource
}

func (e *engine) pjsipName(endpoint string) string {
	return fmt.Sprintf("PJSIP/%s-%08x", endpoint, e.pjsipSeq.Add(1)-1)
}
