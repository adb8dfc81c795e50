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

// AttendedTransfer is a SIP REFER with Replaces that the phone on channel
// referrer sends in its dialog, naming the dialog of channel replaced (the
// same phone's consultation call), as mod_sofia 1.10 carries it out (a
// recording of the lab's fs1 is in integration/traces/freeswitch): the
// replaced channel leaves its bridge and, with hangup_after_bridge, hangs up
// (NORMAL_CLEARING, transfer_disposition=replaced); the referrer hangs up
// (recv_replace); referrer's partner leaves its bridge and ends its
// applications (the socket application too: a transfer source
// <time>:<uuid>:uuid_br:<leg>, no new connection) and is bridged with the
// replaced channel's partner (uuid_bridge).
func (s *Server) AttendedTransfer(referrer, replaced string) error {
	return s.model.Do(func(tx *callmodel.Tx) error {
		rs, ok := tx.Snapshot(referrer)
		ps, ok2 := tx.Snapshot(replaced)
		if !ok || !ok2 || rs.BridgedTo == "" || ps.BridgedTo == "" {
			return callmodel.ErrNoChannel
		}
		joined, leg := rs.BridgedTo, ps.BridgedTo
		fj := fsOf(tx, joined)
		if fj == nil || fsOf(tx, leg) == nil || joined == leg {
			return callmodel.ErrNoChannel
		}
		now := tx.Now()
		_ = tx.SetVar(replaced, "transfer_disposition", "replaced")
		_ = tx.SetVar(replaced, "endpoint_disposition", "ATTENDED_TRANSFER")
		_ = tx.SetVar(referrer, "transfer_disposition", "recv_replace")
		_ = tx.SetVar(joined, "transfer_source", fmt.Sprintf("%d:%s:uuid_br:%s", now.Unix(), tx.NewUUID(), leg))
		_ = tx.SetVar(leg, "transfer_source", fmt.Sprintf("%d:%s:uuid_br:%s", now.Unix(), tx.NewUUID(), joined))
		_ = tx.SetVar(leg, "transfer_disposition", "bridge")
		// The replaced dialog's channel leaves the leg (which lives on) and
		// hangs up.
		if fr := fsOf(tx, replaced); fr != nil {
			fr.replaced = true
			if fr.bridge != nil {
				// the bridge application ends without the leg
				fr.bridge.bridged = false
			}
		}
		tx.Unbridge(replaced)
		tx.Hangup(replaced, callmodel.CauseNormalClearing, callmodel.ByRequest)
		// its applications end with the hangup, before the join
		s.unwind(tx, replaced)
		// The referrer hangs up; its partner leaves their bridge as a
		// transferred channel does (bridgeEnded), and its applications end.
		tx.Hangup(referrer, callmodel.CauseNormalClearing, callmodel.ByRequest)
		// From here on the joined channel's events name the leg as its
		// other side (the leg's name the joined channel).
		fl := fsOf(tx, leg)
		if ls, ok := tx.Snapshot(leg); ok {
			ls.Vars = callmodel.Vars{}
			fj.v.other = &otherProfile{typ: "originatee", snap: ls, view: fl.v}
		}
		if js, ok := tx.Snapshot(joined); ok {
			js.Vars = callmodel.Vars{}
			fl.v.other = &otherProfile{typ: "originator", snap: js, view: fj.v}
		}
		fj.transferring = true
		tx.Unbridge(joined)
		s.endApps(tx, joined, false)
		fj.dp = nil
		s.emit(tx, joined, "CHANNEL_EXECUTE", nil, appHeaders("uuid_bridge", leg, "", nil))
		s.emit(tx, leg, "CHANNEL_EXECUTE", nil, appHeaders("uuid_bridge", joined, "", nil))
		return tx.Bridge(joined, leg)
	})
}
