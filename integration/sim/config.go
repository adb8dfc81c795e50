package sim

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

// Config describes a lab: its servers, the phones registered on them, the
// simulated PSTN. It loads from YAML (LoadConfig) or is built in code.
//
//	speed: 1
//	servers:
//	  - name: fs1
//	    kind: freeswitch
//	    ip: 127.0.0.11
//	    controllers: [127.0.0.1:8084, 127.0.0.1:8085]
//	    trunks: {fs2: fs2}
//	  - name: ast1
//	    kind: asterisk
//	phones:
//	  - {server: fs1, ext: "2099", mode: answer, ring_for: 2s}
//	  - {server: fs1, ext: "2001", mode: unregistered}
//	pstn:
//	  - {number: "+4930123456", mode: busy}
//	pstn_default: {mode: answer, ring_for: 1s}
type Config struct {
	// Speed runs the lab's clock that many times faster than real time
	// (default 1): a 30 s ring takes 30/Speed s.
	Speed float64 `yaml:"speed"`
	// Seed makes the lab's uuids reproducible (0: random).
	Seed    uint64         `yaml:"seed"`
	Servers []ServerConfig `yaml:"servers"`
	Phones  []PhoneConfig  `yaml:"phones"`
	PSTN    []PSTNConfig   `yaml:"pstn"`
	// PSTNDefault is what every PSTN number without its own entry does
	// (unset: such numbers are unallocated).
	PSTNDefault *Behaviour `yaml:"pstn_default"`
	// PhonesIP and PSTNIP are the addresses calls from phones and from the
	// PSTN come from (127.0.0.100 and 127.0.0.200 by default).
	PhonesIP string `yaml:"phones_ip"`
	PSTNIP   string `yaml:"pstn_ip"`

	Logger *slog.Logger `yaml:"-"`
}

// ServerConfig describes one simulated server.
type ServerConfig struct {
	Name string `yaml:"name"`
	// Kind is freeswitch or asterisk.
	Kind string `yaml:"kind"`
	// IP is the fake address its SIP traffic comes from, as the other
	// servers see it (127.0.0.11, .12, ... by default).
	IP string `yaml:"ip"`
	// Listen is the event socket (FreeSWITCH) or ARI HTTP (Asterisk)
	// address; 127.0.0.1:0 by default.
	Listen string `yaml:"listen"`
	// Password of the event socket (ClueCon) or the ARI user (ari).
	Password string `yaml:"password"`
	// Controllers: FreeSWITCH outbound socket addresses, tried in order for
	// every call handed to the controller.
	Controllers []string `yaml:"controllers"`
	// App: the Stasis application of an Asterisk (controller).
	App string `yaml:"app"`
	// Trunks maps a FreeSWITCH gateway name (sofia/gateway/<name>/...) or an
	// Asterisk trunk endpoint (PJSIP/<dest>@<name>) to the server it reaches.
	Trunks map[string]string `yaml:"trunks"`
	// Heartbeat is the FreeSWITCH HEARTBEAT period (20 s; negative: none).
	Heartbeat time.Duration `yaml:"heartbeat"`
}

// Behaviour is what a phone or PSTN number does when called.
type Behaviour struct {
	// Mode: answer, ring, busy, reject, unregistered or fail.
	Mode string `yaml:"mode"`
	// RingFor: ringing time before answering or refusing.
	RingFor time.Duration `yaml:"ring_for"`
	// HangupAfter: an answering phone hangs up that long after answering.
	HangupAfter time.Duration `yaml:"hangup_after"`
	// Cause of mode fail (NORMAL_TEMPORARY_FAILURE by default).
	Cause string `yaml:"cause"`
	// EarlyMedia rings with 183 instead of 180.
	EarlyMedia bool `yaml:"early_media"`
}

// PhoneConfig registers a phone on a server.
type PhoneConfig struct {
	Server    string `yaml:"server"`
	Ext       string `yaml:"ext"`
	Behaviour `yaml:",inline"`
}

// PSTNConfig scripts one PSTN number.
type PSTNConfig struct {
	Number    string `yaml:"number"`
	Behaviour `yaml:",inline"`
}

// Model converts the behaviour for the call model.
func (b Behaviour) Model() (callmodel.Behaviour, error) {
	mode := b.Mode
	if mode == "" {
		mode = "answer"
	}
	m, err := callmodel.ParseMode(mode)
	if err != nil {
		return callmodel.Behaviour{}, err
	}
	out := callmodel.Behaviour{Mode: m, RingFor: b.RingFor, HangupAfter: b.HangupAfter, EarlyMedia: b.EarlyMedia}
	if b.RingFor < 0 || b.HangupAfter < 0 {
		return callmodel.Behaviour{}, errors.New("negative duration")
	}
	if b.Cause != "" {
		c, ok := callmodel.CauseByName(b.Cause)
		if !ok {
			return callmodel.Behaviour{}, fmt.Errorf("unknown cause %q", b.Cause)
		}
		out.Cause = c
	}
	return out, nil
}

// LoadConfig reads a YAML lab description.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("lab config: %w", err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("lab config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig reads a YAML lab description; unknown fields are errors.
func ParseConfig(b []byte) (Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, err
	}
	return cfg, cfg.Validate()
}

// Validate checks the whole configuration and fills in defaults; every
// problem is reported.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Speed == 0 {
		c.Speed = 1
	}
	if c.Speed < 0 {
		bad("speed %v: must be positive", c.Speed)
	}
	if c.PhonesIP == "" {
		c.PhonesIP = "127.0.0.100"
	}
	if c.PSTNIP == "" {
		c.PSTNIP = "127.0.0.200"
	}
	if len(c.Servers) == 0 {
		bad("no servers")
	}
	names := map[string]bool{}
	ips := map[string]string{}
	for i := range c.Servers {
		s := &c.Servers[i]
		where := fmt.Sprintf("servers[%d] %s", i, s.Name)
		if s.Name == "" {
			bad("servers[%d]: name missing", i)
		}
		if names[s.Name] {
			bad("%s: duplicate name", where)
		}
		names[s.Name] = true
		switch s.Kind {
		case string(callmodel.FreeSWITCH), string(callmodel.Asterisk):
		default:
			bad("%s: kind %q (want freeswitch or asterisk)", where, s.Kind)
		}
		if s.IP == "" {
			s.IP = fmt.Sprintf("127.0.0.%d", 11+i)
		}
		if ip := net.ParseIP(s.IP); ip == nil {
			bad("%s: ip %q is not an address", where, s.IP)
		}
		if other, dup := ips[s.IP]; dup {
			bad("%s: ip %s already used by %s", where, s.IP, other)
		}
		ips[s.IP] = s.Name
		if s.Listen == "" {
			s.Listen = "127.0.0.1:0"
		}
		if host, _, err := net.SplitHostPort(s.Listen); err != nil {
			bad("%s: listen %q: %v", where, s.Listen, err)
		} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			bad("%s: listen %q: only loopback addresses", where, s.Listen)
		}
		if s.Kind == string(callmodel.Asterisk) && len(s.Controllers) > 0 {
			bad("%s: controllers are for freeswitch servers (asterisk uses app)", where)
		}
		for _, ctl := range s.Controllers {
			if _, _, err := net.SplitHostPort(ctl); err != nil {
				bad("%s: controller %q: %v", where, ctl, err)
			}
		}
	}
	for i := range c.Servers {
		s := &c.Servers[i]
		for gw, target := range s.Trunks {
			if !names[target] {
				bad("servers[%d] %s: trunk %s reaches unknown server %q", i, s.Name, gw, target)
			}
			if target == s.Name {
				bad("servers[%d] %s: trunk %s reaches the server itself", i, s.Name, gw)
			}
		}
	}
	seen := map[[2]string]bool{}
	for i, p := range c.Phones {
		where := fmt.Sprintf("phones[%d] %s@%s", i, p.Ext, p.Server)
		if !names[p.Server] {
			bad("%s: unknown server", where)
		}
		if p.Ext == "" {
			bad("phones[%d]: ext missing", i)
		}
		if seen[[2]string{p.Server, p.Ext}] {
			bad("%s: duplicate phone", where)
		}
		seen[[2]string{p.Server, p.Ext}] = true
		if _, err := p.Behaviour.Model(); err != nil {
			bad("%s: %v", where, err)
		}
	}
	numbers := map[string]bool{}
	for i, p := range c.PSTN {
		where := fmt.Sprintf("pstn[%d] %s", i, p.Number)
		if p.Number == "" {
			bad("pstn[%d]: number missing", i)
		}
		if numbers[p.Number] {
			bad("%s: duplicate number", where)
		}
		numbers[p.Number] = true
		if _, err := p.Behaviour.Model(); err != nil {
			bad("%s: %v", where, err)
		}
	}
	if c.PSTNDefault != nil {
		if _, err := c.PSTNDefault.Model(); err != nil {
			bad("pstn_default: %v", err)
		}
	}
	return errors.Join(errs...)
}
