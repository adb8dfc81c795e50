package routing

import (
	"time"

	"github.com/callctl/callctl/controller/accounting"
)

// Summary is a decision in plain values, for people (callctl route), machines
// (--json) and records.
type Summary struct {
	Route      Kind             `json:"route"`
	Cause      string           `json:"cause,omitempty"`
	SIPCode    int              `json:"sip_code,omitempty"`
	Reason     string           `json:"reason,omitempty"`
	Origin     Origin           `json:"origin"`
	Server     string           `json:"server"`
	Peer       string           `json:"from_server,omitempty"`
	Caller     string           `json:"caller,omitempty"`
	CallerOrg  string           `json:"caller_org,omitempty"`
	Org        string           `json:"org,omitempty"`
	Dialed     string           `json:"dialed"`
	External   string           `json:"external,omitempty"`
	Targets    []TargetSummary  `json:"targets,omitempty"`
	CallerName string           `json:"caller_id_name,omitempty"`
	Warning    string           `json:"caller_id_warning,omitempty"`
	Billing    string           `json:"billing,omitempty"`
	Legs       []accounting.Leg `json:"counted_legs"`
	Fallback   string           `json:"fallback,omitempty"`
	// Emergency: an emergency number, to the PSTN whatever the rule.
	Emergency bool `json:"emergency,omitempty"`
	// Forwards are where the call would go next (SPEC §4); MaxForwards,
	// set by who has the plan, bounds them.
	Forwards    []ForwardSummary `json:"forwards,omitempty"`
	MaxForwards int              `json:"max_forwards,omitempty"`
}

// TargetSummary is one target in ringing order.
type TargetSummary struct {
	Number      string           `json:"number"`
	Kind        string           `json:"kind"`
	Server      string           `json:"server,omitempty"`
	Dial        string           `json:"dial"`
	Trunk       string           `json:"trunk,omitempty"`
	Carries     string           `json:"carries,omitempty"`
	CallerID    string           `json:"caller_id"`
	RingTimeout time.Duration    `json:"ring_timeout_ns,omitempty"`
	Registered  bool             `json:"registered"`
	Legs        []accounting.Leg `json:"counted_legs"`
}

// Summarize lays the decision out in plain values.
func (d *Decision) Summarize() Summary {
	s := Summary{Route: d.Kind, Reason: d.Reason, Origin: d.Origin, Dialed: d.Dialed, External: d.External,
		CallerName: d.CallerIDName, Warning: d.CallerIDWarning, Billing: d.Billing, Fallback: d.Fallback,
		Legs: d.InLegs.Slice(), Emergency: d.Emergency}
	if d.Kind == Rejected {
		s.Cause = d.Cause.String()
		s.SIPCode = d.Cause.SIP()
	}
	if d.Entry != nil {
		s.Server = d.Entry.Name
	}
	if d.PeerServer != nil {
		s.Peer = d.PeerServer.Name
	}
	if d.Caller != nil {
		s.Caller = d.Caller.Ext
	}
	if d.CallerOrg != nil {
		s.CallerOrg = d.CallerOrg.ID
	}
	if d.Org != nil {
		s.Org = d.Org.ID
	}
	members := d.Members()
	d.ForwardRing(members)
	for _, t := range members {
		ts := TargetSummary{Number: t.Number, Kind: t.Kind.String(), Dial: t.DialString(), Carries: t.Dest,
			CallerID: t.CallerID, RingTimeout: t.RingTimeout, Registered: t.Registered, Legs: t.Legs.Slice()}
		if d.Kind == External {
			ts.Kind = "external"
		}
		if t.Server != nil {
			ts.Server = t.Server.Name
		}
		if t.Trunk != nil {
			ts.Trunk = "pstn"
			if t.Trunk.Peer != nil {
				ts.Trunk = t.Trunk.Peer.Name
			}
		}
		s.Targets = append(s.Targets, ts)
	}
	s.Forwards = d.forwardSummaries()
	if d.Kind == Feature {
		s.Targets = append(s.Targets, TargetSummary{Number: d.Target.Number, Kind: "feature code",
			Dial: "media server dialplan", Legs: []accounting.Leg{}})
	}
	return s
}
