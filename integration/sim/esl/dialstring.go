package esl

import (
	"errors"
	"strings"
)

// dialLeg is one endpoint of a dial string with its [leg] variables.
type dialLeg struct {
	vars     []header
	endpoint string
}

// dialString is a parsed FreeSWITCH dial string: {global variables}, then
// groups tried one after the other ("|"), each ringing its legs at the same
// time (",", or ":_:").
type dialString struct {
	global []header
	groups [][]dialLeg
}

var errEmptyDialString = errors.New("empty dial string")

// parseDialString reads a dial string as switch_ivr_originate splits it.
func parseDialString(s string) (*dialString, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errEmptyDialString
	}
	ds := &dialString{}
	if s[0] == '<' {
		// enterprise originate <vars>: treated as global variables
		end := matchClose(s, 0, '<', '>')
		if end < 0 {
			return nil, errors.New("unterminated <...> in dial string")
		}
		ds.global = append(ds.global, parseVars(s[1:end])...)
		s = strings.TrimSpace(s[end+1:])
	}
	for strings.HasPrefix(s, "{") {
		end := matchClose(s, 0, '{', '}')
		if end < 0 {
			return nil, errors.New("unterminated {...} in dial string")
		}
		ds.global = append(ds.global, parseVars(s[1:end])...)
		s = strings.TrimSpace(s[end+1:])
	}
	for _, group := range splitTop(s, "|") {
		var legs []dialLeg
		for _, part := range splitTop(group, ",", ":_:") {
			part = strings.TrimSpace(part)
			var leg dialLeg
			for len(part) > 0 && (part[0] == '[' || part[0] == '{') {
				open, cls := part[0], byte(']')
				if open == '{' {
					cls = '}'
				}
				end := matchClose(part, 0, open, cls)
				if end < 0 {
					return nil, errors.New("unterminated [...] in dial string")
				}
				leg.vars = append(leg.vars, parseVars(part[1:end])...)
				part = strings.TrimSpace(part[end+1:])
			}
			if part == "" {
				continue
			}
			leg.endpoint = part
			legs = append(legs, leg)
		}
		if len(legs) > 0 {
			ds.groups = append(ds.groups, legs)
		}
	}
	if len(ds.groups) == 0 {
		return nil, errEmptyDialString
	}
	return ds, nil
}

// matchClose finds the bracket closing s[i], skipping quoted text.
func matchClose(s string, i int, open, cls byte) int {
	depth := 0
	quote := byte(0)
	for j := i; j < len(s); j++ {
		c := s[j]
		if quote != 0 {
			if c == quote {
				quote = 0
			}
			continue
		}
		switch c {
		case '\'', '"':
			quote = c
		case open:
			depth++
		case cls:
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}

// splitTop splits s on any of seps outside brackets and quotes.
func splitTop(s string, seps ...string) []string {
	var out []string
	depth := 0
	quote := byte(0)
	start := 0
	for j := 0; j < len(s); j++ {
		c := s[j]
		if quote != 0 {
			if c == quote {
				quote = 0
			}
			continue
		}
		switch c {
		case '\'':
			quote = c
			continue
		case '{', '[', '(', '<':
			depth++
			continue
		case '}', ']', ')', '>':
			if depth > 0 {
				depth--
			}
			continue
		}
		if depth > 0 {
			continue
		}
		for _, sep := range seps {
			if strings.HasPrefix(s[j:], sep) {
				out = append(out, s[start:j])
				start = j + len(sep)
				j += len(sep) - 1
				break
			}
		}
	}
	return append(out, s[start:])
}

// parseVars reads "a=1,b='x,y'" (or "^^:a=1:b=2", a custom delimiter).
func parseVars(s string) []header {
	delim := ","
	if strings.HasPrefix(s, "^^") && len(s) >= 3 {
		delim = s[2:3]
		s = s[3:]
	}
	var out []header
	for _, kv := range splitTop(s, delim) {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		name, value, _ := strings.Cut(kv, "=")
		name = strings.TrimSpace(name)
		value = strings.TrimSpace(value)
		if len(value) >= 2 && value[0] == '\'' && value[len(value)-1] == '\'' {
			value = value[1 : len(value)-1]
		}
		if name != "" {
			out = append(out, header{name, value})
		}
	}
	return out
}

// lookup returns the last value of a variable among the lists, the later
// lists winning (leg variables override global ones).
func lookup(name string, lists ...[]header) (string, bool) {
	val, found := "", false
	for _, l := range lists {
		for _, h := range l {
			if h.name == name {
				val, found = h.value, true
			}
		}
	}
	return val, found
}

// splitArgs splits an api argument line on spaces, keeping {...}, [...]
// and '...' together (switch_separate_string).
func splitArgs(s string) []string {
	var out []string
	for _, f := range splitTop(s, " ") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
