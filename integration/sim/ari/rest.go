package ari

import (
	"net/http"
	"strconv"
	"strings"
)

var (
	errNoResource = errf(404, "Resource not found")
	errBadMethod  = errf(405, "Invalid method")
)

// route dispatches /ari/<segs...>.
func (s *Server) route(w http.ResponseWriter, r *http.Request, segs []string, q params) {
	m := r.Method
	switch segs[0] {
	case "channels":
		s.routeChannels(w, m, segs[1:], q)
	case "bridges":
		s.routeBridges(w, m, segs[1:], q)
	case "endpoints":
		if m != http.MethodGet {
			writeError(w, errBadMethod)
			return
		}
		s.getEndpoints(w, segs[1:])
	case "applications":
		s.routeApplications(w, m, segs[1:], q)
	case "asterisk":
		s.routeAsterisk(w, m, segs[1:])
	default:
		writeError(w, errNoResource)
	}
}

func (s *Server) routeChannels(w http.ResponseWriter, m string, segs []string, q params) {
	switch len(segs) {
	case 0:
		switch m {
		case http.MethodGet:
			s.listChannels(w)
		case http.MethodPost:
			s.postOriginate(w, q, "", false)
		default:
			writeError(w, errBadMethod)
		}
		return
	case 1:
		id := segs[0]
		switch {
		case id == "create" && m == http.MethodPost:
			s.postOriginate(w, q, "", true)
		case m == http.MethodGet:
			s.getChannel(w, id)
		case m == http.MethodPost:
			s.postOriginate(w, q, id, false)
		case m == http.MethodDelete:
			s.deleteChannel(w, id, q)
		default:
			writeError(w, errBadMethod)
		}
		return
	case 2:
	default:
		writeError(w, errNoResource)
		return
	}
	id, op := segs[0], segs[1]
	switch {
	case op == "answer" && m == http.MethodPost:
		s.controlOp(w, id, true, func(c *channel) *apiError { s.eng.answerChannel(c); return nil })
	case op == "ring" && m == http.MethodPost:
		s.controlOp(w, id, true, func(c *channel) *apiError { s.eng.ringChannel(c); return nil })
	case op == "ring" && m == http.MethodDelete:
		s.controlOp(w, id, true, func(*channel) *apiError { return nil })
	case op == "hold" && (m == http.MethodPost || m == http.MethodDelete):
		typ := "ChannelHold"
		if m == http.MethodDelete {
			typ = "ChannelUnhold"
		}
		s.controlOp(w, id, true, func(c *channel) *apiError {
			s.eng.emit(encChannelEvent(nil, typ, s.eng.now(), &c.snap), nil, c)
			return nil
		})
	case (op == "moh" || op == "silence" || op == "mute") && (m == http.MethodPost || m == http.MethodDelete):
		// Media operations have no signalling effect worth simulating.
		s.controlOp(w, id, true, func(*channel) *apiError { return nil })
	case op == "continue" && m == http.MethodPost:
		s.postContinue(w, id, q)
	case op == "dial" && m == http.MethodPost:
		timeout, ok := q.int("timeout")
		if !ok {
			writeError(w, errf(400, "Invalid timeout"))
			return
		}
		if err := s.dialCreated(id, q.get("caller"), timeout); err != nil {
			writeError(w, err)
			return
		}
		writeNoContent(w)
	case op == "variable" && m == http.MethodGet:
		s.getVar(w, id, q)
	case op == "variable" && m == http.MethodPost:
		s.setVar(w, id, q)
	case op == "transfer_progress" && m == http.MethodPost:
		s.controlOp(w, id, false, func(c *channel) *apiError { return s.eng.transferProgress(c, q.get("states")) })
	case op == "redirect" && m == http.MethodPost:
		writeError(w, errf(501, "Redirect is not simulated"))
	default:
		writeError(w, errNoResource)
	}
}

func (s *Server) listChannels(w http.ResponseWriter) {
	e := s.eng
	e.lock()
	b := []byte{'['}
	for i, id := range e.channelIDs() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendChannel(b, &e.channels[id].snap)
	}
	e.unlock()
	writeJSON(w, 200, append(b, ']'))
}

func (s *Server) getChannel(w http.ResponseWriter, id string) {
	e := s.eng
	e.lock()
	c := e.channels[id]
	var b []byte
	if c != nil {
		b = appendChannel(nil, &c.snap)
	}
	e.unlock()
	if c == nil {
		writeError(w, errChannelNotFound)
		return
	}
	writeJSON(w, 200, b)
}

func (s *Server) postOriginate(w http.ResponseWriter, q params, id string, create bool) {
	vars, verr := q.variables()
	if verr != nil {
		writeError(w, verr)
		return
	}
	timeout, ok := q.int("timeout")
	if !ok {
		writeError(w, errf(400, "Invalid timeout"))
		return
	}
	prio, _ := q.int("priority")
	if id == "" {
		id = q.get("channelId")
	}
	req := originateReq{
		endpoint:  q.get("endpoint"),
		app:       q.get("app"),
		appArgs:   q.get("appArgs"),
		extension: q.get("extension"),
		context:   q.get("context"),
		priority:  prio,
		callerID:  q.get("callerId"),
		timeout:   timeout,
		id:        id,
		otherID:   q.get("otherChannelId"),
		variables: vars,
		create:    create,
	}
	if create && req.app == "" {
		writeError(w, errf(400, "Missing parameter app"))
		return
	}
	if q.get("originator") != "" && q.get("formats") != "" {
		writeError(w, errf(400, "Originator and formats can't both be specified"))
		return
	}
	if orig := q.get("originator"); orig != "" && !create {
		s.eng.lock()
		_, found := s.eng.channels[orig]
		s.eng.unlock()
		if !found {
			writeError(w, errf(400, "Provided originator channel was not found"))
			return
		}
	}
	body, err := s.originate(req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, body)
}

func (s *Server) deleteChannel(w http.ResponseWriter, id string, q params) {
	reason, code := q.get("reason"), q.get("reason_code")
	cause := causeNormalClearing
	e := s.eng
	e.lock()
	c := e.channels[id]
	if c == nil {
		e.unlock()
		writeError(w, errChannelNotFound)
		return
	}
	e.unlock()
	switch {
	case reason != "" && code != "":
		writeError(w, errf(400, "The reason and reason_code can't both be specified"))
		return
	case code != "":
		n, err := strconv.Atoi(strings.TrimSpace(code))
		if err != nil {
			writeError(w, errf(400, "Invalid reason for hangup reason code provided"))
			return
		}
		cause = n
	case reason != "":
		n, ok := hangupReasons[reason]
		if !ok {
			writeError(w, errf(400, "Invalid reason for hangup reason provided"))
			return
		}
		cause = n
	}
	e.lock()
	if c = e.channels[id]; c == nil {
		e.unlock()
		writeError(w, errChannelNotFound)
		return
	}
	c.cause = cause
	hr := &hangupRequest{HasCause: true, Cause: softHangupExplicit, Soft: true}
	switch {
	case c.hangupPending:
		// Not gone yet: the request is accepted and its cause replaces the
		// first one's.
		e.hangupRequest(c, *hr)
	case c.stasis != "":
		// The channel's Stasis thread acts on the request a moment later.
		c.hangupPending = true
		e.rtpStats(c)
		e.hangupRequest(c, *hr)
		e.afterFunc(c, e.cfg.HangupDelay, func() {
			if c.half == 2 {
				// A ;2 half runs dialplan: once out of Stasis, its PBX
				// thread notices the hangup (l-hangup-twice).
				e.leaveStasis(c)
				e.hangupRequest(c, hangupRequest{HasCause: true, Cause: causeNormalClearing, Soft: true})
			}
			e.hangup(c, c.cause, nil)
		})
	default:
		e.hangup(c, cause, hr)
	}
	e.unlockSync()
	writeNoContent(w)
}

// controlOp runs op on a channel in Stasis, with Asterisk's checks:
// 404 unknown, 409 not in Stasis, and (stateCheck) 412 for outgoing
// channels not answered yet.
func (s *Server) controlOp(w http.ResponseWriter, id string, stateCheck bool, op func(*channel) *apiError) {
	e := s.eng
	e.lock()
	c := e.channels[id]
	var err *apiError
	switch {
	case c == nil:
		err = errChannelNotFound
	case c.stasis == "":
		err = errNotInStasis
	case stateCheck && (c.snap.State == stateDown || c.snap.State == stateRinging):
		err = errInvalidState
	default:
		err = op(c)
	}
	e.unlockSync()
	if err != nil {
		writeError(w, err)
		return
	}
	writeNoContent(w)
}

func (s *Server) postContinue(w http.ResponseWriter, id string, q params) {
	prio, ok := q.int("priority")
	if !ok {
		writeError(w, errf(400, "Invalid priority"))
		return
	}
	label := q.get("label")
	s.controlOp(w, id, true, func(c *channel) *apiError {
		context, exten := q.get("context"), q.get("extension")
		if context == "" {
			context = c.snap.Dialplan.Context
			if exten == "" {
				exten = c.snap.Dialplan.Exten
			}
		} else if exten == "" {
			exten = "s"
		}
		switch {
		case label != "":
			n, err := strconv.Atoi(label)
			if err != nil {
				return errf(404, "Requested label can not be found")
			}
			if n == 0 {
				return errf(400, "Requested priority is illegal")
			}
			prio = n
		case prio != 0:
		case q.get("context") == "" && q.get("extension") == "":
			prio = c.snap.Dialplan.Priority + 1
		default:
			prio = 1
		}
		s.eng.continueDialplan(c, context, exten, prio)
		return nil
	})
}

func (s *Server) getVar(w http.ResponseWriter, id string, q params) {
	name := q.get("variable")
	if name == "" {
		writeError(w, errf(400, "Variable name is required"))
		return
	}
	e := s.eng
	e.lock()
	c := e.channels[id]
	var val string
	var err *apiError
	if c == nil {
		err = errf(404, "Provided channel was not found")
	} else {
		val, err = e.getVariable(c, name)
	}
	e.unlock()
	if err != nil {
		writeError(w, err)
		return
	}
	b := append([]byte{'{'}, appendStrField(nil, "value", val)...)
	writeJSON(w, 200, append(b, '}'))
}

func (s *Server) setVar(w http.ResponseWriter, id string, q params) {
	name := q.get("variable")
	if name == "" {
		writeError(w, errf(400, "Variable name is required"))
		return
	}
	value := q.get("value")
	s.controlOp(w, id, false, func(c *channel) *apiError {
		if err := s.eng.setVariable(c, name, value, true); err != nil {
			return errf(400, "Failed to execute function")
		}
		return nil
	})
}

// answerChannel is POST /channels/{id}/answer.
func (e *engine) answerChannel(c *channel) {
	if c.snap.State == stateUp {
		return
	}
	e.answerFromDialplan(c)
}

// ringChannel is POST /channels/{id}/ring: 180 Ringing to the caller. The
// indication does not change the state of an inbound channel (it stays
// Ring, so that /answer is still accepted).
func (e *engine) ringChannel(c *channel) {
	if c.leg != nil && c.inbound {
		leg := c.leg
		e.later(leg.Ring)
	}
	if c.half == 2 && c.other != nil && c.other.dial != nil {
		e.dialRinging(c.other)
	}
}

// --- bridges -----------------------------------------------------------------

func (s *Server) routeBridges(w http.ResponseWriter, m string, segs []string, q params) {
	switch {
	case len(segs) == 0 && m == http.MethodGet:
		s.listBridges(w)
	case len(segs) == 0 && m == http.MethodPost:
		s.createBridge(w, q.get("bridgeId"), q)
	case len(segs) == 1 && m == http.MethodPost:
		s.createBridge(w, segs[0], q)
	case len(segs) == 1 && m == http.MethodGet:
		s.getBridge(w, segs[0])
	case len(segs) == 1 && m == http.MethodDelete:
		s.deleteBridge(w, segs[0])
	case len(segs) == 2 && m == http.MethodPost && (segs[1] == "addChannel" || segs[1] == "removeChannel"):
		s.bridgeMembers(w, segs[0], segs[1] == "addChannel", q)
	case len(segs) == 2 && (segs[1] == "moh" || segs[1] == "play"):
		writeError(w, errf(501, "Bridge media is not simulated"))
	case len(segs) <= 2:
		writeError(w, errBadMethod)
	default:
		writeError(w, errNoResource)
	}
}

func (s *Server) listBridges(w http.ResponseWriter) {
	e := s.eng
	e.lock()
	b := []byte{'['}
	first := true
	for _, br := range e.bridges {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendBridge(b, &br.snap)
	}
	e.unlock()
	writeJSON(w, 200, append(b, ']'))
}

func (s *Server) createBridge(w http.ResponseWriter, id string, q params) {
	typ := q.get("type")
	for _, t := range strings.Split(typ, ",") {
		switch strings.TrimSpace(t) {
		case "", "mixing", "holding", "dtmf_events", "proxy_media", "video_sfu", "video_single", "sdp_label":
		default:
			writeError(w, errf(500, "Unable to create bridge. Possible duplicate bridge id '"+id+"'"))
			return
		}
	}
	e := s.eng
	e.lock()
	if _, exists := e.bridges[id]; exists && id != "" {
		e.unlock()
		writeError(w, errf(409, "Bridge with id '"+id+"' already exists"))
		return
	}
	br := e.createBridge(id, q.get("name"), typ)
	b := appendBridge(nil, &br.snap)
	e.unlock()
	writeJSON(w, 200, b)
}

func (s *Server) getBridge(w http.ResponseWriter, id string) {
	e := s.eng
	e.lock()
	br := e.bridges[id]
	var b []byte
	if br != nil {
		b = appendBridge(nil, &br.snap)
	}
	e.unlock()
	if br == nil {
		writeError(w, errf(404, "Bridge not found"))
		return
	}
	writeJSON(w, 200, b)
}

func (s *Server) deleteBridge(w http.ResponseWriter, id string) {
	e := s.eng
	e.lock()
	br := e.bridges[id]
	if br != nil {
		e.destroyBridge(br)
	}
	e.unlockSync()
	if br == nil {
		writeError(w, errf(404, "Bridge not found"))
		return
	}
	writeNoContent(w)
}

func (s *Server) bridgeMembers(w http.ResponseWriter, id string, add bool, q params) {
	ids := q.list("channel")
	e := s.eng
	e.lock()
	err := func() *apiError {
		br := e.bridges[id]
		if br == nil {
			return errf(404, "Bridge not found")
		}
		if len(ids) == 0 {
			return errf(400, "Missing parameter channel")
		}
		chans := make([]*channel, 0, len(ids))
		for _, cid := range ids {
			c := e.channels[cid]
			if c == nil {
				return errf(400, "Channel not found")
			}
			if c.stasis == "" {
				return errf(422, "Channel not in Stasis application")
			}
			chans = append(chans, c)
		}
		if !add {
			for _, c := range chans {
				if c.bridge != br {
					return errf(422, "Channel not in this bridge")
				}
			}
			for _, c := range chans {
				e.bridgeLeave(c)
			}
			return nil
		}
		e.bridgeAdd(br, chans)
		return nil
	}()
	e.unlockSync()
	if err != nil {
		writeError(w, err)
		return
	}
	writeNoContent(w)
}

// --- endpoints, applications, asterisk -------------------------------------

func appendEndpoint(b []byte, tech, resource, state string, channelIDs []string) []byte {
	b = append(b, '{')
	b = appendStrField(b, "technology", tech)
	b = append(b, ',')
	b = appendStrField(b, "resource", resource)
	b = append(b, ',')
	b = appendStrField(b, "state", state)
	b = append(b, ',')
	b = appendKey(b, "channel_ids")
	b = appendStrings(b, channelIDs)
	return append(b, '}')
}

func (s *Server) endpointChannels(resource string) []string {
	e := s.eng
	e.lock()
	defer e.unlock()
	return e.endpointChannelIDs(resource)
}

func (s *Server) getEndpoints(w http.ResponseWriter, segs []string) {
	switch len(segs) {
	case 0, 1:
		if len(segs) == 1 && !strings.EqualFold(segs[0], "PJSIP") {
			writeError(w, errf(404, "No Endpoints found - invalid tech "+segs[0]))
			return
		}
		var names []string
		if s.net != nil {
			names = s.net.Endpoints()
		}
		b := []byte{'['}
		for i, n := range names {
			if i > 0 {
				b = append(b, ',')
			}
			st, _ := s.net.Endpoint(n)
			b = appendEndpoint(b, "PJSIP", n, st, s.endpointChannels(n))
		}
		writeJSON(w, 200, append(b, ']'))
	case 2:
		if !strings.EqualFold(segs[0], "PJSIP") || s.net == nil {
			writeError(w, errf(404, "Endpoint not found"))
			return
		}
		st, ok := s.net.Endpoint(segs[1])
		if !ok {
			writeError(w, errf(404, "Endpoint not found"))
			return
		}
		writeJSON(w, 200, appendEndpoint(nil, "PJSIP", segs[1], st, s.endpointChannels(segs[1])))
	default:
		writeError(w, errNoResource)
	}
}

func (s *Server) appendApplication(b []byte, a *stasisApp) []byte {
	e := s.eng
	b = append(b, '{')
	b = appendStrField(b, "name", a.name)
	b = append(b, ',')
	b = appendKey(b, "channel_ids")
	chans, bridges := e.appChannelIDs(a.name), e.appBridgeIDs(a.name)
	if a.allChannels {
		// Asterisk lists the subscription to every channel by its topic.
		chans = append([]string{"__AST_CHANNEL_ALL_TOPIC"}, chans...)
	}
	if a.allBridges {
		bridges = append([]string{"__AST_BRIDGE_ALL_TOPIC"}, bridges...)
	}
	b = appendStrings(b, orEmpty(chans))
	b = append(b, ',')
	b = appendKey(b, "bridge_ids")
	b = appendStrings(b, orEmpty(bridges))
	b = append(b, ',')
	b = appendKey(b, "endpoint_ids")
	var eps []string
	for ep := range a.endpointSubs {
		eps = append(eps, ep)
	}
	b = appendStrings(b, orEmpty(eps))
	b = append(b, ',')
	b = appendKey(b, "device_names")
	b = append(b, '[', ']', ',')
	b = appendKey(b, "events_allowed")
	b = append(b, '[', ']', ',')
	b = appendKey(b, "events_disallowed")
	b = append(b, '[', ']')
	return append(b, '}')
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *Server) routeApplications(w http.ResponseWriter, m string, segs []string, q params) {
	e := s.eng
	switch {
	case len(segs) == 0 && m == http.MethodGet:
		e.lock()
		b := []byte{'['}
		first := true
		for _, a := range e.apps {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = s.appendApplication(b, a)
		}
		e.unlock()
		writeJSON(w, 200, append(b, ']'))
	case len(segs) == 1 && m == http.MethodGet:
		e.lock()
		a := e.apps[segs[0]]
		var b []byte
		if a != nil {
			b = s.appendApplication(nil, a)
		}
		e.unlock()
		if a == nil {
			writeError(w, errf(404, "Application not found"))
			return
		}
		writeJSON(w, 200, b)
	case len(segs) == 2 && segs[1] == "subscription" && (m == http.MethodPost || m == http.MethodDelete):
		s.subscription(w, segs[0], m == http.MethodPost, q.list("eventSource"))
	default:
		writeError(w, errNoResource)
	}
}

func (s *Server) subscription(w http.ResponseWriter, app string, subscribe bool, sources []string) {
	e := s.eng
	e.lock()
	var b []byte
	err := func() *apiError {
		if len(sources) == 0 {
			return errf(400, "Missing parameter eventSource")
		}
		a := e.apps[app]
		if a == nil {
			return errf(404, "Application not found")
		}
		type op struct {
			c  *channel
			br *bridge
			ep string
			// all: the scheme with no id, every channel or bridge.
			allChannels, allBridges bool
		}
		var ops []op
		for _, src := range sources {
			scheme, id, ok := strings.Cut(src, ":")
			if !ok {
				return errf(400, "Invalid event source URI scheme")
			}
			switch scheme {
			case "channel":
				if id == "" {
					ops = append(ops, op{allChannels: true})
					continue
				}
				c := e.channels[id]
				if c == nil {
					return errf(422, "Unable to find event source")
				}
				ops = append(ops, op{c: c})
			case "bridge":
				if id == "" {
					ops = append(ops, op{allBridges: true})
					continue
				}
				br := e.bridges[id]
				if br == nil {
					return errf(422, "Unable to find event source")
				}
				ops = append(ops, op{br: br})
			case "endpoint":
				if _, _, ok := splitEndpoint(id); !ok && !strings.Contains(id, "/") {
					return errf(400, "Invalid endpoint")
				}
				ops = append(ops, op{ep: id})
			default:
				return errf(400, "Invalid event source URI scheme")
			}
		}
		for _, o := range ops {
			switch {
			case o.allChannels:
				a.allChannels = subscribe
			case o.allBridges:
				a.allBridges = subscribe
			case o.c != nil && subscribe:
				o.c.subscribe(app)
			case o.c != nil:
				if !o.c.subscribed(app) {
					return errf(409, "Application not subscribed to event source")
				}
				o.c.unsubscribe(app)
			case o.br != nil && subscribe:
				o.br.subs[app] = true
			case o.br != nil:
				delete(o.br.subs, app)
			case subscribe:
				if a.endpointSubs == nil {
					a.endpointSubs = make(map[string]bool)
				}
				a.endpointSubs[o.ep] = true
			default:
				delete(a.endpointSubs, o.ep)
			}
		}
		b = s.appendApplication(nil, a)
		return nil
	}()
	e.unlock()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, b)
}

func (s *Server) routeAsterisk(w http.ResponseWriter, m string, segs []string) {
	if m != http.MethodGet || len(segs) != 1 {
		writeError(w, errNoResource)
		return
	}
	e := s.eng
	e.lock()
	startup, reload := e.startup, e.reload
	eid := s.cfg.EntityID
	e.unlock()
	switch segs[0] {
	case "info":
		b := []byte(`{"build":{"os":"Linux","kernel":"6.1.0","machine":"x86_64","options":"","date":"2026-11-21 00:00:00 UTC","user":"root"},"system":{`)
		b = appendStrField(b, "version", s.cfg.Version)
		b = append(b, ',')
		b = appendStrField(b, "entity_id", eid)
		b = append(b, `},"config":{"name":"",`...)
		b = appendStrField(b, "default_language", "en")
		b = append(b, `,"setid":{"user":"asterisk","group":"asterisk"}},"status":{`...)
		b = appendKey(b, "startup_time")
		b = appendTime(b, startup)
		b = append(b, ',')
		b = appendKey(b, "last_reload_time")
		b = appendTime(b, reload)
		b = append(b, '}', '}')
		writeJSON(w, 200, b)
	case "ping":
		b := []byte{'{'}
		b = appendStrField(b, "asterisk_id", eid)
		b = append(b, ',')
		b = appendStrField(b, "ping", "pong")
		b = append(b, ',')
		b = appendKey(b, "timestamp")
		b = appendTime(b, e.now())
		writeJSON(w, 200, append(b, '}'))
	default:
		writeError(w, errNoResource)
	}
}
