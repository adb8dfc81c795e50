package esl

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

var (
	causeInvalidGateway     = callmodel.Cause{Name: "INVALID_GATEWAY", Code: 608}
	causeChanNotImplemented = callmodel.Cause{Name: "CHAN_NOT_IMPLEMENTED", Code: 66}
	causeSuccess            = callmodel.Cause{Name: "SUCCESS", Code: 142}
)

// originate is switch_ivr_originate: the groups of a dial string tried in
// turn, the legs of a group rung together, the first answer winning.
type originate struct {
	s       *Server
	aleg    string // the originating channel (bridge); "" for the originate api
	ds      *dialString
	gi      int
	legs    []*origLeg
	cancelT func()
	done    bool
	// result
	onDone func(tx *callmodel.Tx, winner string, cause callmodel.Cause)
	// per call
	defaultCaller callmodel.Party
	inherited     []header // variables the legs inherit from the A leg
	causes        []string // originate_causes
	originated    []string // originated_legs
	timedOut      bool
}

type origLeg struct {
	uuid     string
	endpoint string
	vars     []header
	failed   bool
	cause    callmodel.Cause
	cancelT  func()
}

// sofiaTarget resolves an endpoint to a model endpoint.
type legTarget struct {
	loopback bool
	exten    string
	context  string
	ep       callmodel.Endpoint
	name     string
	callee   callmodel.Party
}

// resolve maps a FreeSWITCH endpoint to what the model can dial.
func (s *Server) resolve(endpoint string) (legTarget, callmodel.Cause) {
	parts := strings.Split(endpoint, "/")
	switch strings.ToLower(parts[0]) {
	case "loopback":
		if len(parts) < 2 || parts[1] == "" {
			return legTarget{}, callmodel.CauseInvalidNumberFormat
		}
		ctx := "default"
		if len(parts) > 2 && parts[2] != "" {
			ctx = parts[2]
		}
		return legTarget{loopback: true, exten: parts[1], context: ctx}, callmodel.Cause{}
	case "user":
		if len(parts) < 2 || parts[1] == "" {
			return legTarget{}, callmodel.CauseInvalidNumberFormat
		}
		ext, _, _ := strings.Cut(parts[1], "@")
		return s.phoneTarget(ext), callmodel.Cause{}
	case "sofia":
		if len(parts) >= 4 && strings.EqualFold(parts[1], "gateway") {
			gw, dest := parts[2], strings.Join(parts[3:], "/")
			dest = strings.TrimPrefix(dest, "sip:")
			if at := strings.IndexByte(dest, '@'); at >= 0 {
				dest = dest[:at]
			}
			t := legTarget{name: "sofia/internal/" + dest, callee: callmodel.Party{Name: "Outbound Call", Number: dest}}
			if strings.EqualFold(gw, "pstn") {
				t.ep = callmodel.PSTNEndpoint(dest)
				return t, callmodel.Cause{}
			}
			server, ok := s.cfg.Gateways[gw]
			if !ok {
				return legTarget{}, causeInvalidGateway
			}
			t.ep = callmodel.TrunkEndpoint(server, dest)
			return t, callmodel.Cause{}
		}
		if len(parts) >= 3 {
			uri := strings.TrimPrefix(strings.Join(parts[2:], "/"), "sip:")
			user, host, _ := strings.Cut(uri, "@")
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			for _, srv := range s.fleet.Servers() {
				if host != "" && srv.IP() == host && srv != s.model {
					return legTarget{name: "sofia/internal/" + user, ep: callmodel.TrunkEndpoint(srv.Name(), user),
						callee: callmodel.Party{Name: "Outbound Call", Number: user}}, callmodel.Cause{}
				}
			}
			return s.phoneTarget(user), callmodel.Cause{}
		}
		return legTarget{}, callmodel.CauseInvalidNumberFormat
	case "error":
		if len(parts) > 1 {
			if c, ok := callmodel.CauseByName(parts[1]); ok {
				return legTarget{}, c
			}
		}
		return legTarget{}, callmodel.CauseNormalClearing
	}
	return legTarget{}, causeChanNotImplemented
}

func (s *Server) phoneTarget(ext string) legTarget {
	ip := s.model.IP()
	if ip == "" {
		ip = "127.0.0.1"
	}
	return legTarget{
		name:   "sofia/internal/" + ext + "@" + ip,
		ep:     callmodel.PhoneEndpoint(ext),
		callee: callmodel.Party{Name: "Outbound Call", Number: ext},
	}
}

// startOriginate begins an originate; onDone runs once, in a later event's
// transaction (or this one for a dial string that fails at once).
func (s *Server) startOriginate(tx *callmodel.Tx, o *originate) {
	o.s = s
	s.startGroup(tx, o)
}

// groupTimeout is originate_timeout (call_timeout for bridge) from the dial
// string, else from the originating channel, else 60 s; each group of a
// failover chain gets it afresh.
func (o *originate) groupTimeout(tx *callmodel.Tx) time.Duration {
	secs := func(v string) (time.Duration, bool) {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n <= 0 {
			return 0, false
		}
		return time.Duration(n) * time.Second, true
	}
	for _, name := range []string{"originate_timeout", "call_timeout"} {
		if v, ok := lookup(name, o.ds.global); ok {
			if d, ok := secs(v); ok {
				return d
			}
		}
	}
	if o.aleg != "" {
		for _, name := range []string{"call_timeout", "originate_timeout"} {
			if v, ok := tx.Var(o.aleg, name); ok {
				if d, ok := secs(v); ok {
					return d
				}
			}
		}
	}
	return 60 * time.Second
}

func (s *Server) startGroup(tx *callmodel.Tx, o *originate) {
	if o.gi >= len(o.ds.groups) {
		o.finish(tx, "", o.failureCause())
		return
	}
	group := o.ds.groups[o.gi]
	o.legs = nil
	for i, dl := range group {
		leg := &origLeg{endpoint: dl.endpoint, vars: dl.vars}
		o.legs = append(o.legs, leg)
		uuid, cause := s.createLeg(tx, o, leg, i == 0 && o.gi == 0)
		if uuid == "" {
			leg.failed, leg.cause = true, cause
			continue
		}
		leg.uuid = uuid
		o.originated = append(o.originated, uuid+";Outbound Call;"+legCalleeNumber(tx, uuid))
		if lt, ok := lookup("leg_timeout", leg.vars); ok {
			if n, err := strconv.Atoi(lt); err == nil && n > 0 {
				u := uuid
				leg.cancelT = tx.AfterFunc(u, time.Duration(n)*time.Second, func(tx *callmodel.Tx) {
					if !o.done && !leg.failed {
						tx.Hangup(u, callmodel.CauseNoAnswer, callmodel.ByTimeout)
					}
				})
			}
		}
		_ = tx.Watch(uuid, func(tx *callmodel.Tx, ev *callmodel.Event) bool {
			return o.legEvent(tx, leg, ev)
		})
	}
	if o.allFailed() {
		o.groupFailed(tx)
		return
	}
	d := wholeSecondTimeout(tx.Now(), o.groupTimeout(tx))
	gi := o.gi
	o.cancelT = tx.AfterFunc("", d, func(tx *callmodel.Tx) {
		if o.done || o.gi != gi {
			return
		}
		o.timedOut = true
		for _, l := range o.legs {
			if !l.failed && l.uuid != "" {
				tx.Hangup(l.uuid, callmodel.CauseNoAnswer, callmodel.ByTimeout)
			}
		}
	})
}

// wholeSecondTimeout is how long FreeSWITCH really lets an originate ring
// for a timeout of limit: it compares whole epoch seconds
// (switch_timestamp(NULL) - start >= timelimit_sec in switch_ivr_originate.c),
// so the ring ends when the clock's second has advanced limit times, up to a
// second early (trace c: originate_timeout=5 ended after 4.92 s).
func wholeSecondTimeout(now time.Time, limit time.Duration) time.Duration {
	return now.Truncate(time.Second).Add(limit).Sub(now)
}

func legCalleeNumber(tx *callmodel.Tx, uuid string) string {
	if snap, ok := tx.Snapshot(uuid); ok {
		return snap.Callee.Number
	}
	return ""
}

func (o *originate) allFailed() bool {
	for _, l := range o.legs {
		if !l.failed {
			return false
		}
	}
	return true
}

func (o *originate) failureCause() callmodel.Cause {
	if o.timedOut {
		return callmodel.CauseNoAnswer
	}
	for _, l := range o.legs {
		if l.failed && !l.cause.IsZero() {
			return l.cause
		}
	}
	return callmodel.CauseDestinationOutOfOrder
}

// legEvent follows a leg until it answers or fails.
func (o *originate) legEvent(tx *callmodel.Tx, leg *origLeg, ev *callmodel.Event) bool {
	if o.done {
		return false
	}
	switch ev.Kind {
	case callmodel.ChannelAnswered:
		if ev.Channel.UUID != leg.uuid {
			return true
		}
		o.win(tx, leg)
		return false
	case callmodel.ChannelHangup:
		if ev.Channel.UUID != leg.uuid {
			return true
		}
		leg.failed = true
		leg.cause = ev.Channel.Cause
		o.causes = append(o.causes, leg.uuid+";"+leg.cause.Name)
		if o.allFailed() {
			o.groupFailed(tx)
		}
		return false
	}
	return true
}

func (o *originate) groupFailed(tx *callmodel.Tx) {
	if o.cancelT != nil {
		o.cancelT()
		o.cancelT = nil
	}
	if o.timedOut {
		cont, _ := lookup("originate_continue_on_timeout", o.ds.global)
		if cont != "true" || o.gi+1 >= len(o.ds.groups) {
			o.finish(tx, "", callmodel.CauseNoAnswer)
			return
		}
		o.timedOut = false
	}
	if o.gi+1 < len(o.ds.groups) {
		o.gi++
		o.s.startGroup(tx, o)
		return
	}
	o.finish(tx, "", o.failureCause())
}

func (o *originate) win(tx *callmodel.Tx, leg *origLeg) {
	if o.cancelT != nil {
		o.cancelT()
		o.cancelT = nil
	}
	for _, l := range o.legs {
		if l != leg && !l.failed && l.uuid != "" {
			l.failed = true
			tx.Hangup(l.uuid, callmodel.CauseLoseRace, callmodel.ByRequest)
		}
	}
	if leg.cancelT != nil {
		leg.cancelT()
	}
	if fl := fsOf(tx, leg.uuid); fl != nil && fl.loop == 0 {
		// a SIP leg learns who answered from the 200 OK: without a display
		// name, sofia shows the number as the name
		if snap, ok := tx.Snapshot(leg.uuid); ok && snap.Callee.Number != "" {
			_ = tx.SetCallee(leg.uuid, callmodel.Party{Name: snap.Callee.Number, Number: snap.Callee.Number})
		}
	}
	o.causes = append(o.causes, leg.uuid+";NONE")
	o.finish(tx, leg.uuid, causeSuccess)
}

// cancel ends an originate whose originator went away.
func (o *originate) cancel(tx *callmodel.Tx, cause callmodel.Cause) {
	if o.done {
		return
	}
	for _, l := range o.legs {
		if !l.failed && l.uuid != "" {
			l.failed = true
			// The cancelled legs are listed too (FreeSWITCH 1.10.12: the
			// caller of bridge [origination_uuid=b1]loopback/301/targets|...
			// hung up while b1 rang ends it with originate_causes
			// b1;ORIGINATOR_CANCEL).
			o.causes = append(o.causes, l.uuid+";"+cause.Name)
			tx.Hangup(l.uuid, cause, callmodel.ByRequest)
		}
	}
	o.finish(tx, "", cause)
}

func (o *originate) finish(tx *callmodel.Tx, winner string, cause callmodel.Cause) {
	if o.done {
		return
	}
	o.done = true
	if o.cancelT != nil {
		o.cancelT()
		o.cancelT = nil
	}
	o.onDone(tx, winner, cause)
}

// createLeg creates one leg: a loopback pair or a model dial.
func (s *Server) createLeg(tx *callmodel.Tx, o *originate, leg *origLeg, first bool) (string, callmodel.Cause) {
	t, cause := s.resolve(leg.endpoint)
	if !cause.IsZero() {
		return "", cause
	}
	all := [][]header{o.inherited, o.ds.global, leg.vars}
	caller := o.defaultCaller
	if v, ok := lookup("origination_caller_id_number", all...); ok {
		caller.Number = v
	}
	if v, ok := lookup("origination_caller_id_name", all...); ok {
		caller.Name = v
	}
	uuid := ""
	oldUUID := ""
	// A leg's own origination_uuid ([...]) names that leg, whichever it is
	// (FreeSWITCH 1.10.12: bridge [origination_uuid=b1]loopback/203|
	// [origination_uuid=b2]loopback/204 creates b1, then b2); the
	// dial string's ({...}) names only the first leg created.
	v, ok := lookup("origination_uuid", leg.vars)
	if !ok && first {
		v, ok = lookup("origination_uuid", o.ds.global)
	}
	if ok && v != "" {
		if tx.Exists(v) {
			return "", callmodel.CauseNormalTemporaryFailure
		}
		uuid, oldUUID = v, tx.NewUUID()
	}
	if uuid == "" {
		uuid = tx.NewUUID()
	}
	callUUID := uuid
	ani, orig := caller.Number, caller
	var other *otherProfile
	if o.aleg != "" {
		callUUID = o.aleg
		if snap, ok := tx.Snapshot(o.aleg); ok {
			if fa := fsOf(tx, o.aleg); fa != nil {
				other = &otherProfile{typ: "originator", snap: snap, view: fa.v}
				other.snap.Vars = callmodel.Vars{}
				// the legs of a bridge keep the A leg's ANI and original caller id
				ani, orig = fa.v.ani, fa.v.origCaller
			}
		}
	}
	var vars []callmodel.Var
	addVars := func(hs []header) {
		for _, h := range hs {
			vars = append(vars, callmodel.Var{Name: h.name, Value: h.value})
		}
	}
	var headers []callmodel.Var
	for _, l := range all {
		for _, h := range l {
			if strings.HasPrefix(h.name, "sip_h_") {
				headers = append(headers, callmodel.Var{Name: strings.TrimPrefix(h.name, "sip_h_"), Value: h.value})
			}
		}
	}
	now := tx.Now()
	s.sessionID++
	sid := strconv.FormatInt(s.sessionID, 10)
	if t.loopback {
		bUUID := tx.NewUUID()
		callee := callmodel.Party{Name: "Outbound Call", Number: t.context}
		aName := "loopback/" + t.exten + "-a"
		bName := "loopback/" + t.exten + "-b"
		vars = append(vars,
			callmodel.Var{Name: "direction", Value: "outbound"},
			callmodel.Var{Name: "is_outbound", Value: "true"},
			callmodel.Var{Name: "uuid", Value: uuid},
			callmodel.Var{Name: "session_id", Value: sid},
			callmodel.Var{Name: "channel_name", Value: aName},
		)
		addVars(o.inherited)
		addVars(o.ds.global)
		addVars(leg.vars)
		vars = append(vars,
			callmodel.Var{Name: "originate_early_media", Value: "true"},
			callmodel.Var{Name: "originate_endpoint", Value: "loopback"},
			callmodel.Var{Name: "other_loopback_leg_uuid", Value: bUUID},
			callmodel.Var{Name: "loopback_leg", Value: "A"},
			callmodel.Var{Name: "call_uuid", Value: callUUID},
		)
		s.sessionID++
		bVars := []callmodel.Var{
			{Name: "direction", Value: "inbound"},
			{Name: "uuid", Value: bUUID},
			{Name: "session_id", Value: strconv.FormatInt(s.sessionID, 10)},
			{Name: "channel_name", Value: bName},
			{Name: "other_loopback_leg_uuid", Value: uuid},
			{Name: "loopback_leg", Value: "B"},
			{Name: "call_uuid", Value: bUUID},
		}
		if o.aleg != "" {
			// loopback names the channel that originated the pair (an
			// application's originate, as att_xfer's) on its -b leg
			bVars = append(bVars, callmodel.Var{Name: "other_loopback_from_uuid", Value: o.aleg})
		}
		for _, h := range headers {
			bVars = append(bVars, callmodel.Var{Name: "sip_h_" + h.Name, Value: h.Value})
		}
		aExt := &fsChan{intro: introOutgoing, oldUUID: oldUUID, loop: 'A', v: view{
			callUUID: callUUID, codec: codecL16, source: "mod_loopback", dialplan: "xml",
			ani: ani, origCaller: orig, profileIdx: 1, profileAt: now, other: other,
		}}
		bExt := &fsChan{intro: introIncoming, loop: 'B', v: view{
			callUUID: bUUID, codec: codecL16, source: "mod_loopback", dialplan: "xml", hit: true,
			ani: ani, origCaller: orig, profileIdx: 1, profileAt: now,
		}}
		a, b, err := tx.NewLocalPair(
			callmodel.ChannelSpec{UUID: uuid, Name: aName, Direction: callmodel.Outbound, Caller: caller, Callee: callee,
				Destination: t.exten, Context: t.context, Vars: vars, Headers: headers, Ext: aExt},
			callmodel.ChannelSpec{UUID: bUUID, Name: bName, Direction: callmodel.Inbound, Caller: caller, Callee: callee,
				Destination: t.exten, Context: t.context, Vars: bVars, Headers: headers, Ext: bExt},
		)
		if err != nil {
			s.log.Warn("loopback leg not created", "call", o.aleg, "err", err)
			return "", callmodel.CauseNormalTemporaryFailure
		}
		// the B half starts its dialplan in its own turn, as its session
		// thread would
		_ = tx.Post(s.model.Name(), func(tx *callmodel.Tx) { s.startDialplan(tx, b) })
		return a, callmodel.Cause{}
	}
	vars = append(vars,
		callmodel.Var{Name: "direction", Value: "outbound"},
		callmodel.Var{Name: "is_outbound", Value: "true"},
		callmodel.Var{Name: "uuid", Value: uuid},
		callmodel.Var{Name: "call_uuid", Value: callUUID},
		callmodel.Var{Name: "session_id", Value: sid},
		callmodel.Var{Name: "channel_name", Value: t.name},
	)
	if t.ep.Kind == callmodel.EndpointTrunk {
		if gw := gatewayOf(leg.endpoint); gw != "" {
			vars = append(vars, callmodel.Var{Name: "sip_gateway_name", Value: gw})
		}
	}
	addVars(o.inherited)
	addVars(o.ds.global)
	addVars(leg.vars)
	vars = append(vars,
		callmodel.Var{Name: "originate_early_media", Value: "true"},
		callmodel.Var{Name: "originate_endpoint", Value: "sofia"},
		callmodel.Var{Name: "sofia_profile_name", Value: "internal"},
	)
	// sofia takes origination_uuid when it creates the session: no
	// CHANNEL_UUID (loopback renames its -a leg and raises one)
	ext := &fsChan{intro: introOutgoing, v: view{
		callUUID: callUUID, codec: codecPCMU, source: "src/switch_ivr_originate.c",
		ani: ani, origCaller: orig, profileIdx: 1, profileAt: now, other: other,
	}}
	got, err := tx.Dial(callmodel.ChannelSpec{UUID: uuid, Name: t.name, Direction: callmodel.Outbound,
		Caller: caller, Callee: t.callee, Destination: t.callee.Number, Context: "default",
		Vars: vars, Headers: headers, Ext: ext}, t.ep)
	if err != nil {
		var ce *callmodel.CauseError
		if errors.As(err, &ce) {
			return "", ce.Cause
		}
		s.log.Warn("leg not created", "call", o.aleg, "endpoint", leg.endpoint, "err", err)
		return "", callmodel.CauseNormalTemporaryFailure
	}
	return got, callmodel.Cause{}
}

func gatewayOf(endpoint string) string {
	parts := strings.Split(endpoint, "/")
	if len(parts) >= 4 && strings.EqualFold(parts[0], "sofia") && strings.EqualFold(parts[1], "gateway") {
		return parts[2]
	}
	return ""
}
