package ari

import (
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
)

type bridge struct {
	snap    bridgeSnap
	members []*channel
	// subs are the applications watching the bridge. An application starts
	// watching a bridge when one of its Stasis channels enters it and keeps
	// watching until the bridge is destroyed (the recorded BridgeDestroyed
	// arrives after every channel left).
	subs map[string]bool
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func (e *engine) createBridge(id, name, typ string) *bridge {
	if id == "" {
		id = newUUID()
	}
	if typ == "" {
		typ = "mixing"
	}
	b := &bridge{
		snap: bridgeSnap{
			ID: id, Technology: "simple_bridge", Type: typ, Class: "stasis", Creator: "Stasis",
			Name: name, Channels: []string{}, Created: e.now(), VideoMode: "talker",
		},
		subs: make(map[string]bool),
	}
	e.bridges[id] = b
	e.emit(encBridgeEvent(nil, "BridgeCreated", b.snap.Created, &b.snap), b)
	return b
}

func (b *bridge) refresh() {
	ids := make([]string, len(b.members))
	for i, m := range b.members {
		ids[i] = m.snap.ID
	}
	b.snap.Channels = ids
	if len(b.members) > 2 {
		b.snap.Technology = "softmix"
	} else {
		b.snap.Technology = "simple_bridge"
	}
}

// bridgeAdd puts channels (all in Stasis) into b, moving them out of any
// other bridge first.
func (e *engine) bridgeAdd(b *bridge, chans []*channel) {
	e.bridgeInsert(b, chans, -1)
}

// bridgeReplace swaps old for c in old's bridge, c taking old's place in
// the member list (a transfer's Local channel replacing the transferer).
func (e *engine) bridgeReplace(old, c *channel) {
	b := old.bridge
	at := -1
	for i, m := range b.members {
		if m == old {
			at = i
		}
	}
	e.bridgeLeave(old)
	e.bridgeInsert(b, []*channel{c}, at)
}

func (e *engine) bridgeInsert(b *bridge, chans []*channel, at int) {
	for _, c := range chans {
		if c.bridge == b {
			continue
		}
		if c.bridge != nil {
			e.bridgeLeave(c)
		}
		c.bridge = b
		if at >= 0 && at <= len(b.members) {
			b.members = append(b.members[:at], append([]*channel{c}, b.members[at:]...)...)
			at++
		} else {
			b.members = append(b.members, c)
		}
		if c.stasis != "" {
			b.subs[c.stasis] = true
		}
		b.refresh()
		snap := b.snap
		snap.Channels = append([]string(nil), b.snap.Channels...)
		e.emitBridgeChannel(encBridgeChannel(nil, "ChannelEnteredBridge", e.now(), &snap, &c.snap), b, c)
	}
	e.bridgePeers(b)
	e.bridgeConnectedLines(b)
	e.bridgeChanged(b)
}

// bridgeConnectedLines: in a two-party bridge each side's connected line
// becomes the other side's caller (ChannelConnectedLine), newest member
// first as recorded.
func (e *engine) bridgeConnectedLines(b *bridge) {
	if len(b.members) != 2 {
		return
	}
	for i := len(b.members) - 1; i >= 0; i-- {
		c, o := b.members[i], b.members[1-i]
		if c.snap.Connected == o.snap.Caller {
			continue
		}
		c.snap.Connected = o.snap.Caller
		e.emit(encChannelEvent(nil, "ChannelConnectedLine", e.now(), &c.snap), nil, c)
		// A Local half passes its connected line on as the caller of the
		// other half.
		if p := c.other; p != nil && !p.gone && p.snap.Caller != c.snap.Connected {
			e.setCaller(p, c.snap.Connected, false)
		}
	}
}

// bridgePeers sets BRIDGEPEER (and BRIDGEPVTCALLID for SIP peers) on every
// member of a bridge with two or more channels.
func (e *engine) bridgePeers(b *bridge) {
	if len(b.members) < 2 {
		return
	}
	for _, c := range b.members {
		var names []string
		var callID string
		for _, o := range b.members {
			if o != c {
				names = append(names, o.snap.Name)
				callID = o.snap.ProtocolID
			}
		}
		peer := strings.Join(names, ",")
		if c.vars["BRIDGEPEER"] != peer {
			e.varset(c, "BRIDGEPEER", peer)
		}
		if len(b.members) == 2 && callID != "" && c.vars["BRIDGEPVTCALLID"] != callID {
			e.varset(c, "BRIDGEPVTCALLID", callID)
		}
	}
}

// emitBridgeChannel sends a ChannelEnteredBridge or ChannelLeftBridge:
// Asterisk publishes them on the bridge's topic, so an application that
// only subscribed to the channel (the one that originated a Local channel
// into another application) does not get them (n-continue-out-of-bridge).
func (e *engine) emitBridgeChannel(body []byte, b *bridge, c *channel) {
	apps := e.recipients(b)
	if a := e.apps[c.stasis]; a != nil && !slices.Contains(apps, a) {
		apps = append(apps, a)
	}
	for _, a := range e.apps {
		if a.allChannels && !slices.Contains(apps, a) {
			apps = append(apps, a)
		}
	}
	if len(apps) > 0 {
		e.deliver(body, apps)
	}
}

// bridgeLeave takes c out of its bridge (ChannelLeftBridge).
func (e *engine) bridgeLeave(c *channel) {
	b := c.bridge
	if b == nil {
		return
	}
	if c.vars["BRIDGEPEER"] != "" {
		e.varset(c, "BRIDGEPEER", "")
	}
	if c.vars["BRIDGEPVTCALLID"] != "" {
		e.varset(c, "BRIDGEPVTCALLID", "")
	}
	for i, m := range b.members {
		if m == c {
			b.members = append(b.members[:i], b.members[i+1:]...)
			break
		}
	}
	c.bridge = nil
	b.refresh()
	snap := b.snap
	snap.Channels = append([]string(nil), b.snap.Channels...)
	e.emitBridgeChannel(encBridgeChannel(nil, "ChannelLeftBridge", e.now(), &snap, &c.snap), b, c)
	if bl, ok := c.leg.(BridgeAware); ok {
		e.later(func() { bl.Bridged("", nil) })
	}
	e.bridgeChanged(b)
}

func (e *engine) destroyBridge(b *bridge) {
	for len(b.members) > 0 {
		e.bridgeLeave(b.members[0])
	}
	e.emit(encBridgeEvent(nil, "BridgeDestroyed", e.now(), &b.snap), b)
	delete(e.bridges, b.snap.ID)
}

// bridgeChanged tells the network which SIP legs now share a bridge, so the
// Lab can report who a call is bridged to. A Local pair between two bridges
// (an attended transfer's link, a blind transfer's stand-in) carries the
// media through: the legs on both sides talk to each other.
func (e *engine) bridgeChanged(b *bridge) {
	legs := e.legsThrough(b, nil)
	if len(legs) == 0 {
		return
	}
	id := b.snap.ID
	for _, l := range legs {
		if bl, ok := l.(BridgeAware); ok {
			others := make([]Leg, 0, len(legs)-1)
			for _, o := range legs {
				if o != l {
					others = append(others, o)
				}
			}
			e.later(func() { bl.Bridged(id, others) })
		}
	}
}

// legsThrough lists the SIP legs in b and in every bridge a Local pair
// links to it.
func (e *engine) legsThrough(b *bridge, seen map[*bridge]bool) []Leg {
	if seen == nil {
		seen = map[*bridge]bool{}
	}
	seen[b] = true
	var legs []Leg
	for _, m := range b.members {
		switch {
		case m.leg != nil:
			legs = append(legs, m.leg)
		case m.half != 0 && m.other != nil && !m.other.gone && m.other.bridge != nil && !seen[m.other.bridge]:
			legs = append(legs, e.legsThrough(m.other.bridge, seen)...)
		}
	}
	return legs
}
