package provision

import (
	"encoding/json"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Document is the provisioning file as written by an operator (SPEC §1). It is
// decoded strictly (unknown keys are errors) and then compiled into a Plan.
type Document struct {
	Settings Settings `yaml:"settings,omitempty" json:"settings,omitempty"`
	Servers  []Server `yaml:"servers,omitempty" json:"servers,omitempty"`
	Orgs     []Org    `yaml:"orgs,omitempty" json:"orgs,omitempty"`
	Numbers  []Number `yaml:"numbers,omitempty" json:"numbers,omitempty"`
}

// Settings are plan-wide defaults.
type Settings struct {
	// ServerPrefixes bounds the prefixes servers may use (SPEC §4: 1–98 except
	// 7, 8, 9 by default).
	ServerPrefixes PrefixRange `yaml:"server_prefixes,omitempty" json:"server_prefixes,omitempty"`
	// RingTimeout is the default per-member ring time of a hunt (20 s).
	RingTimeout Duration `yaml:"ring_timeout,omitempty" json:"ring_timeout,omitempty"`
	// MinExternalDigits is the shortest E.164 number (digits after +) treated
	// as external; anything shorter is unallocated.
	MinExternalDigits int `yaml:"min_external_digits,omitempty" json:"min_external_digits,omitempty"`
	// MaxForwards is how many times one call may be forwarded (1-20,
	// default 5); the next forward ends it busy (SPEC §4).
	MaxForwards int `yaml:"max_forwards,omitempty" json:"max_forwards,omitempty"`
}

// PrefixRange is the set of allowed server prefixes.
type PrefixRange struct {
	Min     int   `yaml:"min,omitempty" json:"min,omitempty"`
	Max     int   `yaml:"max,omitempty" json:"max,omitempty"`
	Exclude []int `yaml:"exclude,omitempty" json:"exclude,omitempty"`
}

// Server is one media server.
type Server struct {
	Name         string           `yaml:"name,omitempty" json:"name,omitempty"`
	Kind         string           `yaml:"kind,omitempty" json:"kind,omitempty"`
	Prefix       string           `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	ChannelLimit int              `yaml:"channel_limit,omitempty" json:"channel_limit,omitempty"`
	FreeSWITCH   *ESLConn         `yaml:"freeswitch,omitempty" json:"freeswitch,omitempty"`
	Asterisk     *ARIConn         `yaml:"asterisk,omitempty" json:"asterisk,omitempty"`
	Endpoint     string           `yaml:"endpoint,omitempty" json:"endpoint,omitempty"` // template for users without one, e.g. "user/{ext}"
	PSTN         *Trunk           `yaml:"pstn,omitempty" json:"pstn,omitempty"`
	Trunks       map[string]Trunk `yaml:"trunks,omitempty" json:"trunks,omitempty"`
	// LimitForward is where a call goes instead of 503 when a counted leg
	// on this server would exceed its channel limit.
	LimitForward *LimitForward `yaml:"limit_forward,omitempty" json:"limit_forward,omitempty"`
}

// ESLConn is how callctl reaches a FreeSWITCH server's inbound Event Socket.
type ESLConn struct {
	Address  string `yaml:"address,omitempty" json:"address,omitempty"`
	Password string `yaml:"password,omitempty" json:"password,omitempty"`
	// Context is the dialplan context callctl's hand-off runs in, used to send a
	// call back to the media server's own dialplan (feature codes).
	Context string `yaml:"context,omitempty" json:"context,omitempty"`
}

// ARIConn is how callctl reaches an Asterisk server's ARI.
type ARIConn struct {
	URL      string `yaml:"url,omitempty" json:"url,omitempty"`
	User     string `yaml:"user,omitempty" json:"user,omitempty"`
	Password string `yaml:"password,omitempty" json:"password,omitempty"`
	App      string `yaml:"app,omitempty" json:"app,omitempty"`
	Context  string `yaml:"context,omitempty" json:"context,omitempty"`
}

// Trunk says how to dial through a trunk ("sofia/gateway/srv12/{dest}",
// "PJSIP/{dest}@srv12") and how calls arriving over it are recognised: From
// lists the source identities (signalling addresses for FreeSWITCH, PJSIP
// endpoint names for Asterisk) that callctl trusts as that trunk.
type Trunk struct {
	Dial string   `yaml:"dial,omitempty" json:"dial,omitempty"`
	From []string `yaml:"from,omitempty" json:"from,omitempty"`
}

// Org is a tenant.
type Org struct {
	ID                  string        `yaml:"id,omitempty" json:"id,omitempty"`
	Name                string        `yaml:"name,omitempty" json:"name,omitempty"`
	Domain              string        `yaml:"domain,omitempty" json:"domain,omitempty"`
	CountryCode         string        `yaml:"country_code,omitempty" json:"country_code,omitempty"`
	NationalPrefix      string        `yaml:"national_prefix,omitempty" json:"national_prefix,omitempty"`
	InternationalPrefix string        `yaml:"international_prefix,omitempty" json:"international_prefix,omitempty"`
	DefaultNumber       string        `yaml:"default_outgoing_number,omitempty" json:"default_outgoing_number,omitempty"`
	ChannelLimit        int           `yaml:"channel_limit,omitempty" json:"channel_limit,omitempty"`
	CallerID            CallerIDRules `yaml:"caller_id,omitempty" json:"caller_id,omitempty"`
	Hunt                HuntSettings  `yaml:"hunt,omitempty" json:"hunt,omitempty"`
	// EmergencyNumbers always reach the PSTN, whatever the outbound rule
	// or the limits; default: those of the org's country (110 and 112 in
	// Germany, 110, 118 and 119 in Japan, 911 in North America, ...).
	EmergencyNumbers []string `yaml:"emergency_numbers,omitempty" json:"emergency_numbers,omitempty"`
	FeatureCodes     []string `yaml:"feature_codes,omitempty" json:"feature_codes,omitempty"`
	// LinkedOrgs are the orgs this org is linked with (seed 000); a link
	// declared by either side lets both sides define org-connect prefixes.
	LinkedOrgs []string `yaml:"linked_orgs,omitempty" json:"linked_orgs,omitempty"`
	// Webhook is where callctl tells the org's admins about number
	// assignments that wait for them (seed 001); set by cluster admins.
	Webhook        string          `yaml:"webhook,omitempty" json:"webhook,omitempty"`
	OutboundRules  []OutboundRule  `yaml:"outbound_rules,omitempty" json:"outbound_rules,omitempty"`
	Users          []User          `yaml:"users,omitempty" json:"users,omitempty"`
	SIPNumbers     []SIPNumber     `yaml:"sip_numbers,omitempty" json:"sip_numbers,omitempty"`
	ServiceNumbers []ServiceNumber `yaml:"service_numbers,omitempty" json:"service_numbers,omitempty"`
	// LimitForward is where a call goes instead of 503 when a counted leg
	// of this org would exceed the org's channel limit.
	LimitForward *LimitForward `yaml:"limit_forward,omitempty" json:"limit_forward,omitempty"`
}

// CallerIDRules are the advanced caller-ID rules of SPEC §6.
type CallerIDRules struct {
	// Override applies the rules even to users with a specific number.
	Override bool           `yaml:"override,omitempty" json:"override,omitempty"`
	Rules    []CallerIDRule `yaml:"rules,omitempty" json:"rules,omitempty"`
}

// CallerIDRule presents Number when the destination starts with Prefix.
type CallerIDRule struct {
	Prefix string `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	Number string `yaml:"number,omitempty" json:"number,omitempty"`
}

// HuntSettings configure the org's sequential groups.
type HuntSettings struct {
	RingTimeout Duration `yaml:"ring_timeout,omitempty" json:"ring_timeout,omitempty"`
	// Fallback is rung (in this org, showing the caller as the group did)
	// when nobody answers; empty = busy.
	Fallback string `yaml:"fallback,omitempty" json:"fallback,omitempty"`
}

// OutboundRule is assigned to users and says what they may dial.
type OutboundRule struct {
	Name       string       `yaml:"name,omitempty" json:"name,omitempty"`
	Allow      []string     `yaml:"allow,omitempty" json:"allow,omitempty"`
	Deny       []string     `yaml:"deny,omitempty" json:"deny,omitempty"`
	Countries  []string     `yaml:"countries,omitempty" json:"countries,omitempty"`
	OrgConnect []OrgConnect `yaml:"org_connect,omitempty" json:"org_connect,omitempty"`
}

// OrgConnect reaches the extensions of another org with a prefix (seed 000).
type OrgConnect struct {
	Org    string `yaml:"org,omitempty" json:"org,omitempty"`
	Prefix string `yaml:"prefix,omitempty" json:"prefix,omitempty"`
}

// User is an agent with a phone.
type User struct {
	Extension      string `yaml:"extension,omitempty" json:"extension,omitempty"`
	Name           string `yaml:"name,omitempty" json:"name,omitempty"`
	Server         string `yaml:"server,omitempty" json:"server,omitempty"`
	Endpoint       string `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
	OutgoingNumber string `yaml:"outgoing_number,omitempty" json:"outgoing_number,omitempty"`
	OutboundRule   string `yaml:"outbound_rule,omitempty" json:"outbound_rule,omitempty"`
	// Forward sends the user's calls elsewhere when they do not answer or
	// are busy (SPEC §4).
	Forward *Forward `yaml:"forward,omitempty" json:"forward,omitempty"`
}

// Forward is a user's call forwarding: each target is dialed as the user
// would dial it.
type Forward struct {
	// NoAnswer is rung when the user has not answered After (1s-5m; default
	// the org's ring timeout) or is not registered.
	NoAnswer string   `yaml:"no_answer,omitempty" json:"no_answer,omitempty"`
	After    Duration `yaml:"after,omitempty" json:"after,omitempty"`
	// Busy is rung when the user's phone is busy.
	Busy string `yaml:"busy,omitempty" json:"busy,omitempty"`
}

// LimitForward is a limit's forward target: Target dialed in Org (an
// org's own defaults to that org).
type LimitForward struct {
	Org    string `yaml:"org,omitempty" json:"org,omitempty"`
	Target string `yaml:"target,omitempty" json:"target,omitempty"`
}

// SIPNumber is a member of a sequential group (seed 002).
type SIPNumber struct {
	Number      string   `yaml:"number,omitempty" json:"number,omitempty"`
	Server      string   `yaml:"server,omitempty" json:"server,omitempty"`
	Endpoint    string   `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
	Next        string   `yaml:"next,omitempty" json:"next,omitempty"`
	RingTimeout Duration `yaml:"ring_timeout,omitempty" json:"ring_timeout,omitempty"`
	Registered  *bool    `yaml:"registered,omitempty" json:"registered,omitempty"`
}

// ServiceNumber is an alias that starts a hunt.
type ServiceNumber struct {
	Number string `yaml:"number,omitempty" json:"number,omitempty"`
	Start  string `yaml:"start,omitempty" json:"start,omitempty"`
}

// Number is an inbound number (DID), also usable as caller ID (seed 001).
type Number struct {
	Number      string `yaml:"number,omitempty" json:"number,omitempty"`
	Owner       string `yaml:"owner,omitempty" json:"owner,omitempty"`
	AssignedTo  string `yaml:"assigned_to,omitempty" json:"assigned_to,omitempty"`
	Assignment  string `yaml:"assignment,omitempty" json:"assignment,omitempty"` // none | pending | active
	Destination string `yaml:"destination,omitempty" json:"destination,omitempty"`
}

// Duration is a time.Duration written as "20s" in YAML.
type Duration time.Duration

// UnmarshalYAML parses Go duration syntax.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: duration must be a scalar like 20s", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 20s", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration in Go syntax.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// MarshalJSON writes the duration as a Go duration string ("20s").
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string ("20s").
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"20s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration like 20s", s)
	}
	*d = Duration(v)
	return nil
}

// Clone returns a deep copy of the document: a change is made on a copy and
// validated whole before it replaces anything.
func (d *Document) Clone() (*Document, error) {
	b, err := d.YAML()
	if err != nil {
		return nil, err
	}
	var c Document
	if err := yaml.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("copy plan: %w", err)
	}
	return &c, nil
}

// YAML is the document as YAML, the form stores keep.
func (d *Document) YAML() ([]byte, error) {
	b, err := yaml.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode plan: %w", err)
	}
	return b, nil
}
