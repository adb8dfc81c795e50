package ari

import (
	"fmt"
	"math/rand/v2"
)

// Inbound offers a SIP call to the server: it becomes a PJSIP channel in
// state Ring that runs the dialplan of call.Context, normally
// Stasis(<app>,<context>,<exten>). The returned LegEvents carries what the
// caller does next (Hangup when the caller hangs up). call.Leg receives
// ringing, answer and hangup, always from the server's dispatcher
// goroutine, never from within Inbound.
func (s *Server) Inbound(call InboundCall) (LegEvents, error) {
	if call.Leg == nil {
		return nil, fmt.Errorf("inbound call to %s: no leg to answer on", s.cfg.SystemName)
	}
	e := s.eng
	e.lock()
	defer e.unlock()
	if e.closed {
		return nil, ErrClosed
	}
	id := call.ChannelID
	if id == "" {
		id = e.newID()
	} else if _, taken := e.channels[id]; taken || e.reserved[id] {
		return nil, fmt.Errorf("inbound call to %s: channel id %q already exists", s.cfg.SystemName, id)
	}
	endpoint := call.Endpoint
	if endpoint == "" {
		endpoint = "anonymous"
	}
	callID := call.CallID
	if callID == "" {
		callID = newUUID()
	}
	name := call.name
	if name == "" {
		name = e.pjsipName(endpoint)
	}
	c := e.newChannel(id, name, techPJSIP, stateRing, cep{Context: call.Context, Exten: call.Exten, Priority: 1})
	c.inbound, c.trunk, c.leg, c.resource = true, call.Trunk, call.Leg, endpoint
	c.remoteAddr = call.RemoteAddr
	c.snap.ProtocolID = callID
	c.snap.Caller = call.Caller
	for _, kv := range e.epVars[endpoint] {
		_ = e.setVariable(c, kv[0], kv[1], false)
	}
	if len(call.Headers) > 0 {
		c.hdrIn = make(map[string]string, len(call.Headers))
		for k, v := range call.Headers {
			c.hdrIn[k] = v
		}
	}
	h := &legEvents{e: e, c: c, epoch: e.epoch}
	switch {
	case e.cfg.isStasisContext(call.Context):
		e.runStasisContext(c, call.Context, call.Exten, 1)
	case call.Context == targetsContext:
		e.runTarget(c, call.Exten)
	default:
		e.invalidExten(c)
	}
	return h, nil
}

// rtpStats are the variables res_rtp_asterisk sets on an answered SIP
// channel when it hangs up, with the recorded values of a call without
// media.
func (e *engine) rtpStats(c *channel) {
	if !e.cfg.RTPStats || c.tech != techPJSIP || !c.wasUp || c.rtpStatsSet {
		return
	}
	c.rtpStatsSet = true
	e.varset(c, "RTPAUDIOQOS", fmt.Sprintf("ssrc=%d;themssrc=0;lp=0;rxjitter=0.000000;rxcount=0;txjitter=0.000000;txcount=0;rlp=0;rtt=0.000000;rxmes=0.000000;txmes=0.000000", rand.Uint32()))
	e.varset(c, "RTPAUDIOQOSJITTER", "minrxjitter=000.000000;maxrxjitter=000.000000;avgrxjitter=000.000000;stdevrxjitter=000.000000;mintxjitter=000.000000;maxtxjitter=000.000000;avgtxjitter=000.000000;stdevtxjitter=000.000000;")
	e.varset(c, "RTPAUDIOQOSLOSS", "  minrxlost=000.000000;  maxrxlost=000.000000;  avgrxlost=000.000000;  stdevrxlost=000.000000;  mintxlost=000.000000;  maxtxlost=000.000000;  avgtxlost=000.000000;  stdevtxlost=000.000000;")
	e.varset(c, "RTPAUDIOQOSRTT", "     minrtt=000.000000;     maxrtt=000.000000;     avgrtt=000.000000;     stdevrtt=000.000000;")
	e.varset(c, "RTPAUDIOQOSMES", "   minrxmes=000.000000;   maxrxmes=000.000000;   avgrxmes=000.000000;   stdevrxmes=000.000000;   mintxmes=000.000000;   maxtxmes=000.000000;   avgtxmes=000.000000;   stdevtxmes=000.000000;")
}
