package provision

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Document is the provisioning file as written by an operator (SPEC §1). It is
// decoded strictly (unknown keys are errors) and then compiled into a Plan.
type Document struct {
	Settings Settings `yaml:"settings"`
	Servers  []Server `yaml:"servers"`
	Orgs     []Org    `yaml:"orgs"`
	Numbers  []Number `yaml:"numbers"`
}

// Settings are plan-wide defaults.
type Settings struct {
	// ServerPrefixes bounds the prefixes servers may use (SPEC §4: 1–98 except
	// 7, 8, 9 by default).
	ServerPrefixes PrefixRange `yaml:"server_prefixes"`
	// RingTimeout is the default per-member ring time of a hunt (20 s).
	RingTimeout Duration `yaml:"ring_timeout"`
	// MinExternalDigits is the shortest E.164 number (digits after +) treated
	// as external; anything shorter is unallocated.
	MinExternalDigits int `yaml:"min_external_digits"`
}

// PrefixRange is the set of allowed server prefixes.
type PrefixRange struct {
	Min     int   `yaml:"min"`
	Max     int   `yaml:"max"`
	Exclude []int `yaml:"exclude"`
}

// Server is one media server.
type Server struct {
	Name         string           `yaml:"name"`
	Kind         string           `yaml:"kind"`
	Prefix       string           `yaml:"prefix"`
	ChannelLimit int              `yaml:"channel_limit"`
	FreeSWITCH   *ESLConn         `yaml:"freeswitch"`
	Asterisk     *ARIConn         `yaml:"asterisk"`
	Endpoint     string           `yaml:"endpoint"` // template for users without one, e.g. "user/{ext}"
	PSTN         *Trunk           `yaml:"pstn"`
	Trunks       map[string]Trunk `yaml:"trunks"`
}

// ESLConn is how callctl reaches a FreeSWITCH server's inbound Event Socket.
type ESLConn struct {
	Address  string `yaml:"address"`
	Password string `yaml:"password"`
	// Context is the dialplan context callctl's hand-off runs in, used to send a
	// call back to the media server's own dialplan (feature codes).
	Context string `yaml:"context"`
}

// ARIConn is how callctl reaches an Asterisk server's ARI.
type ARIConn struct {
	URL      string `yaml:"url"`
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	App      string `yaml:"app"`
	Context  string `yaml:"context"`
}

// Trunk says how to dial through a trunk ("sofia/gateway/srv12/{dest}",
// "PJSIP/{dest}@srv12") and how calls arriving over it are recognised: From
// lists the source identities (signalling addresses for FreeSWITCH, PJSIP
// endpoint names for Asterisk) that callctl trusts as that trunk.
type Trunk struct {
	Dial string   `yaml:"dial"`
	From []string `yaml:"from"`
}

// Org is a tenant.
type Org struct {
	ID                  string        `yaml:"id"`
	Name                string        `yaml:"name"`
	Domain              string        `yaml:"domain"`
	CountryCode         string        `yaml:"country_code"`
	NationalPrefix      string        `yaml:"national_prefix"`
	InternationalPrefix string        `yaml:"international_prefix"`
	DefaultNumber       string        `yaml:"default_outgoing_number"`
	ChannelLimit        int           `yaml:"channel_limit"`
	CallerID            CallerIDRules `yaml:"caller_id"`
	Hunt                HuntSettings  `yaml:"hunt"`
	FeatureCodes        []string      `yaml:"feature_codes"`
	// LinkedOrgs are the orgs this org is linked with (seed 000); a link
	// declared by either side lets both sides define org-connect prefixes.
	LinkedOrgs     []string        `yaml:"linked_orgs"`
	OutboundRules  []OutboundRule  `yaml:"outbound_rules"`
	Users          []User          `yaml:"users"`
	SIPNumbers     []SIPNumber     `yaml:"sip_numbers"`
	ServiceNumbers []ServiceNumber `yaml:"service_numbers"`
}

// CallerIDRules are the advanced caller-ID rules of SPEC §6.
type CallerIDRules struct {
	// Override applies the rules even to users with a specific number.
	Override bool           `yaml:"override"`
	Rules    []CallerIDRule `yaml:"rules"`
}

// CallerIDRule presents Number when the destination starts with Prefix.
type CallerIDRule struct {
	Prefix string `yaml:"prefix"`
	Number string `yaml:"number"`
}

// HuntSettings configure the org's sequential groups.
type HuntSettings struct {
	RingTimeout Duration `yaml:"ring_timeout"`
	// Fallback is dialed (as the caller) when nobody answers; empty = busy.
	Fallback string `yaml:"fallback"`
}

// OutboundRule is assigned to users and says what they may dial.
type OutboundRule struct {
	Name       string       `yaml:"name"`
	Allow      []string     `yaml:"allow"`
	Deny       []string     `yaml:"deny"`
	Countries  []string     `yaml:"countries"`
	OrgConnect []OrgConnect `yaml:"org_connect"`
}

// OrgConnect reaches the extensions of another org with a prefix (seed 000).
type OrgConnect struct {
	Org    string `yaml:"org"`
	Prefix string `yaml:"prefix"`
}

// User is an agent with a phone.
type User struct {
	Extension      string `yaml:"extension"`
	Name           string `yaml:"name"`
	Server         string `yaml:"server"`
	Endpoint       string `yaml:"endpoint"`
	OutgoingNumber string `yaml:"outgoing_number"`
	OutboundRule   string `yaml:"outbound_rule"`
}

// SIPNumber is a member of a sequential group (seed 002).
type SIPNumber struct {
	Number      string   `yaml:"number"`
	Server      string   `yaml:"server"`
	Endpoint    string   `yaml:"endpoint"`
	Next        string   `yaml:"next"`
	RingTimeout Duration `yaml:"ring_timeout"`
	Registered  *bool    `yaml:"registered"`
}

// ServiceNumber is an alias that starts a hunt.
type ServiceNumber struct {
	Number string `yaml:"number"`
	Start  string `yaml:"start"`
}

// Number is an inbound number (DID), also usable as caller ID (seed 001).
type Number struct {
	Number      string `yaml:"number"`
	Owner       string `yaml:"owner"`
	AssignedTo  string `yaml:"assigned_to"`
	Assignment  string `yaml:"assignment"` // none | pending | active
	Destination string `yaml:"destination"`
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
