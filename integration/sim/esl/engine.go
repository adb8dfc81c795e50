package esl

import (
	"strconv"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// introKind is the set of events FreeSWITCH raises while it creates a
// channel, which the model reports as one ChannelCreated.
type introKind uint8

const (
	// introOutgoing: a leg created by originate or bridge (loopback -a,
	// sofia, user): [CHANNEL_UUID] CHANNEL_OUTGOING, STATE(CS_INIT),
	// CHANNEL_CREATE, CHANNEL_ORIGINATE, STATE(CS_ROUTING),
	// STATE(CS_CONSUME_MEDIA).
	introOutgoing introKind = iota
	// introIncoming: a channel that runs the dialplan (loopback -b, a call
	// arriving from SIP): STATE(CS_INIT), CHANNEL_CREATE,
	// CALLSTATE(RINGING), STATE(CS_ROUTING).
	introIncoming
)

// fsChan is the FreeSWITCH side of a model channel, kept in the model as
// the channel's Ext: it lives and dies with the channel.
type fsChan struct {
	v       view
	intro   introKind
	oldUUID string // origination_uuid: the uuid the channel had first
	loop    byte   // 'A' or 'B' for loopback halves

	// execution
	started bool      // the channel runs applications (CS_EXECUTE)
	dp      []action  // dialplan actions still to run
	stack   []*appRun // applications running, outermost first
	queue   []*execReq
	unwound bool // the running applications were ended by the hangup

	// originate / bridge bookkeeping
	bridge *bridgeRun // the bridge application running on this channel
	// transferring is set while a transfer takes the channel out of its
	// bridge: hangup_after_bridge does not apply then (FreeSWITCH skips it
	// for CF_TRANSFER channels in switch_ivr_multi_threaded_bridge).
	transferring bool
	// replaced is set when a REFER with Replaces named this channel's
	// dialog: it leaves its bridge and hangs up, and the leg it was bridged
	// with lives on (joined to the transferred party).
	replaced bool
	// keepOnUnbridge: FreeSWITCH's att_xfer takes the other side of this
	// channel's bridge away and joins the channel elsewhere: the bridge's
	// end neither hangs it up nor ends its applications by itself.
	keepOnUnbridge bool
	// attXfer is the att_xfer application running on this channel.
	attXfer *attXferRun
}

type action struct{ app, data string }

// execReq is an application queued by sendmsg.
type execReq struct {
	app, data, id string
	loops         int
}

func fsOf(tx *callmodel.Tx, uuid string) *fsChan {
	fc, _ := tx.Ext(uuid).(*fsChan)
	return fc
}

// stamp is what an event carries of the FreeSWITCH view.
type stamp struct {
	v view
	// steps lists the FreeSWITCH events a model event stands for, each
	// with the state it shows.
	steps []step
}

// step is one FreeSWITCH event derived from a model event.
type step struct {
	name      string
	cs        int
	csNumber  int
	callState string
	pre       []header
	post      []header
}

// noteData is the payload of the Note events the engine emits: one
// FreeSWITCH event of a channel or of the server.
type noteData struct {
	name string
	pre  []header
	post []header
	// callState, when set, replaces the Channel-Call-State header (the
	// CS_ROUTING state change after a transfer reports RINGING).
	callState string
	// body of a BACKGROUND_JOB
	body    string
	hasBody bool
	// a non-channel event's headers after the base ones
	plain []header
}

const noteFS = "fs"

// emit queues a FreeSWITCH event of a channel with the channel's current
// view.
func (s *Server) emit(tx *callmodel.Tx, uuid string, name string, pre, post []header) {
	tx.Emit(uuid, noteFS, &noteData{name: name, pre: pre, post: post})
}

// emitServer queues an event that is not about a channel.
func (s *Server) emitServer(tx *callmodel.Tx, name string, headers []header, body string, hasBody bool) {
	tx.Emit("", noteFS, &noteData{name: name, plain: headers, body: body, hasBody: hasBody})
}

// setState moves the channel to a new state and raises CHANNEL_STATE.
func (s *Server) setState(tx *callmodel.Tx, uuid string, cs int) {
	fc := fsOf(tx, uuid)
	if fc == nil || fc.v.cs == cs {
		return
	}
	fc.v.cs = cs
	fc.v.csNumber = cs
	s.emit(tx, uuid, "CHANNEL_STATE", nil, nil)
}

// setCallState changes the call state and raises CHANNEL_CALLSTATE.
func (s *Server) setCallState(tx *callmodel.Tx, uuid string, cs string) {
	fc := fsOf(tx, uuid)
	if fc == nil || fc.v.callState == cs {
		return
	}
	prev := fc.v.callState
	fc.v.callState = cs
	s.emit(tx, uuid, "CHANNEL_CALLSTATE", []header{
		{"Original-Channel-Call-State", prev},
		{"Channel-Call-State-Number", strconv.Itoa(callStateNumbers[cs])},
	}, nil)
}

// Stamp records the FreeSWITCH view of the channel as each event is
// queued, and moves that view along with the model's facts.
func (s *Server) Stamp(tx *callmodel.Tx, ev *callmodel.Event) {
	uuid := ev.Channel.UUID
	if uuid == "" {
		return
	}
	fc, _ := tx.Ext(uuid).(*fsChan)
	if fc == nil {
		return
	}
	st := &stamp{v: fc.v}
	switch ev.Kind {
	case callmodel.ChannelCreated:
		st.steps = s.introSteps(fc)
		st.v = fc.v
	case callmodel.ChannelRinging:
		st.steps = append(st.steps, step{name: "CHANNEL_PROGRESS", cs: fc.v.cs, csNumber: fc.v.csNumber, callState: fc.v.callState})
		if fc.v.callState != callRinging && fc.v.callState != callActive {
			fc.v.callState = callRinging
			st.steps = append(st.steps, step{name: "CHANNEL_CALLSTATE", cs: fc.v.cs, csNumber: fc.v.csNumber, callState: callRinging,
				pre: []header{{"Original-Channel-Call-State", st.v.callState}, {"Channel-Call-State-Number", "2"}}})
		}
	case callmodel.ChannelEarlyMedia:
		st.steps = append(st.steps, step{name: "CHANNEL_PROGRESS_MEDIA", cs: fc.v.cs, csNumber: fc.v.csNumber, callState: fc.v.callState})
		if fc.v.callState != callEarly && fc.v.callState != callActive {
			prev := fc.v.callState
			fc.v.callState = callEarly
			st.steps = append(st.steps, step{name: "CHANNEL_CALLSTATE", cs: fc.v.cs, csNumber: fc.v.csNumber, callState: callEarly,
				pre: []header{{"Original-Channel-Call-State", prev}, {"Channel-Call-State-Number", "3"}}})
		}
	case callmodel.ChannelAnswered:
		st.steps = append(st.steps, step{name: "CHANNEL_ANSWER", cs: fc.v.cs, csNumber: fc.v.csNumber, callState: fc.v.callState})
		if fc.v.callState != callActive && fc.v.callState != callRingWait {
			prev := fc.v.callState
			fc.v.callState = callActive
			st.steps = append(st.steps, step{name: "CHANNEL_CALLSTATE", cs: fc.v.cs, csNumber: fc.v.csNumber, callState: callActive,
				pre: []header{{"Original-Channel-Call-State", prev}, {"Channel-Call-State-Number", "4"}}})
		}
	case callmodel.ChannelBridged, callmodel.ChannelUnbridged:
		name := "CHANNEL_BRIDGE"
		if ev.Kind == callmodel.ChannelUnbridged {
			name = "CHANNEL_UNBRIDGE"
		}
		st.steps = append(st.steps, step{name: name, cs: fc.v.cs, csNumber: fc.v.csNumber, callState: fc.v.callState,
			pre: []header{{"Bridge-A-Unique-ID", ev.Channel.UUID}, {"Bridge-B-Unique-ID", ev.Other.UUID}}})
	case callmodel.ChannelHangup:
		s.noteBridgeEnd(tx, fc, &ev.Channel)
		fc.v.csNumber = csHangup
		st.v.csNumber = csHangup
		st.steps = append(st.steps, step{name: "CHANNEL_HANGUP", cs: fc.v.cs, csNumber: csHangup, callState: fc.v.callState})
	case callmodel.ChannelDestroyed:
		cs := fc.v.callState
		st.steps = append(st.steps,
			step{name: "CHANNEL_STATE", cs: csHangup, csNumber: csHangup, callState: cs},
			step{name: "CHANNEL_CALLSTATE", cs: csHangup, csNumber: csHangup, callState: callHangup,
				pre: []header{{"Original-Channel-Call-State", cs}, {"Channel-Call-State-Number", "7"}}},
			step{name: "CHANNEL_STATE", cs: csReporting, csNumber: csReporting, callState: callHangup},
			step{name: "CHANNEL_HANGUP_COMPLETE", cs: csReporting, csNumber: csReporting, callState: callHangup,
				pre: []header{{"Hangup-Cause", ev.Channel.Cause.Name}}},
			step{name: "CHANNEL_DESTROY", cs: csReporting, csNumber: csReporting, callState: callHangup},
			step{name: "CHANNEL_STATE", cs: csDestroy, csNumber: csDestroy, callState: callHangup},
		)
	case callmodel.Note:
		// the note's own data says what it is; the view is enough
	}
	ev.Stamp = st
}

// introSteps lists the events of a channel's creation and leaves the view
// in the state creation ends in.
func (s *Server) introSteps(fc *fsChan) []step {
	var out []step
	switch fc.intro {
	case introOutgoing:
		if fc.oldUUID != "" {
			out = append(out, step{name: "CHANNEL_UUID", cs: csNone, csNumber: csInit, callState: callDown,
				pre: []header{{"Old-Unique-ID", fc.oldUUID}}})
		}
		out = append(out,
			step{name: "CHANNEL_OUTGOING", cs: csNone, csNumber: csInit, callState: callDown},
			step{name: "CHANNEL_STATE", cs: csInit, csNumber: csInit, callState: callDown},
			step{name: "CHANNEL_CREATE", cs: csInit, csNumber: csInit, callState: callDown},
			step{name: "CHANNEL_ORIGINATE", cs: csInit, csNumber: csInit, callState: callDown},
			step{name: "CHANNEL_STATE", cs: csRouting, csNumber: csRouting, callState: callDown},
			step{name: "CHANNEL_STATE", cs: csConsumeMedia, csNumber: csConsumeMedia, callState: callDown},
		)
		fc.v.cs, fc.v.csNumber, fc.v.callState = csConsumeMedia, csConsumeMedia, callDown
	case introIncoming:
		out = append(out,
			step{name: "CHANNEL_STATE", cs: csInit, csNumber: csInit, callState: callDown},
			step{name: "CHANNEL_CREATE", cs: csInit, csNumber: csInit, callState: callDown},
			step{name: "CHANNEL_CALLSTATE", cs: csRouting, csNumber: csRouting, callState: callRinging,
				pre: []header{{"Original-Channel-Call-State", callDown}, {"Channel-Call-State-Number", "2"}}},
			step{name: "CHANNEL_STATE", cs: csRouting, csNumber: csRouting, callState: callRinging},
		)
		fc.v.cs, fc.v.csNumber, fc.v.callState = csRouting, csRouting, callRinging
	}
	return out
}

// render turns a model event into the FreeSWITCH events it stands for.
// Each gets its Event-Sequence number; only the ones a connection may want
// are kept, with what their headers will be built from.
func (s *Server) render(ev *callmodel.Event, next func() uint64) []*fsEvent {
	if ev.Kind == callmodel.Note {
		nd, ok := ev.Data.(*noteData)
		if !ok || ev.Name != noteFS {
			return nil
		}
		seq := next()
		if nd.plain != nil || ev.Channel.UUID == "" {
			if !s.mayWant(nd.name, "") {
				return nil
			}
			return []*fsEvent{{name: nd.name, seq: seq, at: ev.Time, core: s.core, plain: nd.plain, body: nd.body, hasBody: nd.hasBody}}
		}
		st, _ := ev.Stamp.(*stamp)
		if st == nil || !s.mayWant(nd.name, ev.Channel.UUID) {
			return nil
		}
		e := &fsEvent{name: nd.name, uuid: ev.Channel.UUID, seq: seq, at: ev.Time, core: s.core,
			snap: &ev.Channel, view: st.v, pre: nd.pre, post: nd.post}
		if nd.callState != "" {
			e.view.callState = nd.callState
		}
		return []*fsEvent{e}
	}
	st, _ := ev.Stamp.(*stamp)
	if st == nil {
		return nil
	}
	var out []*fsEvent
	var early *callmodel.Snapshot
	for i := range st.steps {
		sp := &st.steps[i]
		seq := next()
		if !s.mayWant(sp.name, ev.Channel.UUID) {
			continue
		}
		e := &fsEvent{name: sp.name, uuid: ev.Channel.UUID, seq: seq, at: ev.Time, core: s.core,
			snap: &ev.Channel, view: st.v, pre: sp.pre, post: sp.post}
		e.view.cs, e.view.csNumber, e.view.callState = sp.cs, sp.csNumber, sp.callState
		if sp.name == "CHANNEL_OUTGOING" || sp.name == "CHANNEL_UUID" || (sp.name == "CHANNEL_STATE" && sp.cs == csInit) {
			// before CS_INIT the channel has not answered, rung, or hung up
			if early == nil {
				c := ev.Channel
				c.State = callmodel.StateDown
				early = &c
			}
			e.snap = early
		}
		out = append(out, e)
	}
	return out
}

// mayWant tells whether any connection could take an event, so that
// nobody pays for events nobody reads.
func (s *Server) mayWant(name, uuid string) bool {
	s.regMu.RLock()
	defer s.regMu.RUnlock()
	if len(s.global) > 0 {
		return true
	}
	if uuid == "" {
		return false
	}
	if len(s.byUUID[uuid]) > 0 {
		return true
	}
	return name == "CHANNEL_HANGUP_COMPLETE" && len(s.bound[uuid]) > 0
}

// now is the model clock's time.
func (s *Server) now() time.Time { return s.fleet.Clock().Now() }

// noteBridgeEnd records on a bridge's A leg why the bridge ends, after the
// HANGUP that ends it and before the UNBRIDGE (as FreeSWITCH shows it).
func (s *Server) noteBridgeEnd(tx *callmodel.Tx, fc *fsChan, snap *callmodel.Snapshot) {
	if snap.BridgedTo == "" {
		return
	}
	a := ""
	if fc.bridge != nil && fc.bridge.b == snap.BridgedTo {
		a = snap.UUID
	} else if fp := fsOf(tx, snap.BridgedTo); fp != nil && fp.bridge != nil && fp.bridge.b == snap.UUID {
		a = snap.BridgedTo
	}
	if a != "" {
		_ = tx.SetVar(a, "bridge_hangup_cause", snap.Cause.Name)
	}
}
