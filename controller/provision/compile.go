package provision

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

var (
	reName     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
	reEndpoint = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9/@._:-]{0,254}$`)
	reFeature  = regexp.MustCompile(`^[*#0-9][*#0-9]{0,15}$`)
)

// compiler carries the state of one Compile: the document, the plan being
// built and every problem found so far. Validation never stops at the first
// problem: an operator fixes a file in one pass.
type compiler struct {
	doc      *Document
	src      *Source
	plan     *Plan
	problems Problems
	// orgIndex is the document position each compiled org came from.
	orgIndex map[string]int
}

func (c *compiler) add(sev Severity, object, path, field, format string, args ...any) {
	p := Problem{Severity: sev, Object: object, Field: field, Reason: fmt.Sprintf(format, args...)}
	if c.src != nil {
		p.File = c.src.File
		full := path
		if field != "" {
			full = path + "." + field
		}
		p.Line = c.src.Line(full)
	}
	c.problems = append(c.problems, p)
}

func (c *compiler) errf(object, path, field, format string, args ...any) {
	c.add(Error, object, path, field, format, args...)
}

func (c *compiler) warnf(object, path, field, format string, args ...any) {
	c.add(Warning, object, path, field, format, args...)
}

// Compile validates a decoded document in full and builds the plan. The plan is
// nil when any problem is an error.
func Compile(doc *Document, src *Source) (*Plan, Problems) {
	if doc == nil {
		return nil, Problems{{Object: "document", Reason: "empty"}}
	}
	c := &compiler{doc: doc, src: src, orgIndex: map[string]int{}, plan: &Plan{
		Doc:      doc,
		servers:  map[string]*ServerInfo{},
		byPrefix: map[string]*ServerInfo{},
		orgs:     map[string]*OrgInfo{},
		byDomain: map[string]*OrgInfo{},
		numbers:  map[string]*NumberInfo{},
		callers:  map[string]*UserInfo{},
	}}
	c.settings()
	c.servers()
	c.orgs()
	c.numbers()
	c.callerIDs()
	c.chains()
	c.forwards()
	c.ambiguity()
	sortProblems(c.problems)
	if c.problems.Errors() > 0 {
		return nil, c.problems
	}
	c.plan.Version = version(doc)
	return c.plan, c.problems
}

func sortProblems(ps Problems) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Severity != ps[j].Severity {
			return ps[i].Severity < ps[j].Severity
		}
		return ps[i].Line < ps[j].Line
	})
}

func version(doc *Document) string {
	b, err := yaml.Marshal(doc)
	if err != nil {
		return "unknown"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func (c *compiler) settings() {
	s := &c.doc.Settings
	if s.ServerPrefixes.Min == 0 && s.ServerPrefixes.Max == 0 && s.ServerPrefixes.Exclude == nil {
		s.ServerPrefixes = PrefixRange{Min: 1, Max: 98, Exclude: []int{7, 8, 9}}
	}
	if s.ServerPrefixes.Min < 0 || s.ServerPrefixes.Max < s.ServerPrefixes.Min {
		c.errf("settings", "settings.server_prefixes", "max", "range %d-%d is empty", s.ServerPrefixes.Min, s.ServerPrefixes.Max)
	}
	c.plan.RingTimeout = time.Duration(s.RingTimeout)
	if c.plan.RingTimeout < 0 {
		c.errf("settings", "settings", "ring_timeout", "must not be negative")
	}
	if c.plan.RingTimeout == 0 {
		c.plan.RingTimeout = DefaultRingTimeout
	}
	c.plan.MinExternalDigits = s.MinExternalDigits
	if c.plan.MinExternalDigits == 0 {
		c.plan.MinExternalDigits = 6
	}
	if c.plan.MinExternalDigits < 1 || c.plan.MinExternalDigits > 15 {
		c.errf("settings", "settings", "min_external_digits", "must be 1-15, not %d", s.MinExternalDigits)
	}
}

func (c *compiler) servers() {
	if len(c.doc.Servers) == 0 {
		// An empty, comment-only or cut-off file must never replace a plan
		// that runs calls.
		c.errf("document", "servers", "", "the plan has no servers: a plan needs at least one media server")
	}
	pr := c.doc.Settings.ServerPrefixes
	for i := range c.doc.Servers {
		s := &c.doc.Servers[i]
		path := "servers[" + strconv.Itoa(i) + "]"
		obj := "server " + s.Name
		if !c.identifier("server", i, s.Name, path, "name", c.plan.servers[s.Name] != nil) {
			continue
		}
		si := &ServerInfo{Name: s.Name, Kind: s.Kind, Prefix: s.Prefix, ChannelLimit: s.ChannelLimit,
			ESL: s.FreeSWITCH, ARI: s.Asterisk, Trunks: map[string]*TrunkInfo{}, sources: map[string]*TrunkInfo{}}
		c.plan.servers[s.Name] = si
		c.plan.Servers = append(c.plan.Servers, si)
		switch s.Kind {
		case KindFreeSWITCH:
			if s.FreeSWITCH == nil {
				c.errf(obj, path, "freeswitch", "a freeswitch server needs its Event Socket address and password")
			} else if s.FreeSWITCH.Address == "" {
				c.errf(obj, path+".freeswitch", "address", "is required (host:port of the Event Socket)")
			}
			if s.Asterisk != nil {
				c.errf(obj, path, "asterisk", "a freeswitch server has no ARI connection")
			}
			si.EndpointTemplate = "user/{ext}"
		case KindAsterisk:
			if s.Asterisk == nil {
				c.errf(obj, path, "asterisk", "an asterisk server needs its ARI url, user, password and app")
			} else {
				if s.Asterisk.URL == "" {
					c.errf(obj, path+".asterisk", "url", "is required (http://host:8088/ari)")
				}
				if s.Asterisk.App == "" {
					s.Asterisk.App = "callctl"
				}
				if !reName.MatchString(s.Asterisk.App) {
					c.errf(obj, path+".asterisk", "app", "%q is not a valid application name", s.Asterisk.App)
				}
			}
			if s.FreeSWITCH != nil {
				c.errf(obj, path, "freeswitch", "an asterisk server has no Event Socket connection")
			}
			si.EndpointTemplate = "PJSIP/{ext}"
		default:
			c.errf(obj, path, "kind", "%q is not a media server kind (freeswitch or asterisk)", s.Kind)
		}
		if s.Endpoint != "" {
			if !validTemplate(s.Endpoint, "{ext}") {
				c.errf(obj, path, "endpoint", "%q must contain {ext} once and only letters, digits and / @ . _ - :", s.Endpoint)
			} else {
				si.EndpointTemplate = s.Endpoint
			}
		}
		if s.ChannelLimit < 0 {
			c.errf(obj, path, "channel_limit", "must not be negative (0 = unlimited)")
		}
		c.serverPrefix(si, path, pr)
	}
	// Prefix-freedom: no prefix may begin another (1 and 12 conflict).
	var prefixed []*ServerInfo
	for _, si := range c.plan.Servers {
		if si.Prefix != "" && AllDigits(si.Prefix) {
			prefixed = append(prefixed, si)
		}
	}
	sort.Slice(prefixed, func(i, j int) bool { return prefixed[i].Prefix < prefixed[j].Prefix })
	for i, a := range prefixed {
		for _, b := range prefixed[i+1:] {
			if !strings.HasPrefix(b.Prefix, a.Prefix) {
				break
			}
			reason := fmt.Sprintf("prefix %s of server %s begins prefix %s of server %s: prefixes must be prefix-free (use 11, 12, …)", a.Prefix, a.Name, b.Prefix, b.Name)
			if a.Prefix == b.Prefix {
				reason = fmt.Sprintf("prefix %s is also used by server %s", a.Prefix, a.Name)
			}
			c.errf("server "+b.Name, c.serverPath(b.Name), "prefix", "%s", reason)
		}
		c.plan.byPrefix[a.Prefix] = a
		if !slices.Contains(c.plan.prefixLens, len(a.Prefix)) {
			c.plan.prefixLens = append(c.plan.prefixLens, len(a.Prefix))
		}
	}
	sort.Ints(c.plan.prefixLens)
	// Trunks need every server known.
	for i := range c.doc.Servers {
		s := &c.doc.Servers[i]
		path := "servers[" + strconv.Itoa(i) + "]"
		si := c.plan.servers[s.Name]
		if si == nil || c.serverPath(s.Name) != path {
			continue // unnamed or a duplicate, already reported
		}
		c.trunks(si, s, path)
	}
}

// identifier checks the name of the i-th object of a kind (server name, org
// id): present, well formed, not taken.
func (c *compiler) identifier(kind string, i int, name, path, field string, taken bool) bool {
	obj := kind + " " + name
	switch {
	case name == "":
		c.errf(kind+" #"+strconv.Itoa(i+1), path, field, "is required")
	case !reName.MatchString(name):
		c.errf(obj, path, field, "%q must be letters, digits, . _ - (at most 63)", name)
	case taken:
		c.errf(obj, path, field, "duplicate %s %s %q", kind, field, name)
	default:
		return true
	}
	return false
}

// displayName checks a name people read (an org's, a user's, shown as the
// caller name): text, not control characters that could split a header or
// a log line.
func (c *compiler) displayName(obj, path, name string) {
	if len(name) > 100 {
		c.errf(obj, path, "name", "is longer than 100 characters")
		return
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == utf8.RuneError {
			c.errf(obj, path, "name", "%q holds a control character or invalid UTF-8", name)
			return
		}
	}
}

func (c *compiler) serverPath(name string) string {
	for i := range c.doc.Servers {
		if c.doc.Servers[i].Name == name {
			return "servers[" + strconv.Itoa(i) + "]"
		}
	}
	return "servers"
}

func (c *compiler) serverPrefix(si *ServerInfo, path string, pr PrefixRange) {
	obj := "server " + si.Name
	if si.Prefix == "" {
		c.errf(obj, path, "prefix", "is required (SPEC: every server has a prefix, e.g. 11)")
		return
	}
	if !AllDigits(si.Prefix) || si.Prefix[0] == '0' {
		c.errf(obj, path, "prefix", "%q must be a number without leading zero", si.Prefix)
		return
	}
	n, err := strconv.Atoi(si.Prefix)
	if err != nil || n < pr.Min || n > pr.Max || slices.Contains(pr.Exclude, n) {
		c.errf(obj, path, "prefix", "%s is outside the allowed range %s", si.Prefix, rangeText(pr))
	}
}

func rangeText(pr PrefixRange) string {
	s := fmt.Sprintf("%d-%d", pr.Min, pr.Max)
	if len(pr.Exclude) > 0 {
		ex := make([]string, len(pr.Exclude))
		for i, e := range pr.Exclude {
			ex[i] = strconv.Itoa(e)
		}
		s += " except " + strings.Join(ex, ", ")
	}
	return s
}

func validTemplate(t, placeholder string) bool {
	if strings.Count(t, placeholder) != 1 {
		return false
	}
	return reEndpoint.MatchString(strings.Replace(t, placeholder, "0", 1))
}

func (c *compiler) trunks(si *ServerInfo, s *Server, path string) {
	obj := "server " + si.Name
	addSources := func(ti *TrunkInfo, from []string, p string) {
		for j, id := range from {
			if id == "" || strings.ContainsAny(id, " \t\r\n") {
				c.errf(obj, p, "from["+strconv.Itoa(j)+"]", "%q is not a source identity (an address or an endpoint name)", id)
				continue
			}
			if prev := si.sources[id]; prev != nil {
				c.errf(obj, p, "from["+strconv.Itoa(j)+"]", "source %q is already the %s trunk", id, trunkName(prev))
				continue
			}
			si.sources[id] = ti
		}
	}
	if s.PSTN != nil {
		ti, ok := c.trunk(obj, path+".pstn", *s.PSTN)
		if ok {
			si.PSTN = ti
			addSources(ti, s.PSTN.From, path+".pstn")
		}
	}
	names := make([]string, 0, len(s.Trunks))
	for n := range s.Trunks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, peer := range names {
		t := s.Trunks[peer]
		p := path + ".trunks." + peer
		ps := c.plan.servers[peer]
		if ps == nil {
			c.errf(obj, path+".trunks", peer, "no server named %q", peer)
			continue
		}
		if ps == si {
			c.errf(obj, path+".trunks", peer, "a server needs no trunk to itself")
			continue
		}
		ti, ok := c.trunk(obj, p, t)
		if !ok {
			continue
		}
		ti.Peer = ps
		si.Trunks[peer] = ti
		addSources(ti, t.From, p)
	}
}

func trunkName(t *TrunkInfo) string {
	if t.Peer == nil {
		return "pstn"
	}
	return t.Peer.Name
}

func (c *compiler) trunk(obj, path string, t Trunk) (*TrunkInfo, bool) {
	if !validTemplate(t.Dial, "{dest}") {
		c.errf(obj, path, "dial", "%q must contain {dest} once and only letters, digits and / @ . _ - :", t.Dial)
		return nil, false
	}
	i := strings.Index(t.Dial, "{dest}")
	return &TrunkInfo{Dial: t.Dial, before: t.Dial[:i], post: t.Dial[i+len("{dest}"):]}, true
}

func (c *compiler) orgs() {
	for i := range c.doc.Orgs {
		o := &c.doc.Orgs[i]
		path := "orgs[" + strconv.Itoa(i) + "]"
		obj := "org " + o.ID
		if !c.identifier("org", i, o.ID, path, "id", c.plan.orgs[o.ID] != nil) {
			continue
		}
		oi := &OrgInfo{ID: o.ID, Name: o.Name, Domain: o.Domain, CountryCode: o.CountryCode,
			NationalPrefix: o.NationalPrefix, InternationalPrefix: o.InternationalPrefix,
			ChannelLimit: o.ChannelLimit, Override: o.CallerID.Override, Fallback: o.Hunt.Fallback,
			Users: map[string]*UserInfo{}, SIPNumbers: map[string]*SIPInfo{}, ServiceNumbers: map[string]*ServiceInfo{},
			Rules: map[string]*RuleInfo{}, Linked: map[string]*OrgInfo{},
			dial: map[string]*DialTarget{}, usable: map[string]*NumberInfo{}, back: map[string]string{}}
		c.displayName(obj, path, o.Name)
		if oi.Name == "" {
			oi.Name = o.ID
		}
		if oi.Domain == "" {
			oi.Domain = o.ID
		}
		c.plan.orgs[o.ID] = oi
		c.orgIndex[o.ID] = i
		c.plan.Orgs = append(c.plan.Orgs, oi)
		if prev := c.plan.byDomain[oi.Domain]; prev != nil {
			c.errf(obj, path, "domain", "domain %q is also org %s's", oi.Domain, prev.ID)
		} else {
			c.plan.byDomain[oi.Domain] = oi
		}
		c.orgSettings(oi, o, path)
	}
	// Second pass: things that refer to other orgs or to the org's own objects.
	for i := range c.doc.Orgs {
		o, oi, path, ok := c.org(i)
		if !ok {
			continue
		}
		for j, l := range o.LinkedOrgs {
			lo := c.plan.orgs[l]
			if lo == nil || lo == oi {
				c.errf("org "+oi.ID, path, "linked_orgs["+strconv.Itoa(j)+"]", "no other org with id %q", l)
				continue
			}
			oi.Linked[lo.ID] = lo
			lo.Linked[oi.ID] = oi
		}
	}
	for i := range c.doc.Orgs {
		o, oi, path, ok := c.org(i)
		if !ok {
			continue
		}
		c.rules(oi, o, path)
		c.members(oi, o, path)
	}
}

// org returns the i-th org of the document with its compiled form and path;
// ok is false for an org that was not compiled (no id, a duplicate).
func (c *compiler) org(i int) (o *Org, oi *OrgInfo, path string, ok bool) {
	o = &c.doc.Orgs[i]
	oi = c.plan.orgs[o.ID]
	path = "orgs[" + strconv.Itoa(i) + "]"
	return o, oi, path, oi != nil && c.orgIndex[o.ID] == i
}

func (c *compiler) orgSettings(oi *OrgInfo, o *Org, path string) {
	obj := "org " + oi.ID
	if !AllDigits(o.CountryCode) || len(o.CountryCode) > 3 || o.CountryCode[0] == '0' {
		c.errf(obj, path, "country_code", "%q must be a country calling code of 1-3 digits (49, 81, 1)", o.CountryCode)
	}
	if o.NationalPrefix != "" && !AllDigits(o.NationalPrefix) {
		c.errf(obj, path, "national_prefix", "%q must be digits (0)", o.NationalPrefix)
	}
	if o.InternationalPrefix != "" && !AllDigits(o.InternationalPrefix) {
		c.errf(obj, path, "international_prefix", "%q must be digits (00, 010)", o.InternationalPrefix)
	}
	if o.NationalPrefix != "" && o.NationalPrefix == o.InternationalPrefix {
		c.errf(obj, path, "international_prefix", "must differ from the national prefix")
	}
	if o.DefaultNumber != "" && !IsE164(o.DefaultNumber, 1) {
		c.errf(obj, path, "default_outgoing_number", "%q is not an E.164 number (+4930…)", o.DefaultNumber)
	} else {
		oi.DefaultNumber = o.DefaultNumber
	}
	if o.ChannelLimit < 0 {
		c.errf(obj, path, "channel_limit", "must not be negative (0 = unlimited)")
	}
	if o.Webhook != "" {
		if u, err := url.Parse(o.Webhook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			c.errf(obj, path, "webhook", "%q is not an http or https URL", o.Webhook)
		}
	}
	oi.Webhook = o.Webhook
	oi.emergency = map[string]bool{}
	list := o.EmergencyNumbers
	if len(list) == 0 {
		list = emergencyByCountry[o.CountryCode]
		if list == nil {
			list = []string{"112"}
		}
	}
	for j, n := range list {
		if !AllDigits(n) || len(n) > 6 {
			c.errf(obj, path, "emergency_numbers["+strconv.Itoa(j)+"]", "%q must be 1-6 digits (112, 911)", n)
			continue
		}
		oi.emergency[n] = true
	}
	oi.RingTimeout = time.Duration(o.Hunt.RingTimeout)
	if oi.RingTimeout < 0 {
		c.errf(obj, path+".hunt", "ring_timeout", "must not be negative")
	}
	if oi.RingTimeout <= 0 {
		oi.RingTimeout = c.plan.RingTimeout
	}
}

func (c *compiler) rules(oi *OrgInfo, o *Org, path string) {
	for j := range o.OutboundRules {
		r := &o.OutboundRules[j]
		rp := path + ".outbound_rules[" + strconv.Itoa(j) + "]"
		obj := "org " + oi.ID + " outbound rule " + r.Name
		if r.Name == "" {
			c.errf("org "+oi.ID+" outbound rule #"+strconv.Itoa(j+1), rp, "name", "is required")
			continue
		}
		if oi.Rules[r.Name] != nil {
			c.errf(obj, rp, "name", "duplicate outbound rule name %q", r.Name)
			continue
		}
		ri := &RuleInfo{Name: r.Name, countries: map[string]bool{}, home: oi.CountryCode,
			connect: map[string]*OrgInfo{}, back: map[string]string{}}
		oi.Rules[r.Name] = ri
		for k, s := range r.Allow {
			p, err := compilePattern(s)
			if err != nil {
				c.errf(obj, rp, "allow["+strconv.Itoa(k)+"]", "%v", err)
				continue
			}
			ri.allow = append(ri.allow, p)
		}
		for k, s := range r.Deny {
			p, err := compilePattern(s)
			if err != nil {
				c.errf(obj, rp, "deny["+strconv.Itoa(k)+"]", "%v", err)
				continue
			}
			ri.deny = append(ri.deny, p)
		}
		if len(r.Countries) == 0 {
			ri.countries[oi.CountryCode] = true
		}
		for k, cc := range r.Countries {
			switch {
			case cc == "*":
				ri.allCountries = true
			case AllDigits(cc) && len(cc) <= 3 && cc[0] != '0':
				ri.countries[cc] = true
			default:
				c.errf(obj, rp, "countries["+strconv.Itoa(k)+"]", "%q is not a country calling code (49, 44, 1) or *", cc)
			}
		}
		for k, oc := range r.OrgConnect {
			kp := rp + ".org_connect[" + strconv.Itoa(k) + "]"
			dest := c.plan.orgs[oc.Org]
			switch {
			case dest == nil:
				c.errf(obj, kp, "org", "no org with id %q", oc.Org)
				continue
			case dest == oi:
				c.errf(obj, kp, "org", "an org does not connect to itself")
				continue
			case oi.Linked[dest.ID] == nil:
				c.errf(obj, kp, "org", "org %s is not linked with org %s (linked_orgs)", dest.ID, oi.ID)
				continue
			}
			if !AllDigits(oc.Prefix) {
				c.errf(obj, kp, "prefix", "%q must be digits", oc.Prefix)
				continue
			}
			if prev := ri.connect[oc.Prefix]; prev != nil {
				c.errf(obj, kp, "prefix", "prefix %s already reaches org %s in this rule", oc.Prefix, prev.ID)
				continue
			}
			for p, other := range ri.connect {
				if strings.HasPrefix(oc.Prefix, p) || strings.HasPrefix(p, oc.Prefix) {
					c.errf(obj, kp, "prefix", "prefix %s collides with prefix %s (org %s): org-connect prefixes of a rule must be prefix-free", oc.Prefix, p, other.ID)
				}
			}
			if oi.NationalPrefix != "" && strings.HasPrefix(oc.Prefix, oi.NationalPrefix) {
				c.errf(obj, kp, "prefix", "prefix %s begins with the national prefix %s: it would collide with external numbers", oc.Prefix, oi.NationalPrefix)
			}
			ri.connect[oc.Prefix] = dest
			if _, ok := ri.back[dest.ID]; !ok {
				ri.back[dest.ID] = oc.Prefix
			}
			if p, ok := oi.back[dest.ID]; !ok || oc.Prefix < p {
				oi.back[dest.ID] = oc.Prefix
			}
			if !slices.Contains(ri.connectLens, len(oc.Prefix)) {
				ri.connectLens = append(ri.connectLens, len(oc.Prefix))
			}
		}
		sort.Ints(ri.connectLens)
	}
}

func (c *compiler) endpoint(obj, path string, ep string, s *ServerInfo, number string) string {
	if ep != "" {
		if !reEndpoint.MatchString(ep) {
			c.errf(obj, path, "endpoint", "%q may hold only letters, digits and / @ . _ - :", ep)
			return ""
		}
		return ep
	}
	if s == nil || s.EndpointTemplate == "" {
		return ""
	}
	return strings.Replace(s.EndpointTemplate, "{ext}", number, 1)
}

// claim records an internal dialed string of the org; a second claim of the
// same string is the "duplicate numbers across objects" error.
func (c *compiler) claim(oi *OrgInfo, s string, t *DialTarget, obj, path, field string) bool {
	if oi.emergency[s] {
		c.errf(obj, path, field, "%s is an emergency number of org %s (emergency_numbers): it always goes to the PSTN", s, oi.ID)
		return false
	}
	if prev := oi.dial[s]; prev != nil {
		c.errf(obj, path, field, "%s is already %s in org %s", s, describe(prev), oi.ID)
		return false
	}
	oi.dial[s] = t
	return true
}

func describe(t *DialTarget) string {
	switch t.Kind {
	case TargetExtension:
		return "extension " + t.User.Ext
	case TargetSIP:
		return "sip number " + t.SIP.Number
	case TargetService:
		return "service number " + t.Service.Number
	case TargetFeature:
		return "feature code " + t.Code
	}
	return "taken"
}

func (c *compiler) members(oi *OrgInfo, o *Org, path string) {
	org := "org " + oi.ID
	for j, f := range o.FeatureCodes {
		if !reFeature.MatchString(f) {
			c.errf(org, path, "feature_codes["+strconv.Itoa(j)+"]", "%q must be 1-16 of 0-9 * #", f)
			continue
		}
		c.claim(oi, f, &DialTarget{Kind: TargetFeature, Code: f}, org, path, "feature_codes["+strconv.Itoa(j)+"]")
	}
	for j := range o.Users {
		u := &o.Users[j]
		up := path + ".users[" + strconv.Itoa(j) + "]"
		obj := org + " user " + u.Extension
		if !AllDigits(u.Extension) || len(u.Extension) > 15 {
			c.errf(obj, up, "extension", "%q must be 1-15 digits", u.Extension)
			continue
		}
		s := c.plan.servers[u.Server]
		if s == nil {
			c.errf(obj, up, "server", "no server named %q", u.Server)
		}
		c.displayName(obj, up, u.Name)
		ui := &UserInfo{Org: oi, Ext: u.Extension, Name: u.Name, Server: s}
		ui.Endpoint = c.endpoint(obj, up, u.Endpoint, s, u.Extension)
		if s != nil {
			ui.Prefixed = s.Prefix + u.Extension
		}
		switch u.OutgoingNumber {
		case "", "default":
		default:
			if !IsE164(u.OutgoingNumber, 1) {
				c.errf(obj, up, "outgoing_number", "%q is neither default nor an E.164 number", u.OutgoingNumber)
			} else {
				ui.Number = u.OutgoingNumber
			}
		}
		if u.OutboundRule != "" {
			ui.Rule = oi.Rules[u.OutboundRule]
			if ui.Rule == nil {
				c.errf(obj, up, "outbound_rule", "org %s has no outbound rule %q", oi.ID, u.OutboundRule)
			}
		}
		if !c.claim(oi, u.Extension, &DialTarget{Kind: TargetExtension, User: ui}, obj, up, "extension") {
			continue
		}
		oi.Users[u.Extension] = ui
		if s != nil {
			key := callerKey(s.Name, u.Extension)
			if prev, dup := c.plan.callers[key]; dup {
				if prev != nil {
					c.warnf(obj, up, "extension", "extension %s is on server %s in orgs %s and %s: calls from it are told apart by domain only", u.Extension, s.Name, prev.Org.ID, oi.ID)
				}
				c.plan.callers[key] = nil
			} else {
				c.plan.callers[key] = ui
			}
		}
	}
	for j := range o.SIPNumbers {
		n := &o.SIPNumbers[j]
		np := path + ".sip_numbers[" + strconv.Itoa(j) + "]"
		obj := org + " sip number " + n.Number
		if !AllDigits(n.Number) || len(n.Number) > 20 || IsAllZero(n.Number) {
			c.errf(obj, np, "number", "%q must be 1-20 digits, not all zero", n.Number)
			continue
		}
		s := c.plan.servers[n.Server]
		if s == nil {
			c.errf(obj, np, "server", "no server named %q", n.Server)
		}
		si := &SIPInfo{Org: oi, Number: n.Number, Only: n.Number + "T", Server: s, RingTimeout: time.Duration(n.RingTimeout), Registered: true}
		if n.Registered != nil {
			si.Registered = *n.Registered
		}
		if si.RingTimeout < 0 {
			c.errf(obj, np, "ring_timeout", "must not be negative")
		}
		if si.RingTimeout <= 0 {
			si.RingTimeout = oi.RingTimeout
		}
		si.Endpoint = c.endpoint(obj, np, n.Endpoint, s, n.Number)
		if c.claim(oi, n.Number, &DialTarget{Kind: TargetSIP, SIP: si}, obj, np, "number") {
			oi.SIPNumbers[n.Number] = si
		}
	}
	// Next numbers once every SIP number of the org is known.
	for j := range o.SIPNumbers {
		n := &o.SIPNumbers[j]
		si := oi.SIPNumbers[n.Number]
		if si == nil || oi.dial[n.Number].SIP != si {
			continue
		}
		np := path + ".sip_numbers[" + strconv.Itoa(j) + "]"
		obj := org + " sip number " + n.Number
		switch {
		case n.Next == "":
			c.errf(obj, np, "next", "is required: the next sip number, or 0000 to end the chain")
		case IsAllZero(n.Next):
		case !AllDigits(n.Next):
			c.errf(obj, np, "next", "%q is not a number", n.Next)
		default:
			next := oi.SIPNumbers[n.Next]
			if next == nil {
				where := ""
				for _, other := range c.plan.Orgs {
					if other != oi && other.SIPNumbers[n.Next] != nil {
						where = " (it is in org " + other.ID + ")"
					}
				}
				c.errf(obj, np, "next", "next number %s is not a sip number of org %s%s", n.Next, oi.ID, where)
				continue
			}
			si.Next = next
		}
	}
	for j := range o.ServiceNumbers {
		sn := &o.ServiceNumbers[j]
		sp := path + ".service_numbers[" + strconv.Itoa(j) + "]"
		obj := org + " service number " + sn.Number
		if !AllDigits(sn.Number) || len(sn.Number) > 20 {
			c.errf(obj, sp, "number", "%q must be 1-20 digits", sn.Number)
			continue
		}
		svc := &ServiceInfo{Number: sn.Number}
		switch {
		case sn.Start == "":
			c.errf(obj, sp, "start", "a service number needs a start number (the sip number the hunt begins with)")
		case oi.SIPNumbers[sn.Start] == nil:
			c.errf(obj, sp, "start", "start number %s is not a sip number of org %s", sn.Start, oi.ID)
		default:
			svc.Start = oi.SIPNumbers[sn.Start]
		}
		if svc.Start == nil {
			continue
		}
		if c.claim(oi, sn.Number, &DialTarget{Kind: TargetService, Service: svc}, obj, sp, "number") {
			oi.ServiceNumbers[sn.Number] = svc
		}
	}
	if f := oi.Fallback; f != "" {
		if oi.dial[f] == nil {
			c.errf(org, path+".hunt", "fallback", "%q is not an extension, service or sip number of org %s", f, oi.ID)
		}
	}
}

func (c *compiler) numbers() {
	for i := range c.doc.Numbers {
		n := &c.doc.Numbers[i]
		path := "numbers[" + strconv.Itoa(i) + "]"
		obj := "number " + n.Number
		if !IsE164(n.Number, c.plan.MinExternalDigits) {
			c.errf(obj, path, "number", "%q is not an E.164 number (+ and %d-15 digits)", n.Number, c.plan.MinExternalDigits)
			continue
		}
		if c.plan.numbers[n.Number] != nil {
			first := 0
			for j := range c.doc.Numbers[:i] {
				if c.doc.Numbers[j].Number == n.Number {
					first = j
					break
				}
			}
			where := "numbers[" + strconv.Itoa(first) + "]"
			if c.src != nil && c.src.Line(where) > 0 {
				where = "line " + strconv.Itoa(c.src.Line(where))
			}
			c.errf(obj, path, "number", "number %s is listed twice (first at %s)", n.Number, where)
			continue
		}
		ni := &NumberInfo{Number: n.Number, Owner: c.plan.orgs[n.Owner], Assignment: n.Assignment}
		if ni.Owner == nil {
			c.errf(obj, path, "owner", "no org with id %q", n.Owner)
			continue
		}
		if n.AssignedTo != "" {
			ni.AssignedTo = c.plan.orgs[n.AssignedTo]
			if ni.AssignedTo == nil {
				c.errf(obj, path, "assigned_to", "no org with id %q", n.AssignedTo)
				continue
			}
			if ni.AssignedTo == ni.Owner {
				c.errf(obj, path, "assigned_to", "the number is already the owner's")
				continue
			}
		}
		switch ni.Assignment {
		case "":
			ni.Assignment = AssignNone
			if ni.AssignedTo != nil {
				ni.Assignment = AssignPending
			}
		case AssignNone, AssignPending, AssignActive:
			if ni.Assignment != AssignNone && ni.AssignedTo == nil {
				c.errf(obj, path, "assignment", "%s needs assigned_to", ni.Assignment)
				continue
			}
		default:
			c.errf(obj, path, "assignment", "%q is not none, pending or active", n.Assignment)
			continue
		}
		ni.User = ni.Owner
		if ni.Assignment == AssignActive {
			ni.User = ni.AssignedTo
		}
		c.plan.numbers[n.Number] = ni
		ni.User.usable[n.Number] = ni
		if n.Destination != "" {
			t := ni.User.dial[n.Destination]
			if t == nil || t.Kind == TargetFeature {
				c.errf(obj, path, "destination", "%q is not an extension, service or sip number of org %s, which uses this number", n.Destination, ni.User.ID)
				continue
			}
			ni.Destination = t
		}
	}
}

// usableReason explains why org may not present n.
func (c *compiler) usableReason(oi *OrgInfo, n string) string {
	ni := c.plan.numbers[n]
	switch {
	case ni == nil:
		return "is not one of the plan's numbers"
	case ni.User != oi && ni.Owner == oi:
		return "is owned by org " + oi.ID + " but assigned to org " + ni.User.ID
	case ni.AssignedTo == oi:
		return "is assigned to org " + oi.ID + " by org " + ni.Owner.ID + " but the assignment is " + ni.Assignment
	default:
		return "belongs to org " + ni.User.ID
	}
}

func (c *compiler) callerIDs() {
	for i := range c.doc.Orgs {
		o, oi, path, ok := c.org(i)
		if !ok {
			continue
		}
		org := "org " + oi.ID
		if oi.DefaultNumber != "" && oi.usable[oi.DefaultNumber] == nil {
			c.errf(org, path, "default_outgoing_number", "%s %s", oi.DefaultNumber, c.usableReason(oi, oi.DefaultNumber))
		}
		for j := range o.Users {
			u := &o.Users[j]
			ui := oi.Users[u.Extension]
			if ui == nil || ui.Number == "" {
				continue
			}
			if oi.usable[ui.Number] == nil {
				c.errf(org+" user "+ui.Ext, path+".users["+strconv.Itoa(j)+"]", "outgoing_number", "%s %s", ui.Number, c.usableReason(oi, ui.Number))
			}
		}
		for j, r := range o.CallerID.Rules {
			rp := path + ".caller_id.rules[" + strconv.Itoa(j) + "]"
			obj := org + " caller-id rule " + strconv.Itoa(j+1)
			e164, ok := "", false
			if AllDigits(r.Prefix) || (len(r.Prefix) > 1 && r.Prefix[0] == '+' && AllDigits(r.Prefix[1:])) {
				e164, ok = oi.Normalize(r.Prefix)
			}
			if !ok {
				c.errf(obj, rp, "prefix", "%q must be a destination prefix such as 0044 or +44", r.Prefix)
				continue
			}
			if !IsE164(r.Number, 1) {
				c.errf(obj, rp, "number", "%q is not an E.164 number", r.Number)
				continue
			}
			if oi.usable[r.Number] == nil {
				c.errf(obj, rp, "number", "%s %s", r.Number, c.usableReason(oi, r.Number))
				continue
			}
			oi.cidRules.numbers = append(oi.cidRules.numbers, r.Number)
			oi.cidRules.add(e164, int32(len(oi.cidRules.numbers)-1))
		}
	}
}

// chains computes, for every SIP number, how many distinct members a hunt
// starting there rings (the cycle guard), warns about loops, and checks that
// no group has more service numbers than members.
func (c *compiler) chains() {
	for i := range c.doc.Orgs {
		o, oi, path, ok := c.org(i)
		if !ok {
			continue
		}
		// Walk lengths over the functional graph "next": a node on a cycle
		// rings the whole cycle; a node on a tail rings itself plus its next's.
		const (
			unseen = 0
			onPath = -1
		)
		state := map[*SIPInfo]int{}
		for _, n := range o.SIPNumbers {
			start := oi.SIPNumbers[n.Number]
			if start == nil || state[start] != unseen {
				continue
			}
			var stack []*SIPInfo
			cur := start
			for cur != nil && state[cur] == unseen {
				state[cur] = onPath
				stack = append(stack, cur)
				cur = cur.Next
			}
			if cur != nil && state[cur] == onPath {
				// A loop: every node from cur to the top of the stack is on it.
				k := len(stack) - 1
				for stack[k] != cur {
					k--
				}
				loop := stack[k:]
				names := make([]string, 0, len(loop)+1)
				for _, m := range loop {
					m.Walk = len(loop)
					state[m] = len(loop)
					names = append(names, m.Number)
				}
				names = append(names, cur.Number)
				c.warnf("org "+oi.ID+" sip number "+cur.Number, c.sipPath(o, path, cur.Number), "next",
					"the chain loops (%s): each member rings at most once per call", strings.Join(names, " -> "))
				stack = stack[:k]
			}
			for k := len(stack) - 1; k >= 0; k-- {
				m := stack[k]
				m.Walk = 1
				if m.Next != nil {
					m.Walk = 1 + state[m.Next]
				}
				state[m] = m.Walk
			}
		}
		// Groups: connected components of the chains (union-find).
		parent := map[*SIPInfo]*SIPInfo{}
		var find func(*SIPInfo) *SIPInfo
		find = func(x *SIPInfo) *SIPInfo {
			for parent[x] != nil && parent[x] != x {
				if gp := parent[parent[x]]; gp != nil {
					parent[x] = gp
				}
				x = parent[x]
			}
			return x
		}
		for _, m := range oi.SIPNumbers {
			if m.Next != nil {
				a, b := find(m), find(m.Next)
				if a != b {
					parent[a] = b
				}
			}
		}
		members := map[*SIPInfo]int{}
		for _, m := range oi.SIPNumbers {
			members[find(m)]++
		}
		services := map[*SIPInfo][]string{}
		for j := range o.ServiceNumbers {
			sn := &o.ServiceNumbers[j]
			svc := oi.ServiceNumbers[sn.Number]
			if svc == nil || svc.Start == nil {
				continue
			}
			root := find(svc.Start)
			services[root] = append(services[root], sn.Number)
			if len(services[root]) == members[root]+1 {
				c.errf("org "+oi.ID+" service number "+sn.Number, path+".service_numbers["+strconv.Itoa(j)+"]", "number",
					"the group of %s has %d sip numbers and more service numbers (%s): a group has at most as many service numbers as sip numbers",
					svc.Start.Number, members[root], strings.Join(services[root], ", "))
			}
		}
	}
}

func (c *compiler) sipPath(o *Org, path, number string) string {
	for j := range o.SIPNumbers {
		if o.SIPNumbers[j].Number == number {
			return path + ".sip_numbers[" + strconv.Itoa(j) + "]"
		}
	}
	return path
}

// ambiguity rejects plans in which a dialed string of a caller matches two
// different rules (SPEC §2, last paragraph): an org-connect prefix or a server
// prefix followed by a destination that equals an internal string, or two
// prefixed forms that meet. Internal strings that look like external numbers
// are shadowing them, which is allowed but worth a warning.
func (c *compiler) ambiguity() {
	for i := range c.doc.Orgs {
		o, oi, path, ok := c.org(i)
		if !ok {
			continue
		}
		org := "org " + oi.ID
		for _, s := range sortedKeys(oi.dial) {
			if e, ok := oi.Normalize(s); ok && IsE164(e, c.plan.MinExternalDigits) {
				c.warnf(org, path, "", "%s is %s and shadows the external number %s", s, describe(oi.dial[s]), e)
			}
		}
		// Server-prefixed forms are the same for every caller of the org.
		prefixed := map[string]string{}
		for _, s := range sortedKeys(oi.dial) {
			t := oi.dial[s]
			home := t.Home()
			if home == nil || home.Prefix == "" {
				continue
			}
			form := home.Prefix + s
			meaning := "server prefix " + home.Prefix + " + " + describe(t)
			if t2 := oi.dial[form]; t2 != nil && t2 != t {
				c.errf(org, path, "", "dialing %s is ambiguous: %s, and %s", form, describe(t2), meaning)
			}
			prefixed[form] = meaning
		}
		for _, rn := range sortedKeys(oi.Rules) {
			r := oi.Rules[rn]
			rp := path + ".outbound_rules"
			for j := range o.OutboundRules {
				if o.OutboundRules[j].Name == rn {
					rp += "[" + strconv.Itoa(j) + "]"
				}
			}
			for _, p := range sortedKeys(r.connect) {
				dest := r.connect[p]
				for _, s := range sortedKeys(dest.dial) {
					t := dest.dial[s]
					if t.Kind == TargetFeature {
						continue
					}
					form := p + s
					meaning := "org-connect prefix " + p + " + " + describe(t) + " of org " + dest.ID
					if t2 := oi.dial[form]; t2 != nil {
						c.errf(org+" outbound rule "+rn, rp, "org_connect", "dialing %s is ambiguous: %s, and %s", form, describe(t2), meaning)
					}
					if other, ok := prefixed[form]; ok {
						c.errf(org+" outbound rule "+rn, rp, "org_connect", "dialing %s is ambiguous: %s, and %s", form, other, meaning)
					}
				}
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
