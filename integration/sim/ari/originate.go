package ari

import (
	"strings"
	"time"
)

// apiError is an ARI error reply: status and {"message": ...}.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errf(status int, msg string) *apiError { return &apiError{status: status, msg: msg} }

var (
	errChannelNotFound = errf(404, "Channel not found")
	errNotInStasis     = errf(409, "Channel not in Stasis application")
	errInvalidState    = errf(412, "Channel in invalid state")
	errAllocFailed     = errf(500, "Allocation failed")
	errIDExists        = errf(409, "Channel with given unique ID already exists")
)

// maxUniqueID is AST_MAX_PUBLIC_UNIQUEID.
const maxUniqueID = 149

// originateReq is POST /channels (and /channels/{id}) and POST
// /channels/create.
type originateReq struct {
	endpoint  string
	app       string
	appArgs   string
	extension string
	context   string
	priority  int
	callerID  string
	timeout   int // seconds; 0 = 30, -1 = none
	id        string
	otherID   string
	variables map[string]string
	create    bool // /channels/create: into Stasis now, dial later
}

// parseCallerID is ast_callerid_parse for the forms ARI clients send:
// `Name <number>`, `"Name" <number>`, `number`, `Name`.
func parseCallerID(s string) Party {
	s = strings.TrimSpace(s)
	if s == "" {
		return Party{}
	}
	if i := strings.LastIndexByte(s, '<'); i >= 0 {
		if j := strings.IndexByte(s[i:], '>'); j > 0 {
			num := strings.TrimSpace(s[i+1 : i+j])
			name := strings.Trim(strings.TrimSpace(s[:i]), `"`)
			return Party{Name: name, Number: shrinkNumber(num)}
		}
	}
	if isPhoneNumber(s) {
		return Party{Number: shrinkNumber(s)}
	}
	return Party{Name: strings.Trim(s, `"`)}
}

func isPhoneNumber(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune("0123456789+*#()-. ", r) {
			return false
		}
	}
	return s != ""
}

// shrinkNumber is ast_shrink_phone_number: drops ( ) - . and spaces.
func shrinkNumber(s string) string {
	if !isPhoneNumber(s) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if strings.ContainsRune("()-. ", r) {
			return -1
		}
		return r
	}, s)
}

// originate validates and places the call. Network dials happen with the
// engine unlocked; the caller must not hold it.
func (s *Server) originate(r originateReq) ([]byte, *apiError) {
	e := s.eng
	if len(r.id) > maxUniqueID || len(r.otherID) > maxUniqueID {
		return nil, errf(400, "Uniqueid length exceeds maximum of 149")
	}
	if r.endpoint == "" {
		return nil, errf(400, "Endpoint must be specified")
	}
	tech, resource, ok := splitEndpoint(r.endpoint)
	if !ok {
		return nil, errf(400, "Invalid endpoint specified")
	}
	if !r.create && r.app == "" && r.extension == "" {
		return nil, errf(400, "Application or extension must be specified")
	}
	var args []string
	if r.appArgs != "" {
		args = strings.Split(r.appArgs, ",")
	}
	timeout := 30 * time.Second
	switch {
	case r.timeout > 0:
		timeout = time.Duration(r.timeout) * time.Second
	case r.timeout == -1:
		timeout = 0
	}

	switch strings.ToLower(tech) {
	case "local":
		return s.originateLocal(r, resource, args, timeout)
	case "pjsip":
		return s.originatePJSIP(r, resource, args, timeout)
	}
	e.log.Info("originate to an unsupported technology", "endpoint", r.endpoint)
	return nil, errAllocFailed
}

func (s *Server) idTaken(id string) bool {
	if id == "" {
		return false
	}
	_, ok := s.eng.channels[id]
	return ok
}

func (s *Server) originateLocal(r originateReq, resource string, args []string, timeout time.Duration) ([]byte, *apiError) {
	e := s.eng
	// Local/exten@context[/options]
	if i := strings.IndexByte(resource, '/'); i >= 0 {
		resource = resource[:i]
	}
	exten, context, _ := strings.Cut(resource, "@")
	if context == "" {
		context = "default"
	}
	e.lock()
	defer e.unlock()
	if e.closed {
		return nil, errAllocFailed
	}
	if s.idTaken(r.id) || s.idTaken(r.otherID) || (r.id != "" && r.otherID == "" && s.idTaken(r.id+";2")) {
		return nil, errIDExists
	}
	c1, c2 := e.newLocalPair(exten, context, r.id, r.otherID, !r.create)
	caller := parseCallerID(r.callerID)
	if r.create {
		c1.snap.Caller, c1.snap.Connected = caller, caller
	} else {
		// Seen only by applications watching every channel: the
		// originating one is not subscribed yet.
		e.runApp(c1, 1, outgoingLine.AppName, outgoingLine.AppData)
		if caller != (Party{}) {
			// The caller id is set first, the connected line after.
			e.setCaller(c1, caller, false)
			c1.snap.Connected = caller
			e.emit(encChannelEvent(nil, "ChannelConnectedLine", e.now(), &c1.snap), nil, c1)
		}
	}
	for k, v := range r.variables {
		if err := e.setVariable(c1, k, v, false); err != nil {
			e.log.Debug("originate variable refused", "variable", k, "err", err)
		}
	}
	if r.app != "" {
		c1.subscribe(r.app)
		if !r.create {
			// ARI subscribes the application to the Local peer too.
			c2.subscribe(r.app)
		}
	}
	resp := appendChannel(nil, &c1.snap)

	if r.create {
		c1.createdDial = resource
		if !e.enterStasis(c1, r.app, args, nil) {
			e.hangup(c1, causeNormalClearing, nil)
		}
		return resp, nil
	}
	e.localCall(c1, c2, &dialing{dialstring: resource, app: r.app, args: args}, timeout)
	if r.app == "" && r.extension != "" {
		c1.afterAnswer = &dialTarget{context: orDefault(r.context, "default"), exten: r.extension, prio: max(r.priority, 1)}
	}
	return resp, nil
}

// localCall dials ;1 of a Local pair: the caller id reaches ;2, the dial
// starts and ;2 runs its dialplan.
func (e *engine) localCall(c1, c2 *channel, d *dialing, timeout time.Duration) {
	if c1.snap.Caller != (Party{}) {
		c2.snap.Connected = c1.snap.Connected
		e.setCaller(c2, c1.snap.Caller, false)
		e.emit(encChannelEvent(nil, "ChannelConnectedLine", e.now(), &c2.snap), nil, c2)
	}
	e.startDial(c1, d, timeout)
	if !e.localExists(c2.snap.Dialplan.Exten, c2.snap.Dialplan.Context) {
		e.dialFailed(c1, "CHANUNAVAIL", causeUnknown)
		return
	}
	e.callLocal(c2)
}

func (s *Server) originatePJSIP(r originateReq, resource string, args []string, timeout time.Duration) ([]byte, *apiError) {
	e := s.eng
	endpoint := pjsipEndpointName(resource)
	context := s.cfg.PhoneContext
	trunk := strings.Contains(resource, "@") && !strings.Contains(resource, "/")
	if trunk {
		context = s.cfg.TrunkContext
	}
	if s.net == nil {
		return nil, errAllocFailed
	}
	if r.create {
		// ast_request: the channel exists, nothing is sent yet; an
		// endpoint without contacts cannot even be requested.
		if st, ok := s.net.Endpoint(endpoint); !ok || st == "offline" {
			return nil, errAllocFailed
		}
	}

	// Reserve the id and name, then place the SIP call with the engine
	// unlocked: the far end may be another simulated server.
	e.lock()
	if e.closed {
		e.unlock()
		return nil, errAllocFailed
	}
	if s.idTaken(r.id) || e.reserved[r.id] {
		e.unlock()
		return nil, errIDExists
	}
	id := r.id
	if id == "" {
		id = e.newID()
	}
	e.reserved[id] = true
	name := e.pjsipName(endpoint)
	epoch := e.epoch
	epVars := e.epVars[endpoint]
	e.unlock()

	c := &channel{e: e, tech: techPJSIP, resource: resource, outgoing: true, trunk: trunk}
	c.snap = chanSnap{ID: id, Name: name, State: stateDown, ProtocolID: newUUID(),
		Dialplan: cep{Context: context, Exten: "s", Priority: 1, AppName: outgoingLine.AppName, AppData: outgoingLine.AppData},
		Language: "en"}
	caller := parseCallerID(r.callerID)
	c.snap.Caller, c.snap.Connected = caller, caller
	for _, kv := range epVars {
		_ = e.setVariable(c, kv[0], kv[1], false)
	}
	for k, v := range r.variables {
		if err := e.setVariable(c, k, v, false); err != nil {
			e.log.Debug("originate variable refused", "variable", k, "err", err)
		}
	}

	var leg Leg
	h := &legEvents{e: e, epoch: epoch}
	if !r.create {
		var err error
		leg, err = s.net.Dial(e.dialRequest(c, timeout), h)
		if err != nil {
			e.lock()
			delete(e.reserved, id)
			e.unlock()
			e.log.Info("originate refused by the network", "endpoint", r.endpoint, "call", id, "err", err)
			return nil, errAllocFailed
		}
	}

	e.lock()
	defer e.unlock()
	delete(e.reserved, id)
	if e.closed || e.epoch != epoch {
		if leg != nil {
			e.later(func() { leg.Hangup(causeNormalClearing) })
		}
		return nil, errAllocFailed
	}
	c.snap.Created = e.now()
	e.addChannel(c)
	e.emit(encChannelEvent(nil, "ChannelCreated", c.snap.Created, &c.snap), nil, c)
	c.subscribe(r.app)
	resp := appendChannel(nil, &c.snap)
	if r.create {
		c.createdDial = resource
		if !e.enterStasis(c, r.app, args, nil) {
			e.hangup(c, causeNormalClearing, nil)
		}
		return resp, nil
	}
	if r.app == "" && r.extension != "" {
		c.afterAnswer = &dialTarget{context: orDefault(r.context, "default"), exten: r.extension, prio: max(r.priority, 1)}
	}
	c.leg = leg
	e.startDial(c, &dialing{dialstring: resource, app: r.app, args: args}, timeout)
	h.attach(c)
	return resp, nil
}

// dialRequest describes the SIP call of channel c to the network.
func (e *engine) dialRequest(c *channel, timeout time.Duration) DialRequest {
	req := DialRequest{
		Server:    e.cfg.SystemName,
		Resource:  c.resource,
		ChannelID: c.snap.ID,
		Channel:   c.snap.Name,
		Caller:    c.snap.Caller,
		CallID:    c.snap.ProtocolID,
		Timeout:   timeout,
	}
	if len(c.hdrOut) > 0 {
		req.Headers = make(map[string]string, len(c.hdrOut))
		for _, h := range c.hdrOut {
			req.Headers[h.name] = h.value
		}
	}
	if len(c.vars) > 0 {
		req.Variables = make(map[string]string, len(c.vars))
		for k, v := range c.vars {
			req.Variables[k] = v
		}
	}
	return req
}

// dialCreated implements POST /channels/{id}/dial for a channel made by
// /channels/create.
func (s *Server) dialCreated(id, callerID string, timeoutSec int) *apiError {
	e := s.eng
	e.lock()
	c := e.channels[id]
	if c == nil {
		e.unlock()
		return errChannelNotFound
	}
	if c.stasis == "" {
		e.unlock()
		return errNotInStasis
	}
	var caller *channel
	if callerID != "" {
		caller = e.channels[callerID]
	}
	if c.snap.State != stateDown {
		e.unlock()
		return errf(409, "Channel is not in the 'Down' state")
	}
	if c.createdDial == "" {
		e.unlock()
		return errf(409, "Dialing a channel not created by ARI")
	}
	timeout := time.Duration(0)
	if timeoutSec > 0 {
		timeout = time.Duration(timeoutSec) * time.Second
	}
	if caller != nil {
		// The callee inherits the caller's identity as its connected line.
		c.snap.Connected = caller.snap.Caller
	}
	d := &dialing{dialstring: c.createdDial, caller: caller}
	c.createdDial = ""
	if c.tech == techLocal {
		e.localCall(c, c.other, d, timeout)
		e.unlock()
		return nil
	}
	req := e.dialRequest(c, timeout)
	e.startDial(c, d, timeout)
	h := &legEvents{e: e, epoch: e.epoch}
	e.unlock()

	leg, err := s.net.Dial(req, h)

	e.lock()
	defer e.unlock()
	if err != nil {
		if !c.gone {
			e.dialFailed(c, "CHANUNAVAIL", causeNoRouteDestination)
		}
		return nil
	}
	if c.gone || e.epoch != h.epoch {
		e.later(func() { leg.Hangup(causeNormalClearing) })
		return nil
	}
	c.leg = leg
	h.attach(c)
	return nil
}

// dialTarget is where an originate without an application sends the
// answered channel.
type dialTarget struct {
	context string
	exten   string
	prio    int
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
