// Package callerid chooses the number presented on external calls (SPEC §6,
// seed 004). It is pure and allocation-free.
package callerid

// Org is what the choice needs of an org.
type Org interface {
	// CallerIDRule returns the number of the first advanced rule matching the
	// E.164 destination, or "".
	CallerIDRule(e164 string) string
	// DefaultOutgoing is the org's default outgoing number.
	DefaultOutgoing() string
	// OverrideRules says advanced rules win even over a user's own number.
	OverrideRules() bool
	// MayPresent says the org may use n as its caller ID.
	MayPresent(n string) bool
}

// Source says where a chosen number came from, for logs and records.
type Source uint8

// Sources.
const (
	FromDefault Source = iota
	FromUser
	FromRule
)

func (s Source) String() string {
	switch s {
	case FromUser:
		return "user"
	case FromRule:
		return "rule"
	}
	return "default"
}

// Choice is the number to present and why.
type Choice struct {
	Number string
	Source Source
	// Warning is set when the wanted number may not be used by the org: it is
	// never presented, the org default is (SPEC §6).
	Warning string
}

// Choose picks the caller ID for a call of a user (userNumber "" = the user
// uses the default) to the E.164 destination:
//
//   - override off: the user's own number; else the first matching rule; else
//     the org default;
//   - override on: the first matching rule; else the user's number; else the
//     org default.
func Choose(org Org, userNumber, e164 string) Choice {
	c := Choice{Number: org.DefaultOutgoing(), Source: FromDefault}
	rule := ""
	if userNumber == "" || org.OverrideRules() {
		rule = org.CallerIDRule(e164)
	}
	switch {
	case rule != "":
		c.Number, c.Source = rule, FromRule
	case userNumber != "":
		c.Number, c.Source = userNumber, FromUser
	}
	if c.Source != FromDefault && !org.MayPresent(c.Number) {
		c.Warning = "number " + c.Number + " (" + c.Source.String() + ") may not be used by the org; presenting the org default"
		c.Number, c.Source = org.DefaultOutgoing(), FromDefault
	}
	if c.Number != "" && !org.MayPresent(c.Number) {
		c.Warning = "org default number " + c.Number + " may not be used by the org; presenting no number"
		c.Number = ""
	}
	return c
}
