package provision_test

import (
	"testing"

	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/examples"
)

// FuzzLoad feeds arbitrary documents to the loader: it must never panic or
// hang, and must either return a plan or say why not.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(base))
	f.Add(examples.Lab)
	f.Add([]byte("servers: [{name: a, kind: freeswitch, prefix: '1'}]"))
	f.Add([]byte("orgs:\n  - id: a\n    sip_numbers: [{number: '1', next: '1'}, {number: '2', next: '1'}]\n"))
	f.Add([]byte("a: &a [*a, *a]"))
	f.Add([]byte("\t- :"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, probs, err := provision.Load("fuzz.yaml", data)
		switch {
		case p == nil && err == nil:
			t.Fatal("no plan and no error")
		case p != nil && probs.Errors() > 0:
			t.Fatalf("plan returned with %d errors", probs.Errors())
		case err != nil && len(probs) == 0:
			if _, ok := err.(*provision.InvalidError); ok {
				t.Fatal("invalid plan without problems")
			}
		}
		for _, pr := range probs {
			_ = pr.String()
		}
	})
}

// FuzzValidDialed checks the dialed-string gate: whatever it accepts is made
// only of 0-9 * # +, a leading +, and a final T.
func FuzzValidDialed(f *testing.F) {
	for _, s := range []string{"1201", "77721402T", "+4930", "*98", "1000,user/evil", "{x=y}1000", "T", "++1", "1\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !provision.ValidDialed(s) {
			return
		}
		if len(s) == 0 || len(s) > provision.MaxDialed {
			t.Fatalf("accepted %q of length %d", s, len(s))
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case c >= '0' && c <= '9', c == '*', c == '#':
			case c == '+' && i == 0:
			case c == 'T' && i == len(s)-1 && i > 0:
			default:
				t.Fatalf("accepted %q with %q at %d", s, c, i)
			}
		}
	})
}
