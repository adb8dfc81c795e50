package provision

import "fmt"

// pattern is a dial-plan pattern matched against an E.164 number, in the
// notation operators know from Asterisk: digits and '+' match themselves, X
// any digit, Z 1-9, N 2-9, [1-4] a range or set, a final '.' one or more
// further characters, a final '!' zero or more.
type pattern struct {
	src   string
	elems []patElem
	tail  byte // 0, '.', '!'
}

type patElem struct {
	set [2]uint64 // bit per byte value 0-127
}

func (e patElem) has(c byte) bool { return c < 128 && e.set[c/64]&(1<<(c%64)) != 0 }
func (e *patElem) add(c byte)     { e.set[c/64] |= 1 << (c % 64) }

func compilePattern(s string) (pattern, error) {
	p := pattern{src: s}
	if s == "" {
		return p, fmt.Errorf("empty pattern")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		var e patElem
		switch {
		case c == '.' || c == '!':
			if i != len(s)-1 {
				return p, fmt.Errorf("%q: %c is only allowed at the end", s, c)
			}
			p.tail = c
			continue
		case c >= '0' && c <= '9', c == '+', c == '*', c == '#':
			e.add(c)
		case c == 'X' || c == 'x':
			for d := byte('0'); d <= '9'; d++ {
				e.add(d)
			}
		case c == 'Z' || c == 'z':
			for d := byte('1'); d <= '9'; d++ {
				e.add(d)
			}
		case c == 'N' || c == 'n':
			for d := byte('2'); d <= '9'; d++ {
				e.add(d)
			}
		case c == '[':
			j := i + 1
			for ; j < len(s) && s[j] != ']'; j++ {
				d := s[j]
				if d == '-' && j > i+1 && j+1 < len(s) && s[j+1] != ']' {
					lo, hi := s[j-1], s[j+1]
					if lo > hi || lo < '0' || hi > '9' {
						return p, fmt.Errorf("%q: bad range %c-%c", s, lo, hi)
					}
					for x := lo; x <= hi; x++ {
						e.add(x)
					}
					j++
					continue
				}
				if d < '0' || d > '9' {
					return p, fmt.Errorf("%q: only digits may appear in [ ]", s)
				}
				e.add(d)
			}
			if j >= len(s) {
				return p, fmt.Errorf("%q: [ without ]", s)
			}
			i = j
		default:
			return p, fmt.Errorf("%q: %q is not a pattern character (0-9 + * # X Z N [ ] . !)", s, c)
		}
		p.elems = append(p.elems, e)
	}
	return p, nil
}

func (p *pattern) match(s string) bool {
	if len(s) < len(p.elems) {
		return false
	}
	for i := range p.elems {
		if !p.elems[i].has(s[i]) {
			return false
		}
	}
	switch p.tail {
	case '.':
		return len(s) > len(p.elems)
	case '!':
		return true
	}
	return len(s) == len(p.elems)
}

// Permits applies the rule to an E.164 destination: denied patterns first,
// then allowed ones (none = everything), then the country whitelist. The
// reason says why not.
func (r *RuleInfo) Permits(e164 string) (ok bool, reason string) {
	for i := range r.deny {
		if r.deny[i].match(e164) {
			return false, "matches deny pattern " + r.deny[i].src + " of outbound rule " + r.Name
		}
	}
	if len(r.allow) > 0 {
		allowed := false
		for i := range r.allow {
			if r.allow[i].match(e164) {
				allowed = true
				break
			}
		}
		if !allowed {
			return false, "matches no allow pattern of outbound rule " + r.Name
		}
	}
	if r.allCountries {
		return true, ""
	}
	// Country codes are prefix-free (ITU E.164), so at most one of the three
	// possible lengths can be a whitelisted code.
	for l := 1; l <= 3 && l < len(e164); l++ {
		if r.countries[e164[1:1+l]] {
			return true, ""
		}
	}
	return false, "country of " + e164 + " is not in the whitelist of outbound rule " + r.Name
}
