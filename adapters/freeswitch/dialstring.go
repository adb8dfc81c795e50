package freeswitch

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/callctl/callctl/controller"
)

// Everything that reaches a FreeSWITCH dial string, an application argument
// or an api command is checked here, at the edge, even though endpoints come
// from validated provisioning and destinations from the routing core: digits
// from the network are data, and a comma, a pipe, a brace, a space or a line
// break in the wrong place is syntax (a second leg, a channel variable, an
// application after '&', a second command).

// ErrUnsafeInput is wrapped by every refusal of this file.
var ErrUnsafeInput = errors.New("unsafe input for FreeSWITCH")

// isNumberChar is the alphabet of dialed digits.
func isNumberChar(c byte) bool {
	return c >= '0' && c <= '9' || c == '*' || c == '#' || c == '+'
}

// validNumber reports whether s is 1..32 characters of 0-9 * # with an
// optional leading '+': the only form a number takes in a dial string or a
// caller ID.
func validNumber(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '+' && i == 0 && len(s) > 1 {
			continue
		}
		if !isNumberChar(c) || c == '+' {
			return false
		}
	}
	return true
}

// validName reports whether s is a plain identifier: a gateway, a profile, a
// context, an org id, a domain. Letters, digits and . _ - only.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validHost is a host name or IPv4 address with an optional :port.
func validHost(s string) bool {
	host, port, found := strings.Cut(s, ":")
	if found {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil || port == "" || port[0] == '+' {
			return false
		}
	}
	return validName(host)
}

// validUserPart is the user part of a SIP endpoint from provisioning
// (sofia/internal/phone@host): letters, digits and . _ - + * #.
func validUserPart(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isNumberChar(c) || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ValidateEndpoint checks a dial target. Accepted forms:
//
//	user/<number>[@<domain>]
//	loopback/<number>[/<context>[/<dialplan>]]
//	sofia/gateway/<gateway>/<number>[T]
//	sofia/<profile>/<user>@<host>[:<port>]
//
// where <number> is 0-9 * # with an optional leading +. Anything else, and
// in particular any ',', '|', '{', '[', space, quote, '$' or control
// character, is refused.
func ValidateEndpoint(s string) error {
	bad := func(why string) error { return fmt.Errorf("%w: endpoint %q: %s", ErrUnsafeInput, s, why) }
	if len(s) > 256 {
		return bad("too long")
	}
	tech, rest, ok := strings.Cut(s, "/")
	if !ok {
		return bad("no technology prefix")
	}
	switch tech {
	case "user":
		num, dom, hasDom := strings.Cut(rest, "@")
		if !validNumber(num) {
			return bad("user must be digits")
		}
		if hasDom && !validName(dom) {
			return bad("bad domain")
		}
		return nil
	case "loopback":
		parts := strings.Split(rest, "/")
		if len(parts) > 3 || !validNumber(parts[0]) {
			return bad("loopback destination must be digits")
		}
		for _, p := range parts[1:] {
			if !validName(p) {
				return bad("bad loopback context or dialplan")
			}
		}
		return nil
	case "sofia":
		profile, rest, ok := strings.Cut(rest, "/")
		if !ok || !validName(profile) {
			return bad("bad sofia profile")
		}
		if profile == "gateway" {
			gw, num, ok := strings.Cut(rest, "/")
			// A trailing T asks the far server to ring only that member of
			// a group (a hunt across a trunk dials each member so).
			if !ok || !validName(gw) || !validNumber(strings.TrimSuffix(num, "T")) {
				return bad("gateway destination must be sofia/gateway/<name>/<digits>[T]")
			}
			return nil
		}
		user, host, ok := strings.Cut(rest, "@")
		if !ok || !validUserPart(user) || !validHost(host) {
			return bad("must be sofia/<profile>/<user>@<host>")
		}
		return nil
	}
	return bad("unsupported technology " + strconv.Quote(tech))
}

// validUUID reports whether s looks like a channel UUID (hex and dashes), the
// only form callctl passes as a leg id.
func validUUID(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' || c == '-') {
			return false
		}
	}
	return true
}

// SanitizeName makes a caller name safe inside a {var=value} list and an
// application argument: letters (any script), digits, spaces and . - _ @ ( )
// + / stay; everything else (',', '}', quotes, '$' which FreeSWITCH would
// expand, control characters, invalid UTF-8) is dropped; runs of spaces become
// one; the result is at most 64 runes.
func SanitizeName(s string) string {
	var b strings.Builder
	space := false
	n := 0
	for i := 0; i < len(s) && n < 64; {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r == utf8.RuneError && size <= 1 {
			continue
		}
		switch {
		case r == ' ' || r == '\t':
			space = b.Len() > 0
			continue
		case unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune(".-_@()+/", r):
		default:
			continue
		}
		if space {
			b.WriteByte(' ')
			n++
			space = false
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// legMarkVar is set on every leg callctl creates; the inbound connection
// filters on it.
const legMarkVar = "callctl_leg"

// dialVars is what a bridge sets on the leg it creates.
type dialVars struct {
	legID   string
	cidNum  string
	cidName string
	private bool
	markOrg string
}

// BridgeArg builds the bridge argument for spec:
//
//	{origination_uuid=<leg>,callctl_leg=true,originate_timeout=<s>,origination_caller_id_number=<n>,
//	 origination_caller_id_name=<name>[,origination_privacy=hide_name:hide_number][,sip_h_X-Callctl-Org=<org>]}<target>
//
// A withheld caller (spec.Withheld) is shown as anonymous with FreeSWITCH's
// privacy flags.
// The target, leg id and org must be valid (else an error wrapping
// ErrUnsafeInput); a caller number that is not digits is left out (the leg
// then shows the channel's own caller ID) and reported in dropped; the name
// is sanitised.
func BridgeArg(spec controller.DialSpec) (arg string, dropped string, err error) {
	var b strings.Builder
	b.Grow(160 + len(spec.Target))
	dropped, err = appendLeg(&b, spec, false)
	if err != nil {
		return "", "", err
	}
	return b.String(), dropped, nil
}

// HuntArg builds the argument of one bridge ringing specs one after the
// other ('|' failover), each leg with its own variables as BridgeArg sets
// them ([...] instead of {...}; its backstop is leg_timeout):
//
//	[origination_uuid=<leg1>,callctl_leg=true,leg_timeout=<s>,...]<target1>|[origination_uuid=<leg2>,...]<target2>
//
// dropped lists the caller numbers left out, as BridgeArg's.
func HuntArg(specs []controller.DialSpec) (arg string, dropped []string, err error) {
	var b strings.Builder
	b.Grow(200 * len(specs))
	for i, spec := range specs {
		if i > 0 {
			b.WriteByte('|')
		}
		d, err := appendLeg(&b, spec, true)
		if err != nil {
			return "", nil, err
		}
		if d != "" {
			dropped = append(dropped, d)
		}
	}
	return b.String(), dropped, nil
}

// appendLeg writes one leg of a dial string: its variables ({...} for a
// bridge of one leg, [...] for one leg of several) and its target.
func appendLeg(b *strings.Builder, spec controller.DialSpec, perLeg bool) (dropped string, err error) {
	if err := ValidateEndpoint(spec.Target); err != nil {
		return "", err
	}
	if !validUUID(spec.LegID) {
		return "", fmt.Errorf("%w: leg id %q", ErrUnsafeInput, spec.LegID)
	}
	v := dialVars{legID: spec.LegID, cidName: SanitizeName(spec.CallerIDName)}
	switch {
	case spec.Withheld:
		// The caller is withheld: nothing of the caller's channel (whose
		// caller ID may be anything) shows, and the privacy flags make
		// FreeSWITCH send an anonymous From.
		v.cidNum, v.cidName, v.private = "anonymous", "Anonymous", true
	case spec.CallerIDNumber != "":
		if validNumber(spec.CallerIDNumber) {
			v.cidNum = spec.CallerIDNumber
		} else {
			dropped = spec.CallerIDNumber
		}
	}
	if v.cidName == "" {
		// No name chosen (external calls present a number only): without
		// one the new leg would take the caller's own name.
		v.cidName = v.cidNum
	}
	if spec.Trunk && spec.MarkOrg != "" {
		if !validName(spec.MarkOrg) {
			return "", fmt.Errorf("%w: org mark %q", ErrUnsafeInput, spec.MarkOrg)
		}
		v.markOrg = spec.MarkOrg
	}
	open, close, timeoutVar := byte('{'), byte('}'), ",originate_timeout="
	if perLeg {
		open, close, timeoutVar = '[', ']', ",leg_timeout="
	}
	b.WriteByte(open)
	b.WriteString("origination_uuid=")
	b.WriteString(v.legID)
	// Marks the leg so the inbound connection's filter passes its events
	// and nobody else's.
	b.WriteString(",")
	b.WriteString(legMarkVar)
	b.WriteString("=true")
	if secs := spec.BackstopSeconds(); secs > 0 {
		// A backstop only: the engine cancels the leg at the ring timeout.
		b.WriteString(timeoutVar)
		b.WriteString(strconv.Itoa(secs))
	}
	if v.cidNum != "" {
		b.WriteString(",origination_caller_id_number=")
		b.WriteString(v.cidNum)
	}
	if v.cidName != "" {
		b.WriteString(",origination_caller_id_name=")
		b.WriteString(v.cidName)
	}
	if v.private {
		b.WriteString(",origination_privacy=hide_name:hide_number")
	}
	if v.markOrg != "" {
		b.WriteString(",sip_h_X-Callctl-Org=")
		b.WriteString(v.markOrg)
	}
	b.WriteByte(close)
	b.WriteString(spec.Target)
	return dropped, nil
}

// contactArg turns a user/<ext>[@domain] endpoint into the argument of
// sofia_contact; ok is false for endpoints that have no registration
// (loopback, gateways, explicit SIP URIs).
func contactArg(endpoint, defaultDomain string) (string, bool, error) {
	rest, isUser := strings.CutPrefix(endpoint, "user/")
	if !isUser {
		return "", false, ValidateEndpoint(endpoint)
	}
	if err := ValidateEndpoint(endpoint); err != nil {
		return "", false, err
	}
	if !strings.Contains(rest, "@") && defaultDomain != "" {
		if !validName(defaultDomain) {
			return "", false, fmt.Errorf("%w: domain %q", ErrUnsafeInput, defaultDomain)
		}
		rest += "@" + defaultDomain
	}
	return rest, true, nil
}
