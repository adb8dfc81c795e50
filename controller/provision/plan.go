package provision

import (
	"strings"
	"time"
)

// Kinds of media server.
const (
	KindFreeSWITCH = "freeswitch"
	KindAsterisk   = "asterisk"
)

// Number assignment states (seed 001).
const (
	AssignNone    = "none"
	AssignPending = "pending"
	AssignActive  = "active"
)

// DefaultRingTimeout is the per-member ring time when neither the member nor
// the org nor the settings give one (SPEC §3).
const DefaultRingTimeout = 20 * time.Second

// Plan is a validated, compiled provisioning document. It is immutable: a
// reload builds a new Plan and swaps it in whole, so readers never see a
// half-applied plan and need no locks.
type Plan struct {
	// Version identifies the document content (a hash), for logs and for the
	// cluster to agree on which plan runs.
	Version string
	// Doc is the document the plan was compiled from.
	Doc *Document

	RingTimeout       time.Duration
	MinExternalDigits int
	// MaxForwards bounds the forwards of one call (SPEC §4).
	MaxForwards int

	Servers []*ServerInfo
	Orgs    []*OrgInfo

	servers  map[string]*ServerInfo
	byPrefix map[string]*ServerInfo
	// prefixLens lists the distinct server prefix lengths, shortest first, so
	// a dialed string is matched with a handful of map lookups, never a scan.
	prefixLens []int
	orgs       map[string]*OrgInfo
	byDomain   map[string]*OrgInfo
	numbers    map[string]*NumberInfo
	// callers finds the user behind a phone call: server name + "/" + extension.
	callers map[string]*UserInfo
}

// Server returns the server named name.
func (p *Plan) Server(name string) *ServerInfo { return p.servers[name] }

// Org returns the org with id.
func (p *Plan) Org(id string) *OrgInfo { return p.orgs[id] }

// Number returns the DID with the E.164 number n.
func (p *Plan) Number(n string) *NumberInfo { return p.numbers[n] }

// ServerByPrefix returns the server whose prefix begins s, and the prefix length.
func (p *Plan) ServerByPrefix(s string) (*ServerInfo, int) {
	for _, l := range p.prefixLens {
		if l >= len(s) {
			break
		}
		if sv := p.byPrefix[s[:l]]; sv != nil {
			return sv, l
		}
	}
	return nil, 0
}

// Caller finds the user placing a call from a phone on server: by domain when
// the media server gives one, else by the extension, unique on that server.
func (p *Plan) Caller(server, domain, ext string) *UserInfo {
	if domain != "" {
		if o := p.byDomain[domain]; o != nil {
			if u := o.Users[ext]; u != nil && u.Server.Name == server {
				return u
			}
			return nil
		}
	}
	return p.callers[callerKey(server, ext)]
}

func callerKey(server, ext string) string { return server + "/" + ext }

// ServerInfo is a compiled Server.
type ServerInfo struct {
	Name         string
	Kind         string
	Prefix       string
	ChannelLimit int
	ESL          *ESLConn
	ARI          *ARIConn
	// EndpointTemplate builds the endpoint of users without one.
	EndpointTemplate string
	PSTN             *TrunkInfo
	// Trunks to the other servers, by their name.
	Trunks map[string]*TrunkInfo
	// LimitForward takes calls this server's limit refuses; nil: 503.
	LimitForward *LimitForwardInfo
	// sources maps a signalling source identity to what it is: a peer server's
	// trunk, or the PSTN.
	sources map[string]*TrunkInfo
}

// TrunkInfo is a compiled Trunk.
type TrunkInfo struct {
	// Peer is the server at the other end; nil for the PSTN trunk.
	Peer *ServerInfo
	// Dial is the template, with {dest} where the destination goes.
	Dial         string
	before, post string
}

// DialString fills the trunk's template with dest.
func (t *TrunkInfo) DialString(dest string) string { return t.before + dest + t.post }

// Source says whether identity is a trunk of this server (nil if not). An
// identity "host:port" matches an entry with the port or with the host alone,
// so that several servers on one host are told apart by port.
func (s *ServerInfo) Source(identity string) *TrunkInfo {
	if identity == "" {
		return nil
	}
	if t := s.sources[identity]; t != nil {
		return t
	}
	if i := strings.LastIndexByte(identity, ':'); i > 0 && !strings.Contains(identity[i+1:], "]") {
		host := identity[:i]
		if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
			host = host[1 : len(host)-1]
		}
		return s.sources[host]
	}
	return nil
}

// OrgInfo is a compiled Org.
type OrgInfo struct {
	ID                  string
	Name                string
	Domain              string
	CountryCode         string
	NationalPrefix      string
	InternationalPrefix string
	DefaultNumber       string
	ChannelLimit        int
	// Webhook is where assignment notices for the org's admins go.
	Webhook     string
	RingTimeout time.Duration
	Fallback    string
	// Override applies caller-ID rules even to users with a specific number.
	Override bool
	// LimitForward takes calls the org's limit refuses; nil: 503.
	LimitForward *LimitForwardInfo

	Users          map[string]*UserInfo
	SIPNumbers     map[string]*SIPInfo
	ServiceNumbers map[string]*ServiceInfo
	Rules          map[string]*RuleInfo
	Linked         map[string]*OrgInfo

	// dial is every internal dialed string of the org: extensions, service
	// numbers, SIP numbers and feature codes.
	dial map[string]*DialTarget
	// cidRules is the trie of advanced caller-ID rules.
	cidRules cidTrie
	// usable are the numbers the org may present as caller ID.
	usable map[string]*NumberInfo
	// back is, per linked org, the smallest prefix any rule of this org
	// reaches it with.
	back map[string]string
	// emergency are the org's emergency numbers.
	emergency map[string]bool
}

// Emergency says s is one of the org's emergency numbers: it goes to the
// PSTN as dialed, whatever the outbound rule or the limits.
func (o *OrgInfo) Emergency(s string) bool { return o.emergency[s] }

// emergencyByCountry are the emergency numbers of a country calling code
// (112 works across the EU and on GSM everywhere; it is the default).
var emergencyByCountry = map[string][]string{
	"1": {"911"}, "7": {"112", "101", "102", "103"}, "30": {"112", "100", "166", "199"}, "31": {"112"}, "32": {"112", "100", "101"},
	"33": {"112", "15", "17", "18", "114"}, "34": {"112", "091", "061", "080"}, "39": {"112", "113", "115", "118"},
	"41": {"112", "117", "118", "144"}, "43": {"112", "122", "133", "144"}, "44": {"999", "112"}, "45": {"112"}, "46": {"112"},
	"47": {"112", "110", "113"}, "48": {"112", "997", "998", "999"}, "49": {"110", "112"}, "55": {"190", "192", "193"},
	"61": {"000", "112"}, "81": {"110", "118", "119"}, "82": {"112", "119"}, "86": {"110", "119", "120", "122"},
	"91": {"112", "100", "101", "102"},
}

// PrefixBack is the prefix with which some outbound rule of the org reaches
// org id (the smallest, when several do), or "".
func (o *OrgInfo) PrefixBack(id string) string { return o.back[id] }

// Lookup returns the internal target dialed as s in the org, or nil.
func (o *OrgInfo) Lookup(s string) *DialTarget { return o.dial[s] }

// Usable returns the DID if the org may present n as its caller ID.
func (o *OrgInfo) Usable(n string) *NumberInfo { return o.usable[n] }

// CallerIDRule returns the number of the first advanced rule whose prefix
// begins the E.164 destination, or "" when none does. It walks a trie: the cost
// is the length of the destination, whatever the number of rules.
func (o *OrgInfo) CallerIDRule(e164 string) string { return o.cidRules.match(e164) }

// TargetKind says what an internal dialed string is.
type TargetKind uint8

// Target kinds.
const (
	TargetExtension TargetKind = iota + 1
	TargetService
	TargetSIP
	TargetFeature
)

func (k TargetKind) String() string {
	switch k {
	case TargetExtension:
		return "extension"
	case TargetService:
		return "service number"
	case TargetSIP:
		return "sip number"
	case TargetFeature:
		return "feature code"
	}
	return "unknown"
}

// DialTarget is what an internal dialed string reaches.
type DialTarget struct {
	Kind    TargetKind
	User    *UserInfo
	SIP     *SIPInfo
	Service *ServiceInfo
	Code    string
}

// Home is the server the target lives on (for a service number, its start
// member's server); nil for a feature code, which runs on the caller's server.
func (t *DialTarget) Home() *ServerInfo {
	switch t.Kind {
	case TargetExtension:
		return t.User.Server
	case TargetSIP:
		return t.SIP.Server
	case TargetService:
		return t.Service.Start.Server
	}
	return nil
}

// UserInfo is a compiled User.
type UserInfo struct {
	Org      *OrgInfo
	Ext      string
	Name     string
	Server   *ServerInfo
	Endpoint string
	// Number is the user's specific outgoing number, "" for the org default.
	Number string
	Rule   *RuleInfo
	// Prefixed is the server prefix + extension, the identity shown on other
	// servers (SPEC §4), computed once so routing does not allocate it.
	Prefixed string
	// Forward is the user's call forwarding (zero: none).
	Forward ForwardInfo
}

// SIPInfo is a compiled SIP number, a member of a sequential group.
type SIPInfo struct {
	Org         *OrgInfo
	Number      string
	Server      *ServerInfo
	Endpoint    string
	Next        *SIPInfo
	RingTimeout time.Duration
	Registered  bool
	// Walk is how many distinct members a hunt starting here rings at most:
	// the cycle guard of SPEC §3, computed once.
	Walk int
	// Only is the number with the T suffix: how the member is dialed alone.
	Only string
}

// ServiceInfo is a compiled service number.
type ServiceInfo struct {
	Number string
	Start  *SIPInfo
}

// RuleInfo is a compiled outbound rule.
type RuleInfo struct {
	Name         string
	allow, deny  []pattern
	countries    map[string]bool
	allCountries bool
	home         string
	connect      map[string]*OrgInfo
	connectLens  []int
	back         map[string]string
}

// OrgConnect returns the org reached by the org-connect prefix that begins s,
// and the prefix length.
func (r *RuleInfo) OrgConnect(s string) (*OrgInfo, int) {
	if r == nil {
		return nil, 0
	}
	for _, l := range r.connectLens {
		if l >= len(s) {
			break
		}
		if o := r.connect[s[:l]]; o != nil {
			return o, l
		}
	}
	return nil, 0
}

// PrefixFor returns the prefix with which this rule reaches org id, or "".
func (r *RuleInfo) PrefixFor(id string) string {
	if r == nil {
		return ""
	}
	return r.back[id]
}

// NumberInfo is a compiled DID.
type NumberInfo struct {
	Number     string
	Owner      *OrgInfo
	AssignedTo *OrgInfo
	Assignment string
	// User is the org whose PBX the number is in: the assignee once the
	// assignment is active, else the owner.
	User        *OrgInfo
	Destination *DialTarget
}

// DefaultOutgoing is the org's default outgoing number (callerid.Org).
func (o *OrgInfo) DefaultOutgoing() string { return o.DefaultNumber }

// OverrideRules says caller-ID rules win over users' numbers (callerid.Org).
func (o *OrgInfo) OverrideRules() bool { return o.Override }

// MayPresent says the org may present n (callerid.Org).
func (o *OrgInfo) MayPresent(n string) bool { return o.usable[n] != nil }
