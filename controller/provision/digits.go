package provision

// Dialed strings come from the network: they are data, never syntax. Only
// 0-9 * # + (and a final T on a SIP number) are ever accepted.

// MaxDialed is the longest dialed string callctl accepts: E.164 allows 15
// digits; prefixes, feature codes and a T add a few.
const MaxDialed = 32

// IsDialChar reports whether c may appear in a dialed string.
func IsDialChar(c byte) bool {
	return c >= '0' && c <= '9' || c == '*' || c == '#' || c == '+'
}

// ValidDialed reports whether s is a well-formed dialed string: 1..MaxDialed
// characters of 0-9*#, '+' only in front, optionally ending in 'T'.
func ValidDialed(s string) bool {
	if len(s) == 0 || len(s) > MaxDialed {
		return false
	}
	end := len(s)
	if s[end-1] == 'T' {
		end--
		if end == 0 {
			return false
		}
	}
	for i := 0; i < end; i++ {
		c := s[i]
		if c == '+' {
			if i != 0 || end == 1 {
				return false
			}
			continue
		}
		if !IsDialChar(c) {
			return false
		}
	}
	return true
}

// AllDigits reports whether s is a non-empty string of 0-9.
func AllDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// IsE164 reports whether s is +CC… with 1-15 digits, the first not zero, and
// at least min digits.
func IsE164(s string, min int) bool {
	if len(s) < 2 || s[0] != '+' || s[1] == '0' {
		return false
	}
	d := s[1:]
	return AllDigits(d) && len(d) <= 15 && len(d) >= min
}

// IsAllZero reports whether s is made only of '0' (the end of a chain: 0000).
func IsAllZero(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

// Normalize turns a dialed external number into E.164 using the org's home
// country and dialing prefixes (SPEC §2 step 7): "+…" stays, international
// prefix + rest becomes "+rest", national prefix + rest becomes "+CC rest".
// ok is false when s is neither.
func (o *OrgInfo) Normalize(s string) (e164 string, ok bool) {
	return normalize(s, o.CountryCode, o.NationalPrefix, o.InternationalPrefix)
}

func normalize(s, cc, np, ip string) (string, bool) {
	if len(s) > 1 && s[0] == '+' {
		return s, true
	}
	// The international prefix is checked first: it usually begins with the
	// national one (00 and 0, 010 and 0).
	if ip != "" && len(s) > len(ip) && s[:len(ip)] == ip {
		return "+" + s[len(ip):], true
	}
	if np != "" && len(s) > len(np) && s[:len(np)] == np {
		return "+" + cc + s[len(np):], true
	}
	return "", false
}
