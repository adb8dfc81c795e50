package asterisk

import (
	"errors"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	good := map[string]string{
		"PJSIP/2099":           "PJSIP/2099",
		"pjsip/2099":           "PJSIP/2099",
		"PJSIP/2099@srv12":     "PJSIP/2099@srv12",
		"PJSIP/+4930123@pstn":  "PJSIP/+4930123@pstn",
		"Local/201@targets":    "Local/201@targets",
		"Local/*72#@features":  "Local/*72#@features",
		"PJSIP/77721402T":      "PJSIP/77721402T",
		"PJSIP/1000@trunk-a.b": "PJSIP/1000@trunk-a.b",
	}
	for in, want := range good {
		ep, err := parseEndpoint(in)
		if err != nil {
			t.Errorf("parseEndpoint(%q): %v", in, err)
			continue
		}
		if ep.String() != want {
			t.Errorf("parseEndpoint(%q) = %q, want %q", in, ep.String(), want)
		}
	}
	bad := []string{
		"", "2099", "PJSIP/", "PJSIP/1000/evil", "PJSIP/x&PJSIP/y", "PJSIP/1000&PJSIP/2000",
		"Local/1000@other-context,evil", "PJSIP/1000@a@b", "PJSIP/1000@", "Local/1000",
		"PJSIP/10\x0000", "PJSIP/1000\r\nX: y", "PJSIP/1+000", "PJSIP/+", "PJSIP/T", "PJSIP/10T0",
		"SIP/1000", "DAHDI/g1/1000", "PJSIP/alice", "PJSIP/1000;2", "PJSIP/1000,30", "Local/1000@ctx/n",
		"PJSIP/1000@srv 12", "PJSIP/1000@srv$(SHELL)", "PJSIP/12345678901234567890123456789012345678901",
	}
	for _, in := range bad {
		if _, err := parseEndpoint(in); !errors.Is(err, ErrUnsafe) {
			t.Errorf("parseEndpoint(%q) = %v, want ErrUnsafe", in, err)
		}
	}
}

func TestCallerID(t *testing.T) {
	cases := []struct{ num, name, want string }{
		{"", "", ""},
		{"113999", "", "113999"},
		{"+4930100100", "ACME", `"ACME" <+4930100100>`},
		{"2124", `Evil" <666>`, `"Evil 666" <2124>`},
		{"2124", "Line\r\nbreak", `"Linebreak" <2124>`},
	}
	for _, c := range cases {
		got, err := callerID(c.num, c.name)
		if err != nil || got != c.want {
			t.Errorf("callerID(%q, %q) = %q, %v; want %q", c.num, c.name, got, err, c.want)
		}
	}
	for _, num := range []string{"1000/evil", "100>0", "1000\x00", "abc", `1"2`} {
		if _, err := callerID(num, "x"); !errors.Is(err, ErrUnsafe) {
			t.Errorf("callerID(%q) = %v, want ErrUnsafe", num, err)
		}
	}
}

func TestValidDigits(t *testing.T) {
	for _, s := range []string{"0", "1000", "*72", "#", "+49301", "77721402T"} {
		if !validDigits(s) {
			t.Errorf("validDigits(%q) = false", s)
		}
	}
	for _, s := range []string{"", "T", "+", "1T2", "10+0", "1000@ctx", "1000/x", "a", "1 0", "1\n"} {
		if validDigits(s) {
			t.Errorf("validDigits(%q) = true", s)
		}
	}
}

func TestPJSIPEndpoint(t *testing.T) {
	cases := map[string]string{
		"PJSIP/sipp-00000000":             "sipp",
		"PJSIP/ast1-00000000":             "ast1",
		"PJSIP/trunk-a-0000000a":          "trunk-a",
		"Local/101@targets-00000000;1":    "",
		"PJSIP/":                          "",
		"PJSIP/-00000000":                 "",
		"Local/2099@from-sipp-00000000;2": "",
	}
	for in, want := range cases {
		if got := pjsipEndpoint(in); got != want {
			t.Errorf("pjsipEndpoint(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"PJSIP/2099", "Local/201@targets", "PJSIP/x&PJSIP/y", "PJSIP/1@a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ep, err := parseEndpoint(s)
		if err != nil {
			return
		}
		// Whatever passes has no character Asterisk gives a meaning to.
		out := ep.String()
		for i := 0; i < len(out); i++ {
			switch out[i] {
			case '&', ',', '|', ';', '(', ')', '$', '{', '}', '[', ']', '"', '\'', '\\', ' ', '\r', '\n', 0:
				t.Fatalf("parseEndpoint(%q) let %q through", s, out[i])
			}
		}
	})
}
