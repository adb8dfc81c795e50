package provision

import (
	"strconv"
	"time"
)

// DefaultMaxForwards is how many times a call may be forwarded when the
// settings do not say (SPEC §4).
const DefaultMaxForwards = 5

// Bounds of a no-answer forward's wait.
const (
	MinForwardAfter = time.Second
	MaxForwardAfter = 5 * time.Minute
)

// ForwardInfo is a compiled user forward. Targets are dialed strings, routed
// as the user would dial them when the forward happens.
type ForwardInfo struct {
	NoAnswer string
	// After is how long the user rings before the no-answer forward.
	After time.Duration
	Busy  string
}

// LimitForwardInfo is a compiled limit forward: Target is routed in Org.
type LimitForwardInfo struct {
	Org    *OrgInfo
	Target string
}

// forwards compiles and checks every forward of the plan: a target must be
// something its owner could dial (a user: with their outbound rule; a
// limit's org: its own numbers and other servers' extensions).
func (c *compiler) forwards() {
	s := &c.doc.Settings
	c.plan.MaxForwards = s.MaxForwards
	if c.plan.MaxForwards == 0 {
		c.plan.MaxForwards = DefaultMaxForwards
	}
	if c.plan.MaxForwards < 1 || c.plan.MaxForwards > 20 {
		c.errf("settings", "settings", "max_forwards", "must be 1-20, not %d", s.MaxForwards)
	}
	for i := range c.doc.Servers {
		sv := &c.doc.Servers[i]
		si := c.plan.servers[sv.Name]
		if si == nil || sv.LimitForward == nil {
			continue
		}
		path := "servers[" + strconv.Itoa(i) + "]"
		si.LimitForward = c.limitForward("server "+sv.Name, path, sv.LimitForward, nil)
		if si.LimitForward != nil && si.ChannelLimit == 0 {
			c.warnf("server "+sv.Name, path, "limit_forward", "the server has no channel_limit: the forward is never used")
		}
	}
	for i := range c.doc.Orgs {
		o, oi, path, ok := c.org(i)
		if !ok {
			continue
		}
		if o.LimitForward != nil {
			oi.LimitForward = c.limitForward("org "+oi.ID, path, o.LimitForward, oi)
			if oi.LimitForward != nil && oi.ChannelLimit == 0 {
				c.warnf("org "+oi.ID, path, "limit_forward", "the org has no channel_limit: the forward is never used")
			}
		}
		for j := range o.Users {
			u := &o.Users[j]
			ui := oi.Users[u.Extension]
			if u.Forward == nil || ui == nil {
				continue
			}
			c.userForward(ui, u.Forward, path+".users["+strconv.Itoa(j)+"]")
		}
	}
}

func (c *compiler) userForward(ui *UserInfo, f *Forward, path string) {
	obj := "org " + ui.Org.ID + " user " + ui.Ext
	fp := path + ".forward"
	after := time.Duration(f.After)
	switch {
	case f.NoAnswer == "" && after != 0:
		c.errf(obj, fp, "after", "is the wait before the no_answer forward, which is not set")
	case after != 0 && (after < MinForwardAfter || after > MaxForwardAfter):
		c.errf(obj, fp, "after", "%s is not between 1s and 5m", after)
	}
	if after == 0 {
		after = ui.Org.RingTimeout
	}
	fi := ForwardInfo{After: after}
	if f.NoAnswer != "" {
		if why := c.dialable(ui.Org, ui, f.NoAnswer); why != "" {
			c.errf(obj, fp, "no_answer", "%q: %s", f.NoAnswer, why)
		} else {
			fi.NoAnswer = f.NoAnswer
		}
	}
	if f.Busy != "" {
		if why := c.dialable(ui.Org, ui, f.Busy); why != "" {
			c.errf(obj, fp, "busy", "%q: %s", f.Busy, why)
		} else {
			fi.Busy = f.Busy
		}
	}
	if fi.NoAnswer == "" {
		fi.After = 0
	}
	ui.Forward = fi
}

// limitForward compiles a limit's forward; own is the org whose limit it
// is (nil for a server's), the default of its org.
func (c *compiler) limitForward(obj, path string, lf *LimitForward, own *OrgInfo) *LimitForwardInfo {
	lp := path + ".limit_forward"
	org := own
	if lf.Org != "" {
		org = c.plan.orgs[lf.Org]
		if org == nil {
			c.errf(obj, lp, "org", "no org with id %q", lf.Org)
			return nil
		}
		if own != nil && org != own {
			c.errf(obj, lp, "org", "an org's limit forward is dialed in the org itself (%s), not in %s", own.ID, lf.Org)
			return nil
		}
	}
	if org == nil {
		c.errf(obj, lp, "org", "is required: the org the target is dialed in")
		return nil
	}
	if lf.Target == "" {
		c.errf(obj, lp, "target", "is required")
		return nil
	}
	if why := c.dialable(org, nil, lf.Target); why != "" {
		c.errf(obj, lp, "target", "%q: %s", lf.Target, why)
		return nil
	}
	return &LimitForwardInfo{Org: org, Target: lf.Target}
}

// notFeature says why a feature code is no forward target.
const notFeature = "a feature code is not a forward target: it hands the call to the media server's own dialplan, " +
	"where callctl can no longer ring, time, count or forward it"

// dialable says why user u of org (nil: the org itself, with no outbound
// rule) could not dial s, or "" when it could: the org's own extensions,
// groups and members, an org-connect prefix of the user's rule, another
// server's prefix and extension, or an external number the rule permits.
// Feature codes and emergency numbers are no forward targets: a forwarded
// call stays with callctl.
func (c *compiler) dialable(org *OrgInfo, u *UserInfo, s string) string {
	if !ValidDialed(s) {
		return "is not 1-32 of 0-9 * # + (optionally ending in T)"
	}
	if org.Emergency(s) {
		return "an emergency number is not a forward target"
	}
	if s[len(s)-1] == 'T' {
		if org.SIPNumbers[s[:len(s)-1]] != nil {
			return ""
		}
		return s[:len(s)-1] + " is not a sip number of org " + org.ID
	}
	if t := org.Lookup(s); t != nil {
		if t.Kind == TargetFeature {
			return notFeature
		}
		if t.Kind == TargetExtension && t.User == u {
			return "forwards the user to themselves"
		}
		return ""
	}
	var rule *RuleInfo
	if u != nil {
		rule = u.Rule
	}
	if dest, n := rule.OrgConnect(s); dest != nil {
		if t := dest.Lookup(s[n:]); t != nil {
			if t.Kind == TargetFeature {
				return notFeature
			}
			return ""
		}
		return "org " + dest.ID + " has no extension " + s[n:]
	}
	if sv, n := c.plan.ServerByPrefix(s); sv != nil {
		if t := org.Lookup(s[n:]); t != nil && t.Kind == TargetFeature {
			return notFeature
		}
		if t := org.Lookup(s[n:]); t != nil && t.Home() == sv {
			if t.Kind == TargetExtension && t.User == u {
				return "forwards the user to themselves"
			}
			return ""
		}
	}
	e164, ok := org.Normalize(s)
	if !ok || !IsE164(e164, c.plan.MinExternalDigits) {
		return "nothing in org " + org.ID + " answers to it"
	}
	if rule == nil {
		if u == nil {
			return "an external number: a limit forward reaches the org's own numbers"
		}
		return "an external number, and user " + u.Ext + " has no outbound rule"
	}
	if ok, why := rule.Permits(e164); !ok {
		return why
	}
	return ""
}
