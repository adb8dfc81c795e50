package asterisk

import (
	"errors"
	"fmt"
	"strings"

	"github.com/callctl/callctl/controller/provision"
)

// Digits from the network are data, never syntax. An Asterisk dial string
// gives meaning to '&' (several channels), '/' (options), '@' (context),
// ',' and '|' (application arguments) and ';' (Local halves), and a channel
// variable ending up in a dialplan can do worse. So everything callctl puts
// into an endpoint, a caller ID or a variable is checked here first.

// ErrUnsafe is returned when a value is refused because it could be read as
// syntax by Asterisk.
var ErrUnsafe = errors.New("refused: not a safe value for Asterisk")

// maxResource bounds the dialed part of an endpoint (E.164 plus prefixes).
const maxResource = provision.MaxDialed

// endpoint is a checked dial target.
type endpoint struct {
	tech     string // "PJSIP" or "Local"
	resource string // digits: 0-9 * # + (T only last)
	at       string // the PJSIP endpoint (trunk) or the Local context; may be empty
}

func (e endpoint) String() string {
	if e.at == "" {
		return e.tech + "/" + e.resource
	}
	return e.tech + "/" + e.resource + "@" + e.at
}

// trunk reports whether the target is reached through another PJSIP
// endpoint (a trunk to a server or to the PSTN).
func (e endpoint) trunk() bool { return e.tech == "PJSIP" && e.at != "" }

// parseEndpoint checks a dial target: PJSIP/<digits>, PJSIP/<digits>@<name>
// or Local/<digits>@<context>. The digits are 0-9 * # + ('+' first only, an
// optional final 'T'); the name is a plan identifier.
func parseEndpoint(s string) (endpoint, error) {
	tech, rest, ok := strings.Cut(s, "/")
	if !ok {
		return endpoint{}, fmt.Errorf("endpoint %q: no technology: %w", s, ErrUnsafe)
	}
	switch {
	case strings.EqualFold(tech, "PJSIP"):
		tech = "PJSIP"
	case strings.EqualFold(tech, "Local"):
		tech = "Local"
	default:
		return endpoint{}, fmt.Errorf("endpoint %q: technology %q not allowed: %w", s, tech, ErrUnsafe)
	}
	res, at, hasAt := strings.Cut(rest, "@")
	if !validDigits(res) {
		return endpoint{}, fmt.Errorf("endpoint %q: destination is not 1-%d of 0-9*#+: %w", s, maxResource, ErrUnsafe)
	}
	if hasAt && !validName(at) {
		return endpoint{}, fmt.Errorf("endpoint %q: %q is not a plain name: %w", s, at, ErrUnsafe)
	}
	if tech == "Local" && at == "" {
		return endpoint{}, fmt.Errorf("endpoint %q: a Local endpoint needs a context: %w", s, ErrUnsafe)
	}
	return endpoint{tech: tech, resource: res, at: at}, nil
}

// validDigits reports whether s is a dialed string: routing's own gate,
// checked again at the edge (0-9 * # +, '+' only first, an optional final
// 'T').
func validDigits(s string) bool { return provision.ValidDialed(s) }

// validName reports whether s is a plan identifier (a PJSIP endpoint, a
// context, an org id): letters, digits, '_', '-', '.', at most 64.
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// callerID formats the callerId parameter of an originate. The number must
// be digits; the name is display text, stripped of what would end the quoted
// string or the <number> part, and of control characters.
func callerID(number, name string) (string, error) {
	if number == "" && name == "" {
		return "", nil
	}
	if number != "" && !validDigits(number) {
		return "", fmt.Errorf("caller id number %q: %w", number, ErrUnsafe)
	}
	name = cleanName(name)
	if name == "" {
		return number, nil
	}
	return `"` + name + `" <` + number + `>`, nil
}

// cleanName keeps a display name printable and unable to break out of the
// quotes it is put in.
func cleanName(s string) string {
	const max = 64
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= max {
			break
		}
		switch {
		case r < 0x20 || r == 0x7f:
			continue
		case r == '"' || r == '<' || r == '>' || r == '\\':
			continue
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}
