package esl

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// socketRun is the socket application's side of an outbound connection.
type socketRun struct {
	addr string
	conn *conn
}

// appSocket is mod_event_socket's socket application: connect to the
// controller, wait for its "connect", then park the channel under its
// control until it hangs up, is transferred, or the controller leaves.
func appSocket(s *Server, tx *callmodel.Tx, uuid string, run *appRun) {
	f := strings.Fields(run.data)
	if len(f) == 0 {
		s.done(tx, uuid, run, "")
		return
	}
	addr := f[0]
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	} else {
		addr = net.JoinHostPort(addr, "8084")
	}
	_ = tx.SetVar(uuid, "socket_host", host)
	run.socket = &socketRun{addr: addr}
	s.wg.Add(1)
	go s.dialController(uuid, run)
}

func (s *Server) dialController(uuid string, run *appRun) {
	defer s.wg.Done()
	d := net.Dialer{Timeout: s.cfg.ConnectTimeout}
	nc, err := d.DialContext(s.ctx, "tcp", run.socket.addr)
	_ = s.model.Do(func(tx *callmodel.Tx) error {
		fc := fsOf(tx, uuid)
		alive := fc != nil && tx.Exists(uuid) && s.onStack(fc, run)
		if err != nil {
			s.log.Info("outbound socket unavailable", "call", uuid, "addr", run.socket.addr, "err", err)
			if alive {
				s.done(tx, uuid, run, "")
			}
			return nil
		}
		if !alive {
			_ = nc.Close()
			return nil
		}
		c := s.newConn(nc, true, uuid)
		c.run = run
		run.socket.conn = c
		s.bind(c)
		c.start()
		return nil
	})
}

func (s *Server) onStack(fc *fsChan, run *appRun) bool {
	for _, r := range fc.stack {
		if r == run {
			return true
		}
	}
	return false
}

// bind files an outbound connection under its channel, so that it learns
// when the channel goes down.
func (s *Server) bind(c *conn) {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if s.bound == nil {
		s.bound = map[string][]*conn{}
	}
	s.bound[c.uuid] = append(s.bound[c.uuid], c)
	c.bound = true
}

func (s *Server) unbindLocked(c *conn) {
	if !c.bound {
		return
	}
	list := s.bound[c.uuid]
	out := list[:0:0]
	for _, x := range list {
		if x != c {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		delete(s.bound, c.uuid)
	} else {
		s.bound[c.uuid] = out
	}
	c.bound = false
}

// channelGone tells the connections bound to a channel that it is down.
func (s *Server) channelGone(uuid, name string) {
	s.regMu.RLock()
	list := append([]*conn(nil), s.bound[uuid]...)
	s.regMu.RUnlock()
	for _, c := range list {
		c.channelDown(name)
	}
}

// cmdConnect answers the controller's "connect" with the channel data and
// parks the channel under its control.
func (c *conn) cmdConnect() {
	s := c.s
	err := s.model.Do(func(tx *callmodel.Tx) error {
		fc := fsOf(tx, c.uuid)
		snap, ok := tx.Snapshot(c.uuid)
		if fc == nil || !ok {
			return callmodel.ErrNoChannel
		}
		c.mu.Lock()
		c.connected = true
		c.mu.Unlock()
		c.sendRaw(s.channelData(tx, &snap, fc))
		run := c.run
		if run != nil && s.onStack(fc, run) && !run.parked && snap.State != callmodel.StateHangup {
			run.parked = true
			s.emit(tx, c.uuid, "CHANNEL_PARK", nil, nil)
			s.kick(tx, c.uuid)
		}
		return nil
	})
	if err != nil {
		c.reply("-ERR invalid session")
		c.finishWith(false)
	}
}

// channelData is the connect reply: a CHANNEL_DATA event whose header block
// ends with the reply headers, all url-encoded, and no body.
func (s *Server) channelData(tx *callmodel.Tx, snap *callmodel.Snapshot, fc *fsChan) []byte {
	v := fc.v
	h := s.core.baseHeaders(nil, "CHANNEL_DATA", s.nextSeq(), tx.Now())
	h = profileHeaders(h, "Channel", snap, &v)
	h = channelHeaders(h, snap, &v)
	h = variableHeaders(h, snap.Vars)
	h = append(h,
		header{"Content-Type", "command/reply"},
		header{"Reply-Text", "+OK\n"},
		header{"Socket-Mode", "async"},
		header{"Control", "full"},
	)
	e := &fsEvent{headers: h}
	return e.serializePlain()
}

// releaseControl is the end of a listener of a channel that is still up:
// mod_event_socket clears CF_CONTROLLED, which ends the park of the socket
// application running now (whichever connection opened it), and the
// dialplan goes on.
func (s *Server) releaseControl(c *conn) {
	_ = s.model.Do(func(tx *callmodel.Tx) error {
		fc := fsOf(tx, c.uuid)
		if fc == nil || !tx.Exists(c.uuid) {
			return nil
		}
		n := len(fc.stack)
		if n == 0 {
			return nil
		}
		top := fc.stack[n-1]
		if top.socket == nil {
			return nil
		}
		if top.parked {
			top.parked = false
			s.emit(tx, c.uuid, "CHANNEL_UNPARK", nil, nil)
			s.done(tx, c.uuid, top, "")
			return nil
		}
		if top.socket.conn == c {
			// the controller left before "connect"
			s.done(tx, c.uuid, top, "")
		}
		return nil
	})
}

// cmdSendmsg queues a message for a channel (sendmsg): the reply comes
// first, the channel acts on it afterwards, as the session thread of
// FreeSWITCH does.
func (c *conn) cmdSendmsg(cmd *command) {
	uuid := strings.TrimSpace(cmd.line[len("sendmsg"):])
	if uuid == "" {
		uuid = cmd.get("session-id")
	}
	if uuid == "" && c.outbound {
		uuid = c.uuid
	}
	callCommand := strings.ToLower(cmd.get("call-command"))
	switch callCommand {
	case "unicast", "nomedia", "xferext":
		c.reply("-ERR " + callCommand + " is not supported by this media server")
		return
	}
	s := c.s
	_ = s.model.Do(func(tx *callmodel.Tx) error {
		if c.outbound && uuid == c.uuid && !tx.Exists(uuid) {
			// the session of a lingering connection still takes messages;
			// they have nothing left to act on
			c.reply("+OK")
			return nil
		}
		if uuid == "" || !tx.Exists(uuid) {
			c.reply("-ERR invalid session id [" + uuid + "]")
			return nil
		}
		c.reply("+OK")
		return tx.Post(s.model.Name(), func(tx *callmodel.Tx) { s.sendmsg(tx, uuid, cmd) })
	})
}

func (s *Server) sendmsg(tx *callmodel.Tx, uuid string, cmd *command) {
	fc := fsOf(tx, uuid)
	if fc == nil || !tx.Exists(uuid) {
		return
	}
	switch strings.ToLower(cmd.get("call-command")) {
	case "execute":
		app := cmd.get("execute-app-name")
		if app == "" {
			return
		}
		arg := cmd.get("execute-app-arg")
		if arg == "" && cmd.body != "" {
			arg = strings.TrimRight(cmd.body, "\r\n")
		}
		loops := 1
		if l, err := strconv.Atoi(cmd.get("loops")); err == nil && l > 1 {
			loops = l
		}
		for i := 0; i < loops; i++ {
			fc.queue = append(fc.queue, &execReq{app: app, data: arg, id: cmd.get("Event-UUID")})
		}
		s.kick(tx, uuid)
	case "hangup":
		tx.Hangup(uuid, causeOf(cmd.get("hangup-cause")), callmodel.ByRequest)
	default:
		s.log.Debug("sendmsg ignored", "call", uuid, "call-command", cmd.get("call-command"))
	}
}

// PrepareInbound names and decorates a call arriving from SIP (a phone,
// the PSTN, another server) the way mod_sofia does.
func (s *Server) PrepareInbound(tx *callmodel.Tx, spec *callmodel.ChannelSpec, call *callmodel.InboundCall) {
	if spec.UUID == "" {
		spec.UUID = tx.NewUUID()
	}
	if spec.Context == "" {
		spec.Context = "public"
		if call.Origin == callmodel.OriginPhone {
			spec.Context = "default"
		}
	}
	ip := call.NetworkIP
	if ip == "" {
		ip = "127.0.0.1"
	}
	num := call.Caller.Number
	if spec.Caller.Name == "" {
		// without a display name sofia shows the number as the name
		spec.Caller.Name = num
	}
	if spec.Name == "" {
		spec.Name = "sofia/internal/" + num + "@" + ip
	}
	s.sessionID++
	local := s.model.IP()
	if local == "" {
		local = "127.0.0.1"
	}
	vars := []callmodel.Var{
		{Name: "direction", Value: "inbound"},
		{Name: "uuid", Value: spec.UUID},
		{Name: "session_id", Value: strconv.FormatInt(s.sessionID, 10)},
		{Name: "sip_from_user", Value: num},
		{Name: "sip_from_uri", Value: num + "@" + ip},
		{Name: "sip_from_host", Value: ip},
		{Name: "channel_name", Value: spec.Name},
		{Name: "sip_call_id", Value: tx.NewUUID()},
		{Name: "sip_local_network_addr", Value: local},
		{Name: "sip_network_ip", Value: ip},
		{Name: "sip_network_port", Value: "5060"},
		{Name: "sip_received_ip", Value: ip},
		{Name: "sip_received_port", Value: "5060"},
		{Name: "sip_via_protocol", Value: "udp"},
		{Name: "sip_from_user_stripped", Value: num},
		{Name: "sofia_profile_name", Value: "internal"},
	}
	if call.Caller.Name != "" {
		vars = append(vars, callmodel.Var{Name: "sip_from_display", Value: call.Caller.Name})
	}
	vars = append(vars,
		callmodel.Var{Name: "sip_req_user", Value: spec.Destination},
		callmodel.Var{Name: "sip_req_uri", Value: spec.Destination + "@" + local},
		callmodel.Var{Name: "sip_req_host", Value: local},
		callmodel.Var{Name: "sip_to_user", Value: spec.Destination},
		callmodel.Var{Name: "sip_to_uri", Value: spec.Destination + "@" + local},
		callmodel.Var{Name: "sip_to_host", Value: local},
	)
	for _, h := range spec.Headers {
		vars = append(vars, callmodel.Var{Name: "sip_h_" + h.Name, Value: h.Value})
	}
	if call.Origin == callmodel.OriginTrunk && call.FromServer != "" {
		vars = append(vars, callmodel.Var{Name: "sip_user_agent", Value: "FreeSWITCH-" + call.FromServer})
	}
	vars = append(vars,
		callmodel.Var{Name: "max_forwards", Value: "70"},
		callmodel.Var{Name: "endpoint_disposition", Value: "RECEIVED"},
		callmodel.Var{Name: "call_uuid", Value: spec.UUID},
	)
	spec.Vars = append(vars, spec.Vars...)
	now := tx.Now()
	spec.Ext = &fsChan{
		intro: introIncoming,
		v: view{
			callUUID:   spec.UUID,
			codec:      codecPCMU,
			source:     "mod_sofia",
			dialplan:   "XML",
			username:   num,
			networkIP:  ip,
			ani:        num,
			origCaller: call.Caller,
			profileIdx: 1,
			profileAt:  now,
			hit:        true,
		},
	}
}

// Route runs the dialplan for a call that arrived from SIP.
func (s *Server) Route(tx *callmodel.Tx, uuid string) {
	s.startDialplan(tx, uuid)
}

// BeforeHangup: when the B half of a loopback pair hangs up, the A half's
// park ends before its own hangup (trace a1), unlike a channel hung up
// directly.
func (s *Server) BeforeHangup(tx *callmodel.Tx, uuid string, cause callmodel.Cause, reason callmodel.HangupReason) {
	fc := fsOf(tx, uuid)
	if fc == nil {
		return
	}
	if fc.loop == 'A' && reason == callmodel.ByPartner {
		s.unwind(tx, uuid)
	}
	s.attXferHangup(tx, uuid)
}

// react is the engine's part of observing an event.
func (s *Server) react(tx *callmodel.Tx, ev *callmodel.Event) {
	switch ev.Kind {
	case callmodel.ChannelHangup:
		s.unwind(tx, ev.Channel.UUID)
	case callmodel.ChannelUnbridged:
		s.bridgeEnded(tx, ev)
	}
}

func (s *Server) String() string { return fmt.Sprintf("esl(%s)", s.model.Name()) }
