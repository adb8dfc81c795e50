// Package routing turns a dialed string into a complete decision (SPEC §2–§7):
// what kind of route, which targets in which order, the caller ID to present,
// which legs count where, and who pays. It is pure: no I/O, no clock, no
// locks; it reads an immutable plan and allocates little.
package routing

import (
	"strings"
	"time"

	"github.com/callctl/callctl/controller/accounting"
	"github.com/callctl/callctl/controller/callerid"
	"github.com/callctl/callctl/controller/provision"
)

// Kind is the kind of route.
type Kind uint8

// Route kinds.
const (
	Rejected    Kind = iota
	Member           // one SIP number only (T suffix)
	Hunt             // sequential group
	Local            // an extension of the caller's org
	OrgConnect       // an extension of a linked org (seed 000)
	InterServer      // server prefix + extension (seed 003)
	External         // the PSTN
	Feature          // a feature code run by the media server itself
)

func (k Kind) String() string {
	switch k {
	case Rejected:
		return "rejected"
	case Member:
		return "member"
	case Hunt:
		return "hunt"
	case Local:
		return "local"
	case OrgConnect:
		return "org-connect"
	case InterServer:
		return "inter-server"
	case External:
		return "external"
	case Feature:
		return "feature"
	}
	return "unknown"
}

// MarshalText writes the kind's name.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Cause is why a call is rejected; each maps to a SIP code and a Q.850 cause.
type Cause uint8

// Causes.
const (
	CauseNone        Cause = iota
	CauseUnallocated       // SIP 404, UNALLOCATED_NUMBER (1)
	CauseRejected          // SIP 403, CALL_REJECTED (21)
	CauseCongestion        // SIP 503, NORMAL_CIRCUIT_CONGESTION (34)
	CauseInvalid           // SIP 484, INVALID_NUMBER_FORMAT (28)
	CauseBusy              // SIP 486, USER_BUSY (17)
	CauseNoAnswer          // SIP 480, NO_ANSWER (19)
	CauseFailure           // SIP 500, NORMAL_TEMPORARY_FAILURE (41)
	CauseNormal            // NORMAL_CLEARING (16)
	CauseOutOfOrder        // SIP 502, DESTINATION_OUT_OF_ORDER (27)
)

var causeNames = [...]string{"", "UNALLOCATED_NUMBER", "CALL_REJECTED", "NORMAL_CIRCUIT_CONGESTION",
	"INVALID_NUMBER_FORMAT", "USER_BUSY", "NO_ANSWER", "NORMAL_TEMPORARY_FAILURE", "NORMAL_CLEARING", "DESTINATION_OUT_OF_ORDER"}
var causeQ850 = [...]int{0, 1, 21, 34, 28, 17, 19, 41, 16, 27}
var causeSIP = [...]int{0, 404, 403, 503, 484, 486, 480, 500, 200, 502}

func (c Cause) String() string {
	if int(c) < len(causeNames) {
		return causeNames[c]
	}
	return "UNKNOWN"
}

// Q850 is the ISDN cause code.
func (c Cause) Q850() int {
	if int(c) < len(causeQ850) {
		return causeQ850[c]
	}
	return 0
}

// SIP is the SIP response code that goes with the cause.
func (c Cause) SIP() int {
	if int(c) < len(causeSIP) {
		return causeSIP[c]
	}
	return 0
}

// MarshalText writes the cause's name.
func (c Cause) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// Request is a call to route.
type Request struct {
	// Server is the media server the call is on.
	Server string
	// Source is the signalling source identity of the call (an address for
	// FreeSWITCH, a PJSIP endpoint for Asterisk). It decides whether the call
	// comes from a trunk of another server, from the PSTN, or from a phone.
	Source string
	// Caller is the calling extension (from a phone) or number (PSTN, trunk).
	Caller     string
	CallerName string
	// Domain optionally names the caller's org (a SIP domain, a context).
	Domain string
	// MarkOrg is the destination org carried by a call from another server's
	// trunk; it is trusted only when Source is a known trunk.
	MarkOrg string
	Dialed  string
	// Transfer says Caller (a user) is transferring the party OriginalCaller
	// to Dialed: attended transfers show the transferring user like any call
	// of theirs, blind ones pass the original caller through (SPEC §4).
	Transfer       Transfer
	OriginalCaller string
	OriginalName   string
	// Withheld says the caller asked for its number to be withheld (SIP
	// Privacy: id, as the media server tells).
	Withheld bool
	// TransferOrg is the org of the call an IVR transfer moves on (the org
	// it was routed in); Previous the destination it had before (a DID for
	// an external call). An IVR transfer routes in TransferOrg, else in the
	// org that uses the DID Previous.
	TransferOrg string
	Previous    string
}

// Transfer kinds.
type Transfer uint8

// Transfers.
const (
	NoTransfer Transfer = iota
	Attended
	Blind
	// IVR: the media server itself moved the call on (an IVR's or the
	// dialplan's transfer, uuid_transfer, an ARI redirect): no user
	// transferred it.
	IVR
)

func (t Transfer) String() string {
	switch t {
	case Attended:
		return "attended"
	case Blind:
		return "blind"
	case IVR:
		return "ivr"
	}
	return ""
}

// ParseTransfer reads a transfer kind's name ("" is no transfer).
func ParseTransfer(s string) (Transfer, bool) {
	for _, t := range []Transfer{NoTransfer, Attended, Blind, IVR} {
		if t.String() == s {
			return t, true
		}
	}
	return NoTransfer, false
}

// Origin is where a call came from, as decided from its source.
type Origin uint8

// Origins.
const (
	FromPhone Origin = iota + 1
	FromPSTN
	FromTrunk
)

func (o Origin) String() string {
	switch o {
	case FromPhone:
		return "phone"
	case FromPSTN:
		return "pstn"
	case FromTrunk:
		return "trunk"
	}
	return "unknown"
}

// MarshalText writes the origin's name.
func (o Origin) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// Decision is the complete answer for one call.
type Decision struct {
	Kind   Kind
	Cause  Cause
	Reason string
	Origin Origin
	Dialed string

	// Org is the org the destination is in; CallerOrg the caller's (nil for a
	// PSTN caller until the DID tells).
	Org       *provision.OrgInfo
	CallerOrg *provision.OrgInfo
	Caller    *provision.UserInfo
	Entry     *provision.ServerInfo
	// PeerServer is the server a trunk call came from.
	PeerServer *provision.ServerInfo

	// Target is the single destination (Local, OrgConnect, InterServer,
	// External, Member, Feature); for a hunt, its first member.
	Target Target
	// hunt: members follow Next from Target's SIP number, Walk of them.
	start *provision.SIPInfo
	walk  int

	// External is the E.164 destination of an external call.
	External string

	// CallerIDNumber and CallerIDName are presented to targets on the entry
	// server; TrunkCallerID to targets reached over a trunk (prefixed, SPEC
	// §4). Each Target carries the one it gets.
	CallerIDNumber string
	CallerIDName   string
	TrunkCallerID  string
	// CallerIDWarning is set when the wanted caller ID could not be used.
	CallerIDWarning string
	// Withheld: the caller passed through is presented as withheld (SPEC
	// §10), with no number or name; CallerIDNumber is then empty.
	Withheld bool

	// Billing is the account (org id) that pays.
	Billing string
	// Emergency is set for a call to an emergency number: it goes to the
	// PSTN whatever the outbound rule, and no limit refuses its legs.
	Emergency bool

	// InLegs are counted when the call arrives (PSTN or trunk inbound).
	InLegs accounting.Legs

	// Fallback is dialed when nobody in a hunt answered.
	Fallback string
}

// Target is one destination to dial.
type Target struct {
	Number string
	Kind   provision.TargetKind
	Server *provision.ServerInfo
	// Endpoint is the media server endpoint when the target is on the entry
	// server; Trunk is set instead when it is reached over a trunk, and Dest is
	// what the trunk call carries (the destination without any prefix).
	Endpoint    string
	Trunk       *provision.TrunkInfo
	Dest        string
	CallerID    string
	RingTimeout time.Duration
	Registered  bool
	// Legs are counted while this target is dialed and connected.
	Legs accounting.Legs
}

// DialString is what the media server dials for this target: the endpoint, or
// the trunk's template filled with Dest.
func (t *Target) DialString() string {
	if t.Trunk != nil {
		return t.Trunk.DialString(t.Dest)
	}
	return t.Endpoint
}

// Members returns the hunt's members in ringing order (allocates; the engine
// calls it once per call). For other kinds it returns the single target.
func (d *Decision) Members() []Target {
	if d.Kind != Hunt {
		if d.Kind == Rejected || d.Kind == Feature {
			return nil
		}
		return []Target{d.Target}
	}
	out := make([]Target, 0, d.walk)
	m := d.start
	for i := 0; i < d.walk && m != nil; i++ {
		t := d.memberTarget(m)
		d.setCallerID(&t)
		out = append(out, t)
		m = m.Next
	}
	return out
}

func (d *Decision) setCallerID(t *Target) {
	t.CallerID = d.CallerIDNumber
	if t.Trunk != nil && t.Trunk.Peer != nil && d.TrunkCallerID != "" {
		t.CallerID = d.TrunkCallerID
	}
}

// passCaller sets the caller ID of a caller passed through to the targets
// (a PSTN or trunk caller, the party of a blind transfer). Caller IDs are
// data (SPEC §10): one that is not a number (anonymous, Restricted,
// unknown, "+49 30 1234") or that asked for privacy is withheld, never
// refused and never passed on.
func (d *Decision) passCaller(number, name string, private bool) {
	if private || !CallerNumber(number) {
		d.CallerIDNumber, d.CallerIDName, d.Withheld = "", "", true
		return
	}
	d.CallerIDNumber, d.CallerIDName, d.Withheld = number, name, false
}

// CallerNumber reports whether s can be presented as a caller's number:
// 1 to 32 digits, optionally after a '+'.
func CallerNumber(s string) bool {
	s = strings.TrimPrefix(s, "+")
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// HuntSize is the number of members a hunt rings at most.
func (d *Decision) HuntSize() int { return d.walk }

func reject(d *Decision, c Cause, reason string) {
	d.Kind = Rejected
	d.Cause = c
	d.Reason = reason
}

// Router routes calls over one plan. It is a value: a reload builds a new one.
type Router struct {
	Plan *provision.Plan
}

// New returns a router over plan.
func New(plan *provision.Plan) *Router { return &Router{Plan: plan} }

// Route decides what happens to a call. It never fails: a call that cannot be
// placed gets a Rejected decision with a cause and a reason.
func (r *Router) Route(req *Request) Decision {
	var d Decision
	r.RouteInto(req, &d)
	return d
}

// RouteInto is Route filling d in place: the engine keeps decisions off its
// goroutines' stacks, which stay small for the whole call.
func (r *Router) RouteInto(req *Request, d *Decision) {
	*d = Decision{}
	r.route(d, req)
	if d.Kind != Rejected {
		if d.TrunkCallerID == "" {
			d.TrunkCallerID = d.CallerIDNumber
		}
		d.setCallerID(&d.Target)
	}
}

func (r *Router) route(d *Decision, req *Request) {
	p := r.Plan
	d.Dialed = req.Dialed
	entry := p.Server(req.Server)
	if entry == nil {
		reject(d, CauseFailure, "call on unknown server "+req.Server)
		return
	}
	d.Entry = entry
	if !provision.ValidDialed(req.Dialed) {
		reject(d, CauseInvalid, "dialed string is not 1-32 of 0-9 * # + (optionally ending in T)")
		return
	}
	trunk := entry.Source(req.Source)
	if req.Transfer == IVR {
		r.fromIVR(d, req, entry, trunk)
		return
	}
	if req.Transfer != NoTransfer {
		// A user transferred the call: it routes as dialed by that user,
		// while the transferred party's channel still crosses the server's
		// edge as it did (a PSTN call transferred to another server counts
		// 2 + 1, SPEC §5).
		if u := p.Caller(entry.Name, req.Domain, req.Caller); u != nil {
			d.Origin = FromPhone
			d.Caller = u
			d.CallerOrg = u.Org
			d.Billing = u.Org.ID
			switch {
			case trunk != nil && trunk.Peer != nil:
				d.InLegs.Add(accounting.Leg{Server: entry.Name, Org: u.Org.ID, Kind: accounting.TrunkIn})
			case trunk != nil:
				d.InLegs.Add(accounting.Leg{Server: entry.Name, Org: u.Org.ID, Kind: accounting.PSTNIn})
			}
			r.fromUser(d, req, entry, u)
			return
		}
		// Nobody known transferred it: as far as callctl can tell the media
		// server did, and the call stays in its org (never a new DID).
		r.fromIVR(d, req, entry, trunk)
		return
	}
	switch {
	case trunk != nil && trunk.Peer != nil:
		d.Origin = FromTrunk
		d.PeerServer = trunk.Peer
		r.fromTrunk(d, req, entry)
		return
	case trunk != nil:
		d.Origin = FromPSTN
		r.fromPSTN(d, req, entry)
		return
	}
	d.Origin = FromPhone
	caller := p.Caller(entry.Name, req.Domain, req.Caller)
	if caller == nil {
		reject(d, CauseRejected, "caller "+req.Caller+" is not a user of server "+entry.Name)
		return
	}
	d.Caller = caller
	d.CallerOrg = caller.Org
	d.Billing = caller.Org.ID
	r.fromUser(d, req, entry, caller)
}

// fromIVR routes a transfer nobody dialed (SPEC §4): an IVR's or the media
// server's own transfer is routed in the org of the call being transferred
// (an external call's org is the one that received its DID), never as a
// new DID. The transferred party is passed through, and its channel still
// crosses the server's edge as it did (2 + 1 across servers, SPEC §5).
func (r *Router) fromIVR(d *Decision, req *Request, entry *provision.ServerInfo, trunk *provision.TrunkInfo) {
	p := r.Plan
	// The party moved on: for a user's transfer whose user callctl does not
	// know, the original caller; for the media server's, the call's caller.
	caller, name := req.Caller, req.CallerName
	if req.Transfer != IVR && req.OriginalCaller != "" {
		caller, name = req.OriginalCaller, req.OriginalName
	}
	org := p.Org(req.TransferOrg)
	billing := ""
	if org == nil && req.Previous != "" {
		n := p.Number(req.Previous)
		if n == nil && req.Previous[0] != '+' {
			n = p.Number("+" + req.Previous)
		}
		if n != nil {
			org, billing = n.User, n.Owner.ID
		}
	}
	switch {
	case trunk != nil && trunk.Peer != nil:
		d.Origin = FromTrunk
		d.PeerServer = trunk.Peer
	case trunk != nil:
		d.Origin = FromPSTN
	default:
		d.Origin = FromPhone
	}
	user := p.Caller(entry.Name, req.Domain, caller)
	if org == nil && d.Origin == FromPhone && user != nil {
		org = user.Org
	}
	if org == nil {
		reject(d, CauseUnallocated, "transfer to "+req.Dialed+" by the media server: the org of the call is unknown"+
			" (not a call callctl routed, nor a previous destination that is a DID)")
		return
	}
	if billing == "" {
		billing = org.ID
	}
	d.Org = org
	d.Billing = billing
	d.passCaller(caller, name, req.Withheld)
	switch d.Origin {
	case FromTrunk:
		d.InLegs.Add(accounting.Leg{Server: entry.Name, Org: org.ID, Kind: accounting.TrunkIn})
	case FromPSTN:
		d.InLegs.Add(accounting.Leg{Server: entry.Name, Org: org.ID, Kind: accounting.PSTNIn})
	default:
		// A phone of the server: shown as its extension here and prefixed
		// across servers, like any call of its own.
		if user != nil {
			d.Caller = user
			d.CallerOrg = user.Org
			if !d.Withheld {
				d.CallerIDName = user.Name
				d.TrunkCallerID = user.Prefixed
			}
		}
	}
	s := req.Dialed
	if s[len(s)-1] == 'T' || org.Lookup(s) != nil {
		r.internal(d, org, s, entry, org.ID)
		if d.Kind != Rejected || d.Cause != CauseUnallocated {
			return
		}
		d.Cause, d.Reason = CauseNone, ""
	}
	// A server prefix + a destination of the org on that server.
	if sv, n := p.ServerByPrefix(s); sv != nil {
		if t := org.Lookup(s[n:]); t != nil && t.Kind != provision.TargetFeature && t.Home() == sv {
			r.internal(d, org, s[n:], entry, org.ID)
			return
		}
	}
	if _, ok := org.Normalize(s); ok {
		// No user transferred it, so no user's outbound rule allows it.
		reject(d, CauseRejected, "transfer to "+s+" by the media server: an external number needs a user's outbound rule")
		return
	}
	reject(d, CauseUnallocated, "nothing in org "+org.ID+" answers to "+s)
}

// fromTrunk routes a call that another server sent over its trunk: the mark
// names the destination org, the dialed string is that org's extension, group
// or SIP number (steps 1–3, 6), and the presented caller is kept.
func (r *Router) fromTrunk(d *Decision, req *Request, entry *provision.ServerInfo) {
	org := r.Plan.Org(req.MarkOrg)
	if org == nil {
		reject(d, CauseRejected, "trunk call from server "+d.PeerServer.Name+" names unknown org "+req.MarkOrg)
		return
	}
	d.Org = org
	d.Billing = org.ID
	d.passCaller(req.Caller, req.CallerName, req.Withheld)
	d.InLegs.Add(accounting.Leg{Server: entry.Name, Org: org.ID, Kind: accounting.TrunkIn})
	r.internal(d, org, req.Dialed, entry, org.ID)
	if d.Kind != Hunt && d.Target.Trunk != nil {
		// The sender routes to the target's home server: a trunk call for a
		// target that lives elsewhere means the plans disagree; sending it on
		// could loop between servers.
		reject(d, CauseUnallocated, req.Dialed+" of org "+org.ID+" is not on server "+entry.Name)
		return
	}
}

// fromPSTN routes a DID to its destination in the org that uses the number.
func (r *Router) fromPSTN(d *Decision, req *Request, entry *provision.ServerInfo) {
	n := r.Plan.Number(req.Dialed)
	if n == nil && len(req.Dialed) > 0 && req.Dialed[0] != '+' {
		// Carriers often deliver the DID without the plus.
		n = r.Plan.Number("+" + req.Dialed)
	}
	if n == nil || n.Destination == nil {
		reject(d, CauseUnallocated, "number "+req.Dialed+" is not allocated")
		return
	}
	d.Org = n.User
	// Inbound calls over a number are billed to its owner (seed 001).
	d.Billing = n.Owner.ID
	d.passCaller(req.Caller, req.CallerName, req.Withheld)
	d.InLegs.Add(accounting.Leg{Server: entry.Name, Org: n.User.ID, Kind: accounting.PSTNIn})
	r.target(d, n.User, n.Destination, entry, n.User.ID)
}

func (r *Router) fromUser(d *Decision, req *Request, entry *provision.ServerInfo, caller *provision.UserInfo) {
	org := caller.Org
	s := req.Dialed
	// Caller ID of internal calls: the caller's extension. A blind transfer
	// passes the transferred party through instead (SPEC §4).
	d.CallerIDNumber = caller.Ext
	d.CallerIDName = caller.Name
	if req.Transfer == Blind {
		d.passCaller(req.OriginalCaller, req.OriginalName, req.Withheld)
	}

	// Emergency numbers before anything else: they reach the PSTN whatever
	// the rule (the validator keeps them out of the org's own numbers).
	if org.Emergency(s) {
		r.emergency(d, req, org, caller)
		return
	}
	// Steps 1–3 and 6: the org's own dialed strings.
	if s[len(s)-1] == 'T' || org.Lookup(s) != nil {
		r.internal(d, org, s, entry, org.ID)
		if d.Kind != Rejected || d.Cause != CauseUnallocated {
			r.internalCallerID(d, caller, req)
			return
		}
		// Not the org's after all: the next steps decide.
		d.Cause, d.Reason = CauseNone, ""
	}
	// Step 4: org-connect prefix + extension of a linked org.
	if dest, n := caller.Rule.OrgConnect(s); dest != nil {
		if t := dest.Lookup(s[n:]); t != nil && t.Kind != provision.TargetFeature {
			r.target(d, dest, t, entry, org.ID)
			if d.Kind == Local {
				d.Kind = OrgConnect // a group of the other org hunts as usual
			}
			r.orgConnectCallerID(d, caller, dest, req)
			return
		}
	}
	// Step 5: server prefix + destination on that server, same org.
	if sv, n := r.Plan.ServerByPrefix(s); sv != nil {
		if t := org.Lookup(s[n:]); t != nil && t.Kind != provision.TargetFeature && t.Home() == sv {
			r.internal(d, org, s[n:], entry, org.ID)
			r.internalCallerID(d, caller, req)
			return
		}
	}
	// Step 7: external.
	if e164, ok := org.Normalize(s); ok {
		r.external(d, req, org, caller, e164)
		return
	}
	reject(d, CauseUnallocated, "nothing in org "+org.ID+" answers to "+s)
}

// internal routes s among org's own dialed strings.
func (r *Router) internal(d *Decision, org *provision.OrgInfo, s string, entry *provision.ServerInfo, legOrg string) {
	d.Org = org
	if s[len(s)-1] == 'T' {
		m := org.SIPNumbers[s[:len(s)-1]]
		if m == nil {
			reject(d, CauseUnallocated, s[:len(s)-1]+" is not a sip number of org "+org.ID)
			return
		}
		d.Kind = Member
		d.Target = d.memberTarget(m)
		return
	}
	t := org.Lookup(s)
	if t == nil {
		reject(d, CauseUnallocated, "nothing in org "+org.ID+" answers to "+s)
		return
	}
	r.target(d, org, t, entry, legOrg)
}

// target fills the decision for an internal target of org.
func (r *Router) target(d *Decision, org *provision.OrgInfo, t *provision.DialTarget, entry *provision.ServerInfo, legOrg string) {
	d.Org = org
	switch t.Kind {
	case provision.TargetExtension:
		d.Kind = Local
		u := t.User
		d.Target = Target{Number: u.Ext, Kind: t.Kind, Server: u.Server, RingTimeout: org.RingTimeout, Registered: true}
		placeOn(d.Entry, &d.Target, u.Endpoint, u.Ext, legOrg, org.ID)
		if d.Target.Trunk != nil {
			d.Kind = InterServer
		}
	case provision.TargetService:
		r.hunt(d, org, t.Service.Start)
		return
	case provision.TargetSIP:
		r.hunt(d, org, t.SIP)
		return
	case provision.TargetFeature:
		d.Kind = Feature
		d.Target = Target{Number: t.Code, Kind: t.Kind, Server: entry, Registered: true}
	}
}

// FallbackInto routes into fd the fallback target of hunt d, which nobody
// answered (SPEC §3): the hunt's org's extension, group or SIP number,
// reached as from the hunt (the legs count for the same org), and presented
// with the caller d presented, whoever called: a phone, a trunk or the PSTN
// (SPEC §4: a forward passes the caller through). A fallback has no
// fallback of its own.
func (r *Router) FallbackInto(d, fd *Decision) {
	*fd = Decision{Dialed: d.Fallback, Origin: d.Origin, Entry: d.Entry, PeerServer: d.PeerServer,
		Caller: d.Caller, CallerOrg: d.CallerOrg, Billing: d.Billing,
		CallerIDNumber: d.CallerIDNumber, CallerIDName: d.CallerIDName, TrunkCallerID: d.TrunkCallerID,
		Withheld: d.Withheld}
	if d.Kind != Hunt || d.Org == nil || d.Fallback == "" || d.Entry == nil {
		reject(fd, CauseBusy, "no fallback")
		return
	}
	legOrg := d.Org.ID
	if d.CallerOrg != nil {
		legOrg = d.CallerOrg.ID
	}
	r.internal(fd, d.Org, d.Fallback, d.Entry, legOrg)
	fd.Fallback = ""
	if fd.Kind != Rejected {
		fd.setCallerID(&fd.Target)
	}
}

func (r *Router) hunt(d *Decision, org *provision.OrgInfo, start *provision.SIPInfo) {
	d.Kind = Hunt
	d.Org = org
	d.start = start
	d.walk = start.Walk
	d.Fallback = org.Fallback
	d.Target = d.memberTarget(start)
}

// memberTarget builds the target for one member of a group.
func (d *Decision) memberTarget(m *provision.SIPInfo) Target {
	t := Target{Number: m.Number, Kind: provision.TargetSIP, Server: m.Server, RingTimeout: m.RingTimeout, Registered: m.Registered}
	legOrg := m.Org.ID
	if d.CallerOrg != nil {
		legOrg = d.CallerOrg.ID
	}
	// Over a trunk a member is sent with T: this call runs the hunt, the far
	// server only rings the member.
	placeOn(d.Entry, &t, m.Endpoint, m.Only, legOrg, m.Org.ID)
	return t
}

// placeOn sets where the target is dialed and which legs it costs.
func placeOn(entry *provision.ServerInfo, t *Target, endpoint, dest, legOrg, destOrg string) {
	if t.Server == nil || t.Server == entry {
		t.Endpoint = endpoint
		return
	}
	// Another server: over the entry server's trunk to it. The trunk leg
	// counts on both servers; the far one counts it when the call arrives.
	t.Trunk = entry.Trunks[t.Server.Name]
	t.Dest = dest
	t.Legs.Add(accounting.Leg{Server: entry.Name, Org: legOrg, Kind: accounting.TrunkOut})
	t.Legs.Add(accounting.Leg{Server: t.Server.Name, Org: destOrg, Kind: accounting.TrunkIn, Remote: true})
}

// internalCallerID sets the caller ID shown for a call between extensions of
// one org: the extension on the same server, prefix + extension on another
// server (SPEC §4) so that a call-back works.
func (r *Router) internalCallerID(d *Decision, caller *provision.UserInfo, req *Request) {
	if d.Kind == Rejected {
		return
	}
	if req.Transfer != Blind {
		d.TrunkCallerID = caller.Prefixed
	}
}

// orgConnectCallerID shows the caller as the callee's prefix back to the
// caller's org + extension (seed 000: 2124); without a prefix back, the bare
// extension with the caller org's name.
func (r *Router) orgConnectCallerID(d *Decision, caller *provision.UserInfo, dest *provision.OrgInfo, req *Request) {
	if d.Kind == Rejected || req.Transfer == Blind {
		return
	}
	back := ""
	if u, ok := d.calleeUser(dest); ok && u.Rule != nil {
		back = u.Rule.PrefixFor(caller.Org.ID)
	}
	if back == "" {
		// No single callee (a group) or no user rule: any rule of the
		// destination org that reaches the caller's org.
		back = dest.PrefixBack(caller.Org.ID)
	}
	if back != "" {
		d.CallerIDNumber = back + caller.Ext
		d.CallerIDName = caller.Name
	} else {
		d.CallerIDNumber = caller.Ext
		d.CallerIDName = caller.Org.Name
	}
}

func (d *Decision) calleeUser(dest *provision.OrgInfo) (*provision.UserInfo, bool) {
	if d.Target.Kind != provision.TargetExtension {
		return nil, false
	}
	u := dest.Users[d.Target.Number]
	return u, u != nil
}

// emergency sends an emergency number to the PSTN as dialed, with the
// caller's usual caller ID (a call-back number).
func (r *Router) emergency(d *Decision, req *Request, org *provision.OrgInfo, caller *provision.UserInfo) {
	d.Org = org
	d.Emergency = true
	if d.Entry.PSTN == nil {
		reject(d, CauseFailure, "emergency number "+req.Dialed+": server "+d.Entry.Name+" has no PSTN trunk")
		return
	}
	d.Kind = External
	d.External = req.Dialed
	d.Target = Target{Number: req.Dialed, Server: d.Entry, Trunk: d.Entry.PSTN, Dest: req.Dialed, Registered: true}
	d.Target.Legs.Add(accounting.Leg{Server: d.Entry.Name, Org: org.ID, Kind: accounting.PSTNOut})
	ch := callerid.Choose(org, caller.Number, "")
	d.CallerIDNumber, d.CallerIDName, d.CallerIDWarning = ch.Number, "", ch.Warning
	d.Billing = org.ID
	if n := org.Usable(ch.Number); n != nil {
		d.Billing = n.Owner.ID
	}
}

// external routes to the PSTN after the outbound rule allows it (step 7).
func (r *Router) external(d *Decision, req *Request, org *provision.OrgInfo, caller *provision.UserInfo, e164 string) {
	d.Org = org
	d.External = e164
	if !provision.IsE164(e164, r.Plan.MinExternalDigits) {
		reject(d, CauseUnallocated, req.Dialed+" is too short or long for an external number ("+e164+")")
		return
	}
	if caller.Rule == nil {
		reject(d, CauseRejected, "user "+caller.Ext+" has no outbound rule: external calls are not allowed")
		return
	}
	if ok, why := caller.Rule.Permits(e164); !ok {
		reject(d, CauseRejected, why)
		return
	}
	if d.Entry.PSTN == nil {
		reject(d, CauseRejected, "server "+d.Entry.Name+" has no PSTN trunk")
		return
	}
	d.Kind = External
	d.Target = Target{Number: e164, Server: d.Entry, Trunk: d.Entry.PSTN, Dest: e164, Registered: true, RingTimeout: 0}
	d.Target.Legs.Add(accounting.Leg{Server: d.Entry.Name, Org: org.ID, Kind: accounting.PSTNOut})
	if req.Transfer == Blind {
		// A blind transfer to the PSTN keeps the original caller's number.
		return
	}
	ch := callerid.Choose(org, caller.Number, e164)
	d.CallerIDNumber = ch.Number
	d.CallerIDName = ""
	d.CallerIDWarning = ch.Warning
	// Outbound calls are billed to the owner of the number presented (seed 001).
	d.Billing = org.ID
	if n := org.Usable(ch.Number); n != nil {
		d.Billing = n.Owner.ID
	}
}
