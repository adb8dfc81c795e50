package routing

import (
	"time"

	"github.com/callctl/callctl/controller/accounting"
	"github.com/callctl/callctl/controller/provision"
)

// ForwardKind is why a call is forwarded (SPEC §4).
type ForwardKind uint8

// Forward kinds.
const (
	NoForward       ForwardKind = iota
	ForwardNoAnswer             // the user did not answer in time, or is not registered
	ForwardBusy                 // the user's phone was busy
	ForwardLimit                // a counted leg would have exceeded a limit
	ForwardFallback             // nobody in a group answered: its org's fallback (SPEC §3)
)

func (k ForwardKind) String() string {
	switch k {
	case ForwardNoAnswer:
		return "forward-noanswer"
	case ForwardBusy:
		return "forward-busy"
	case ForwardLimit:
		return "forward-limit"
	case ForwardFallback:
		return "fallback"
	}
	return ""
}

// MarshalText writes the kind's name.
func (k ForwardKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Forward is one forward of a call: why, where to, and whose forward it is.
type Forward struct {
	Kind ForwardKind
	// Target is dialed as its owner would dial it.
	Target string
	// By names the owner: the user's extension, or the limit ("server
	// srv12", "org acme").
	By   string
	user *provision.UserInfo
	org  *provision.OrgInfo
}

// OwnsForwards says whether the node routing d forwards its call. A call
// another server's node sent over its trunk is forwarded by that node,
// which rang the target over the trunk and hears its outcome; a hunt
// ends in its group's fallback instead.
func (d *Decision) OwnsForwards() bool {
	return d.Origin != FromTrunk && d.Kind != Hunt && d.Kind != Rejected && d.Kind != Feature
}

// OwnsLimitForwards says whether the node routing d forwards its call when
// a counted leg would exceed a limit: as OwnsForwards, and a hunt too (its
// member over a limit, or its arrival, goes to the limit's forward).
func (d *Decision) OwnsLimitForwards() bool {
	return d.Origin != FromTrunk && d.Kind != Rejected && d.Kind != Feature
}

// UserOf is the user behind the extension target t of d, or nil.
func (d *Decision) UserOf(t *Target) *provision.UserInfo {
	if t.Kind != provision.TargetExtension || d.Org == nil {
		return nil
	}
	return d.Org.Users[t.Number]
}

// ForwardRing sets the ring time of the targets of d that forward when
// they do not answer: they ring for the forward's wait, not the org's ring
// timeout.
func (d *Decision) ForwardRing(members []Target) {
	if !d.OwnsForwards() {
		return
	}
	for i := range members {
		if u := d.UserOf(&members[i]); u != nil && u.Forward.NoAnswer != "" {
			members[i].RingTimeout = u.Forward.After
		}
	}
}

// UserForward is the forward of the user behind target t of d for kind
// (no answer or busy), if the user has one and this node owns it.
func (d *Decision) UserForward(t *Target, kind ForwardKind) (Forward, bool) {
	if !d.OwnsForwards() {
		return Forward{}, false
	}
	u := d.UserOf(t)
	if u == nil {
		return Forward{}, false
	}
	f := Forward{Kind: kind, By: u.Ext, user: u}
	switch kind {
	case ForwardNoAnswer:
		f.Target = u.Forward.NoAnswer
	case ForwardBusy:
		f.Target = u.Forward.Busy
	}
	return f, f.Target != ""
}

// LimitForward is the forward of the limit of scope ("server" or "org")
// named name, if it has one and this node owns the call d.
func (r *Router) LimitForward(d *Decision, scope, name string) (Forward, bool) {
	if !d.OwnsLimitForwards() {
		return Forward{}, false
	}
	var lf *provision.LimitForwardInfo
	switch scope {
	case "server":
		if s := r.Plan.Server(name); s != nil {
			lf = s.LimitForward
		}
	case "org":
		if o := r.Plan.Org(name); o != nil {
			lf = o.LimitForward
		}
	}
	if lf == nil {
		return Forward{}, false
	}
	return Forward{Kind: ForwardLimit, Target: lf.Target, By: scope + " " + name, org: lf.Org}, true
}

// FarLimitForward is the forward for target t of d when its far server
// refused the trunk call at a limit (503): the far server's limit
// forward, else the target org's. Which of the far limits refused is not
// said over SIP; the server's is the wider one.
func (r *Router) FarLimitForward(d *Decision, t *Target) (Forward, bool) {
	if t.Trunk == nil || t.Trunk.Peer == nil || t.Server == nil {
		return Forward{}, false
	}
	if f, ok := r.LimitForward(d, "server", t.Server.Name); ok {
		return f, true
	}
	if d.Org != nil {
		return r.LimitForward(d, "org", d.Org.ID)
	}
	return Forward{}, false
}

// FallbackForward is the forward to hunt d's fallback (SPEC §3), once
// nobody in the group answered: it counts towards max_forwards like any
// forward, so a fallback that forwards back to its group cannot loop.
func (r *Router) FallbackForward(d *Decision) (Forward, bool) {
	if d.Kind != Hunt || d.Fallback == "" || d.Org == nil {
		return Forward{}, false
	}
	return Forward{Kind: ForwardFallback, Target: d.Fallback, By: "org " + d.Org.ID, org: d.Org}, true
}

// ForwardInto routes forward f of the call d into fd: the target as its
// owner dials it (a user in their org with their outbound rule, a limit's
// forward in its org), from the entry server, presenting the caller d
// presented (SPEC §4: a forward passes the original caller through). Legs
// the call already counts on arrival are not counted again.
func (r *Router) ForwardInto(d *Decision, f Forward, fd *Decision) {
	if f.Kind == ForwardFallback {
		r.FallbackInto(d, fd)
		if fd.Kind == Feature {
			reject(fd, CauseBusy, "a feature code is not a fallback target")
		}
		return
	}
	*fd = Decision{Dialed: f.Target, Origin: d.Origin, Entry: d.Entry, PeerServer: d.PeerServer,
		Caller: d.Caller, CallerOrg: d.CallerOrg, Billing: d.Billing}
	if d.Entry == nil || f.Target == "" || !provision.ValidDialed(f.Target) {
		reject(fd, CauseBusy, "no forward target")
		return
	}
	switch {
	case f.user != nil:
		req := Request{Server: d.Entry.Name, Caller: f.user.Ext, Dialed: f.Target, Transfer: Blind,
			OriginalCaller: d.CallerIDNumber, OriginalName: d.CallerIDName, Withheld: d.Withheld}
		r.fromUser(fd, &req, d.Entry, f.user)
		if fd.Kind == External && d.Origin != FromPSTN {
			// Towards the PSTN an internal caller's extension means
			// nothing: the forwarding user's outgoing number is shown, as
			// for their own external calls.
			req.Transfer = NoTransfer
			*fd = Decision{Dialed: f.Target, Origin: d.Origin, Entry: d.Entry, PeerServer: d.PeerServer,
				Caller: d.Caller, CallerOrg: d.CallerOrg, Billing: d.Billing}
			r.fromUser(fd, &req, d.Entry, f.user)
			fd.setCallerID(&fd.Target)
			return
		}
	case f.org != nil:
		legOrg := f.org.ID
		if d.CallerOrg != nil {
			legOrg = d.CallerOrg.ID
		}
		s := f.Target
		if s[len(s)-1] != 'T' && f.org.Lookup(s) == nil {
			if sv, n := r.Plan.ServerByPrefix(s); sv != nil {
				s = s[n:]
			}
		}
		r.internal(fd, f.org, s, d.Entry, legOrg)
		if fd.Kind == Feature {
			reject(fd, CauseBusy, "a feature code is not a forward target: it hands the call to the media server's dialplan")
		}
	default:
		reject(fd, CauseBusy, "forward without an owner")
		return
	}
	if fd.Kind == Rejected {
		return
	}
	fd.CallerIDNumber, fd.CallerIDName, fd.TrunkCallerID, fd.Withheld = d.CallerIDNumber, d.CallerIDName, d.TrunkCallerID, d.Withheld
	if d.Kind == External && d.Origin == FromPhone && d.Caller != nil && !d.Withheld {
		// The call was going out with the org's external number; a phone
		// of the org is shown the caller as for an internal call.
		fd.CallerIDNumber, fd.CallerIDName, fd.TrunkCallerID = d.Caller.Ext, d.Caller.Name, d.Caller.Prefixed
	}
	if fd.TrunkCallerID == "" {
		fd.TrunkCallerID = fd.CallerIDNumber
	}
	fd.setCallerID(&fd.Target)
}

// ForwardSummary is one forward a call would take, for callctl route.
type ForwardSummary struct {
	// On is when: "no answer", "busy" or "limit".
	On string `json:"on"`
	// After is how long the target rings before a no-answer forward.
	After time.Duration `json:"after_ns,omitempty"`
	// Target is dialed as By (a user, or a limit: "server srv12") dials it.
	Target string `json:"target"`
	By     string `json:"by"`
}

// forwardSummaries lists the forwards of d: its single target's user's
// no-answer and busy forwards, and the limit forwards of the limits its
// counted legs are held against: those it counts on arrival and those of
// each target it rings.
func (d *Decision) forwardSummaries() []ForwardSummary {
	if !d.OwnsLimitForwards() {
		return nil
	}
	var out []ForwardSummary
	t := &d.Target
	if u := d.UserOf(t); u != nil && d.OwnsForwards() {
		if u.Forward.NoAnswer != "" {
			out = append(out, ForwardSummary{On: "no answer", After: u.Forward.After, Target: u.Forward.NoAnswer, By: u.Ext})
		}
		if u.Forward.Busy != "" {
			out = append(out, ForwardSummary{On: "busy", Target: u.Forward.Busy, By: u.Ext})
		}
	}
	seen := map[string]bool{}
	add := func(by string, lf *provision.LimitForwardInfo) {
		if lf == nil || seen[by] {
			return
		}
		seen[by] = true
		out = append(out, ForwardSummary{On: "limit", Target: lf.Target, By: by})
	}
	limits := func(legs *accounting.Legs, far *provision.ServerInfo) {
		for i := 0; i < legs.Len(); i++ {
			lg := legs.At(i)
			switch {
			case d.Entry != nil && lg.Server == d.Entry.Name:
				add("server "+lg.Server, d.Entry.LimitForward)
			case far != nil && lg.Server == far.Name:
				add("server "+lg.Server, far.LimitForward)
			}
			switch {
			case d.Org != nil && lg.Org == d.Org.ID:
				add("org "+lg.Org, d.Org.LimitForward)
			case d.CallerOrg != nil && lg.Org == d.CallerOrg.ID:
				add("org "+lg.Org, d.CallerOrg.LimitForward)
			}
		}
	}
	limits(&d.InLegs, nil)
	for _, m := range d.Members() {
		limits(&m.Legs, m.Server)
	}
	return out
}
