package esl

import (
	"fmt"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// DropConnections closes every event socket connection of the server,
// inbound and outbound, at once and without any notice, as a crashing
// process or a broken network does. It returns how many it closed.
func (s *Server) DropConnections() int {
	s.regMu.RLock()
	n := len(s.conns)
	s.regMu.RUnlock()
	s.dropAll()
	return n
}

// SetRefusing makes the server accept and close new inbound connections
// at once (on) or serve them again (off). Outbound connections to the
// controller are not affected.
func (s *Server) SetRefusing(on bool) {
	s.lnMu.Lock()
	s.refusing = on
	s.lnMu.Unlock()
}

// Malformed is a kind of broken frame for SendMalformed.
type Malformed int

const (
	// MalformedContentLength: a frame whose Content-Length is not a number.
	MalformedContentLength Malformed = iota
	// MalformedEvent: a text/event-plain frame whose body is not headers
	// and has broken escapes.
	MalformedEvent
	// MalformedJSON: a text/event-json frame whose body is not JSON.
	MalformedJSON
	// MalformedHeaderLine: a frame with a header line without a colon and
	// an unknown content type.
	MalformedHeaderLine
)

func (m Malformed) frame() []byte {
	switch m {
	case MalformedContentLength:
		return []byte("Content-Length: twelve\nContent-Type: text/event-plain\n\n")
	case MalformedEvent:
		body := "%%%zz garbage without a colon\n%E9%\n\n"
		return []byte(fmt.Sprintf("Content-Length: %d\nContent-Type: text/event-plain\n\n%s", len(body), body))
	case MalformedJSON:
		body := "{\"Event-Name\": \"CHANNEL_ANSWER\", \"Unique-ID\": [1,2"
		return []byte(fmt.Sprintf("Content-Length: %d\nContent-Type: text/event-json\n\n%s", len(body), body))
	default:
		return []byte("this line has no colon\nContent-Type: text/x-nonsense\n\n")
	}
}

// SendMalformed writes a broken frame on every connection (outbound ones
// only with outboundOnly) between the frames already queued. It returns
// how many connections got it.
func (s *Server) SendMalformed(kind Malformed, outboundOnly bool) int {
	s.regMu.RLock()
	list := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		if outboundOnly && !c.outbound {
			continue
		}
		list = append(list, c)
	}
	s.regMu.RUnlock()
	b := kind.frame()
	for _, c := range list {
		c.sendRaw(b)
	}
	return len(list)
}

// BlindTransfer transfers a channel to dest in its own context as a SIP
// REFER received from its peer does (the socket application runs again,
// so a second outbound connection arrives for the same uuid).
func (s *Server) BlindTransfer(uuid, dest string) error {
	return s.model.Do(func(tx *callmodel.Tx) error {
		ip := s.model.IP()
		if ip == "" {
			ip = "127.0.0.1"
		}
		by := "<sip:refer@" + ip + ">"
		if snap, ok := tx.Snapshot(uuid); ok && snap.BridgedTo != "" {
			if peer, ok := tx.Snapshot(snap.BridgedTo); ok {
				by = "<sip:" + peer.Destination + "@" + ip + ">"
			}
		}
		return s.transfer(tx, uuid, dest, "", "", &referInfo{
			referTo:    "<sip:" + dest + "@" + ip + ">",
			referredBy: by,
		})
	})
}

// Transfer is uuid_transfer <uuid> <dest> XML <context>.
func (s *Server) Transfer(uuid, dest, context string) error {
	return s.model.Do(func(tx *callmodel.Tx) error {
		return s.transfer(tx, uuid, dest, "XML", context, nil)
	})
}

// Connections counts the open connections (inbound, outbound).
func (s *Server) Connections() (inbound, outbound int) {
	s.regMu.RLock()
	defer s.regMu.RUnlock()
	for c := range s.conns {
		if c.outbound {
			outbound++
		} else {
			inbound++
		}
	}
	return inbound, outbound
}
