package routing_test

import (
	"strings"
	"testing"

	"github.com/callctl/callctl/controller/routing"
)

// FuzzRoute routes arbitrary dialed strings from every kind of caller of the
// lab plan: routing must never panic, and whatever it dials must be an
// endpoint from the plan or a trunk filled with digits only.
func FuzzRoute(f *testing.F) {
	r := labRouter(f)
	for _, s := range []string{"122099", "1201", "8008003", "77721402T", "00442079460000", "+4930555001", "113999",
		"1000,user/evil", "1000|loopback/x", "{x=y}1000", "1000 &park", "1000\n", "T", "0", "00", "+", "12", "11T"} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(3))
	}
	callers := []routing.Request{
		{Server: "srv11", Caller: "3999"},
		{Server: "srv12", Caller: "2099"},
		{Server: "srv11", Caller: "124"},
		{Server: "srv11", Caller: "300"},
		{Server: "srv11", Source: "127.0.0.99", Caller: "+4915112345678"},
		{Server: "srv12", Source: "srv11", Caller: "113999", MarkOrg: "acme"},
		{Server: "srv11", Caller: "1100"},
	}
	f.Fuzz(func(t *testing.T, dialed string, who uint8) {
		req := callers[int(who)%len(callers)]
		req.Dialed = dialed
		d := r.Route(&req)
		if d.Kind == routing.Rejected {
			if d.Cause == routing.CauseNone || d.Reason == "" {
				t.Fatalf("%q rejected without cause or reason", dialed)
			}
			return
		}
		for _, m := range d.Members() {
			ds := m.DialString()
			if ds == "" {
				t.Fatalf("%q: member %s has no dial string", dialed, m.Number)
			}
			if m.Trunk != nil {
				for i := 0; i < len(m.Dest); i++ {
					c := m.Dest[i]
					if !(c >= '0' && c <= '9' || c == '+' || c == '*' || c == '#' || c == 'T' && i == len(m.Dest)-1) {
						t.Fatalf("%q: trunk destination %q carries %q", dialed, m.Dest, c)
					}
				}
			}
			if strings.ContainsAny(ds, ",|{}[] &\n\r\t'\"$") {
				t.Fatalf("%q: dial string %q carries syntax", dialed, ds)
			}
		}
	})
}
