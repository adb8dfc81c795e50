package callerid_test

import (
	"strings"
	"testing"

	"github.com/callctl/callctl/controller/callerid"
)

// org is a plain implementation of callerid.Org for table tests: the rules
// are matched in order, as the operator wrote them.
type org struct {
	def      string
	override bool
	rules    [][2]string // E.164 prefix, number
	usable   map[string]bool
}

func (o *org) CallerIDRule(e164 string) string {
	for _, r := range o.rules {
		if strings.HasPrefix(e164, r[0]) {
			return r[1]
		}
	}
	return ""
}
func (o *org) DefaultOutgoing() string  { return o.def }
func (o *org) OverrideRules() bool      { return o.override }
func (o *org) MayPresent(n string) bool { return o.usable[n] }

// Seed 004's precedence, every branch.
func TestChoose(t *testing.T) {
	uk, def, mine, foreign := "+442071234567", "+4930100100", "+4930100199", "+4940999999"
	usable := map[string]bool{uk: true, def: true, mine: true}
	rules := [][2]string{{"+44", uk}}
	tests := []struct {
		name      string
		override  bool
		user, dst string
		want      string
		src       callerid.Source
		warn      bool
	}{
		{"default user, no rule: org default", false, "", "+4930123", def, callerid.FromDefault, false},
		{"default user, 0044 rule", false, "", "+442079460000", uk, callerid.FromRule, false},
		{"own number, override off: own number even to the UK", false, mine, "+442079460000", mine, callerid.FromUser, false},
		{"own number, override on: the rule wins", true, mine, "+442079460000", uk, callerid.FromRule, false},
		{"own number, override on, no rule: own number", true, mine, "+4930123", mine, callerid.FromUser, false},
		{"own number the org may not use: default with a warning", false, foreign, "+4930123", def, callerid.FromDefault, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := &org{def: def, override: tc.override, rules: rules, usable: usable}
			c := callerid.Choose(o, tc.user, tc.dst)
			if c.Number != tc.want || c.Source != tc.src || (c.Warning != "") != tc.warn {
				t.Errorf("Choose = %+v, want %s from %s (warning %v)", c, tc.want, tc.src, tc.warn)
			}
		})
	}
	// A rule that names a number the org may not use is never presented.
	o := &org{def: def, rules: [][2]string{{"+44", foreign}}, usable: usable}
	if c := callerid.Choose(o, "", "+442079460000"); c.Number != def || c.Warning == "" {
		t.Errorf("unusable rule number: %+v", c)
	}
	// Not even the default, when it is not usable: nothing is presented.
	o = &org{def: foreign, usable: usable}
	if c := callerid.Choose(o, "", "+4930123"); c.Number != "" || c.Warning == "" {
		t.Errorf("unusable default: %+v", c)
	}
}
