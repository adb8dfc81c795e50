package ari

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// Attach makes srv, a server of a callmodel fleet, a simulated Asterisk:
// the returned ARI server (not started yet) dials the fleet's phones
// (PJSIP/<ext>), its PSTN (PJSIP/<number>@pstn) and the other servers
// (PJSIP/<dest>@<server>), and the calls the fleet offers to srv (a phone
// or the PSTN calling in, a trunk call arriving) run Stasis(<app>,<context>,
// <exten>). cfg.Network is ignored; cfg.SystemName defaults to the server's
// name.
//
// Only SIP channels exist in the model: Local channel pairs are the ARI
// server's own, as they are internal to a real Asterisk.
func Attach(srv *callmodel.Server, cfg Config) (*Server, error) {
	if srv == nil {
		return nil, errors.New("ari attach: no server")
	}
	if srv.Kind() != callmodel.Asterisk {
		return nil, fmt.Errorf("ari attach: server %s is %s, not asterisk", srv.Name(), srv.Kind())
	}
	if cfg.SystemName == "" {
		cfg.SystemName = srv.Name()
	}
	m := &modelNet{cm: srv, fleet: srv.Fleet()}
	cfg.Network = m
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	m.s = s
	s.model = m
	srv.SetHooks(m)
	m.unsubscribe = srv.Subscribe(m.observe)
	return s, nil
}

// modelNet is the Network of an attached server and the callmodel hooks of
// its model server.
type modelNet struct {
	callmodel.BaseHooks
	s           *Server
	cm          *callmodel.Server
	fleet       *callmodel.Fleet
	unsubscribe func()
}

// endpointFor maps a PJSIP resource to what the model dials.
func (m *modelNet) endpointFor(resource string) (callmodel.Endpoint, error) {
	cfg := &m.s.cfg
	if ep, _, ok := strings.Cut(resource, "/"); ok {
		// PJSIP/<endpoint>/<uri>: the endpoint's phone at an explicit URI.
		if ep == "" {
			return callmodel.Endpoint{}, fmt.Errorf("unsupported PJSIP resource %q", resource)
		}
		return callmodel.PhoneEndpoint(ep), nil
	}
	if dest, ep, ok := strings.Cut(resource, "@"); ok {
		if strings.EqualFold(ep, cfg.PSTNEndpoint) {
			return callmodel.PSTNEndpoint(dest), nil
		}
		server := ep
		if name, ok := cfg.TrunkServers[ep]; ok {
			server = name
		}
		return callmodel.TrunkEndpoint(server, dest), nil
	}
	if strings.ContainsAny(resource, "/@") || resource == "" {
		return callmodel.Endpoint{}, fmt.Errorf("unsupported PJSIP resource %q", resource)
	}
	return callmodel.PhoneEndpoint(resource), nil
}

func toVars(m map[string]string) []callmodel.Var {
	if len(m) == 0 {
		return nil
	}
	out := make([]callmodel.Var, 0, len(m))
	for k, v := range m {
		out = append(out, callmodel.Var{Name: k, Value: v})
	}
	return out
}

func modelCause(q850 int) callmodel.Cause {
	if c, ok := callmodel.CauseByCode(q850); ok && q850 != 0 {
		return c
	}
	return callmodel.CauseNormalClearing
}

// Dial places the SIP call in the model and forwards the far end's
// progress. The watcher runs inside the model's transaction and only takes
// the ARI engine's lock, which is never held while calling the model.
func (m *modelNet) Dial(req DialRequest, ev LegEvents) (Leg, error) {
	ep, err := m.endpointFor(req.Resource)
	if err != nil {
		return nil, err
	}
	spec := callmodel.ChannelSpec{
		UUID:        req.ChannelID,
		Name:        req.Channel,
		Direction:   callmodel.Outbound,
		Caller:      callmodel.Party{Name: req.Caller.Name, Number: req.Caller.Number},
		Callee:      callmodel.Party{Number: ep.Target},
		Destination: ep.Target,
		Vars:        toVars(req.Variables),
		Headers:     toVars(req.Headers),
	}
	var uuid string
	err = m.cm.Do(func(tx *callmodel.Tx) error {
		var err error
		uuid, err = tx.Dial(spec, ep)
		if err != nil {
			return err
		}
		return tx.Watch(uuid, func(_ *callmodel.Tx, e *callmodel.Event) bool {
			switch e.Kind {
			case callmodel.ChannelRinging, callmodel.ChannelEarlyMedia:
				ev.Ringing()
			case callmodel.ChannelAnswered:
				ev.Answered()
			case callmodel.ChannelHangup:
				if e.Reason != callmodel.ByRequest {
					ev.Hangup(e.Channel.Cause.Q850())
				}
				return false
			case callmodel.ChannelDestroyed:
				return false
			}
			return true
		})
	})
	if err != nil {
		return nil, fmt.Errorf("dial PJSIP/%s: %w", req.Resource, err)
	}
	return &modelLeg{m: m, uuid: uuid}, nil
}

// Endpoint reports a phone's registration, a trunk's server, the PSTN.
func (m *modelNet) Endpoint(resource string) (string, bool) {
	cfg := &m.s.cfg
	if strings.EqualFold(resource, cfg.PSTNEndpoint) {
		return "online", true
	}
	if b, ok := m.fleet.Phone(m.cm.Name(), resource); ok {
		if b.Mode == callmodel.ModeUnregistered {
			return "offline", true
		}
		return "online", true
	}
	server := resource
	if name, ok := cfg.TrunkServers[resource]; ok {
		server = name
	}
	if peer := m.fleet.Server(server); peer != nil && peer != m.cm {
		if peer.Stopped() {
			return "offline", true
		}
		return "online", true
	}
	return "", false
}

// Endpoints lists the phones of the server, the trunks to the other
// servers and the PSTN.
func (m *modelNet) Endpoints() []string {
	out := m.fleet.PhonesOf(m.cm.Name())
	for _, peer := range m.fleet.Servers() {
		if peer != m.cm {
			out = append(out, peer.Name())
		}
	}
	return append(out, m.s.cfg.PSTNEndpoint)
}

// PrepareInbound names the SIP channel of a call offered to the server
// after the endpoint it matched and picks its context.
func (m *modelNet) PrepareInbound(_ *callmodel.Tx, spec *callmodel.ChannelSpec, call *callmodel.InboundCall) {
	endpoint, context := m.inboundEndpoint(call)
	if spec.Context == "" {
		spec.Context = context
	}
	spec.Name = m.s.eng.pjsipName(endpoint)
}

func (m *modelNet) inboundEndpoint(call *callmodel.InboundCall) (endpoint, context string) {
	cfg := &m.s.cfg
	switch call.Origin {
	case callmodel.OriginTrunk:
		endpoint = call.FromServer
		for ep, server := range cfg.TrunkServers {
			if server == call.FromServer {
				endpoint = ep
				break
			}
		}
		return endpoint, cfg.TrunkContext
	case callmodel.OriginPSTN:
		return cfg.PSTNEndpoint, cfg.PSTNContext
	}
	endpoint = call.FromExt
	if endpoint == "" {
		endpoint = call.Caller.Number
	}
	return endpoint, cfg.PhoneContext
}

// Route hands the new channel to the ARI server: Stasis(app,context,exten).
func (m *modelNet) Route(tx *callmodel.Tx, uuid string) {
	snap, ok := tx.Snapshot(uuid)
	if !ok {
		return
	}
	endpoint := snap.Name
	if i := strings.IndexByte(endpoint, '/'); i >= 0 {
		endpoint = endpoint[i+1:]
	}
	if i := strings.LastIndexByte(endpoint, '-'); i >= 0 {
		endpoint = endpoint[:i]
	}
	var headers map[string]string
	if len(snap.Headers) > 0 {
		headers = make(map[string]string, len(snap.Headers))
		for _, h := range snap.Headers {
			headers[h.Name] = h.Value
		}
	}
	call := InboundCall{
		Endpoint: endpoint,
		Trunk:    snap.Origin == callmodel.OriginTrunk,
		Context:  snap.Context,
		Exten:    snap.Destination,
		Caller:   Party{Name: snap.Caller.Name, Number: snap.Caller.Number},
		Headers:  headers,
		Leg:      &modelLeg{m: m, uuid: uuid},
		name:     snap.Name,
	}
	if snap.NetworkIP != "" {
		call.RemoteAddr = snap.NetworkIP + ":5060"
	}
	// The ARI channel is made on the engine's inbox, not inside this model
	// transaction: the model never waits for the engine lock. What the
	// caller does next goes through the same inbox, so it comes after.
	e := m.s.eng
	late := &lateEvents{e: e}
	e.inbox.push([]func(){func() {
		in, err := m.s.Inbound(call)
		if err != nil {
			m.s.log.Warn("inbound call refused", "call", uuid, "err", err)
			(&modelLeg{m: m, uuid: uuid}).Hangup(causeDestOutOfOrder)
			return
		}
		late.set(in)
	}})
	_ = tx.Watch(uuid, func(_ *callmodel.Tx, ev *callmodel.Event) bool {
		switch ev.Kind {
		case callmodel.ChannelHangup:
			if ev.Reason != callmodel.ByRequest {
				late.hangup(ev.Channel.Cause.Q850())
			}
			return false
		case callmodel.ChannelDestroyed:
			return false
		}
		return true
	})
}

// lateEvents forwards the caller's hangup to an inbound channel that the
// inbox creates after the model transaction that offered it.
type lateEvents struct {
	e  *engine
	mu sync.Mutex
	in LegEvents
}

func (l *lateEvents) set(in LegEvents) {
	l.mu.Lock()
	l.in = in
	l.mu.Unlock()
}

func (l *lateEvents) hangup(cause int) {
	l.e.inbox.push([]func(){func() {
		l.mu.Lock()
		in := l.in
		l.mu.Unlock()
		if in != nil {
			in.Hangup(cause)
		}
	}})
}

// observe follows the model server's life: a restart drops every channel
// and socket, as a crashed Asterisk does.
func (m *modelNet) observe(_ *callmodel.Tx, ev *callmodel.Event) {
	switch ev.Kind {
	case callmodel.ServerRestarted:
		m.s.lostEverything()
	case callmodel.ServerStopped:
		m.s.lostEverything()
	}
}

// modelLeg is the ARI server's side of a SIP call in the model. Its
// methods run on the ARI server's dispatcher goroutine.
type modelLeg struct {
	m    *modelNet
	uuid string
}

func (l *modelLeg) do(f func(tx *callmodel.Tx)) {
	_ = l.m.cm.Do(func(tx *callmodel.Tx) error { f(tx); return nil })
}

func (l *modelLeg) Ring()   { l.do(func(tx *callmodel.Tx) { _ = tx.Ring(l.uuid) }) }
func (l *modelLeg) Answer() { l.do(func(tx *callmodel.Tx) { _ = tx.Answer(l.uuid) }) }
func (l *modelLeg) Hangup(cause int) {
	l.do(func(tx *callmodel.Tx) { tx.Hangup(l.uuid, modelCause(cause), callmodel.ByRequest) })
}

// TransferProgress is a NOTIFY about a REFER the phone sent.
func (l *modelLeg) TransferProgress(frag int) {
	l.m.cm.Fleet().NoteTransferProgress(l.uuid, frag)
}

// Bridged mirrors ARI bridges of two SIP channels in the model, so the Lab
// can tell who a call is bridged to.
func (l *modelLeg) Bridged(_ string, others []Leg) {
	var peer *modelLeg
	if len(others) == 1 {
		if o, ok := others[0].(*modelLeg); ok && o.m == l.m {
			peer = o
		}
	}
	l.do(func(tx *callmodel.Tx) {
		if peer == nil {
			tx.Unbridge(l.uuid)
			return
		}
		if s, ok := tx.Snapshot(l.uuid); ok && s.BridgedTo == peer.uuid {
			return
		}
		_ = tx.Bridge(l.uuid, peer.uuid)
	})
}
