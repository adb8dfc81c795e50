package freeswitch

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/callctl/callctl/controller"
)

const legID = "0f5b0071-121d-4e81-818b-897d167176de"

func TestValidateEndpoint(t *testing.T) {
	good := []string{
		"user/1000", "user/1000@example.com", "user/+4930100", "user/*72",
		"loopback/101/targets", "loopback/201", "loopback/101/targets/XML",
		"sofia/gateway/srv12/2099", "sofia/gateway/pstn/+4930555123", "sofia/gateway/srv12/77731201T",
		"sofia/internal/phone@127.0.0.1:5091", "sofia/external/0301234@carrier.example",
	}
	for _, s := range good {
		if err := ValidateEndpoint(s); err != nil {
			t.Errorf("%q refused: %v", s, err)
		}
	}
	bad := []string{
		"", "1000", "user/", "user/1000,user/evil", "user/1000|loopback/x", "{x=y}user/1000",
		"user/{x=y}1000", "user/1000 &park", "user/1000\n", "user/10\r\n00", "user/1000@ex ample",
		"loopback/1000|loopback/x", "loopback/abc/targets", "loopback/101/tar gets", "loopback/101/a/b/c",
		"sofia/gateway/srv12/2099,user/1", "sofia/gateway/srv12/20 99", "sofia/gateway/sr'v/1",
		"sofia/gateway/srv12/${system}", "sofia/gateway/srv12/T", "sofia/gateway/srv12/77T1", "sofia/gateway/srv12/1TT",
		"sofia/internal/a@b:99999", "sofia/internal/a,b@h",
		"sofia/internal/a@h/x", "sofia/internal/[a]@h", "error/user_busy", "lua/x.lua",
		"user/1000@" + strings.Repeat("a", 300),
	}
	for _, s := range bad {
		if err := ValidateEndpoint(s); !errors.Is(err, ErrUnsafeInput) {
			t.Errorf("%q accepted (%v)", s, err)
		}
	}
}

func TestBridgeArg(t *testing.T) {
	arg, dropped, err := BridgeArg(controller.DialSpec{LegID: legID, Target: "sofia/gateway/srv12/2099",
		CallerIDNumber: "113999", CallerIDName: "Aiko Sato", Timeout: 1500 * time.Millisecond, MarkOrg: "acme", Trunk: true})
	if err != nil || dropped != "" {
		t.Fatal(err, dropped)
	}
	// originate_timeout is the backstop past callctl's own 1.5 s ring timer.
	want := "{origination_uuid=" + legID + ",callctl_leg=true,originate_timeout=4,origination_caller_id_number=113999," +
		"origination_caller_id_name=Aiko Sato,sip_h_X-Callctl-Org=acme}sofia/gateway/srv12/2099"
	if arg != want {
		t.Errorf("got  %s\nwant %s", arg, want)
	}
	// The org mark goes on trunk calls only.
	arg, _, _ = BridgeArg(controller.DialSpec{LegID: legID, Target: "user/1000", MarkOrg: "acme"})
	if strings.Contains(arg, "X-Callctl-Org") || arg != "{origination_uuid="+legID+",callctl_leg=true}user/1000" {
		t.Errorf("local call: %s", arg)
	}
	// A withheld caller is set anonymous explicitly, with the privacy flags:
	// nothing of the caller's own channel shows.
	arg, _, _ = BridgeArg(controller.DialSpec{LegID: legID, Target: "user/1000", Withheld: true})
	if arg != "{origination_uuid="+legID+",callctl_leg=true,origination_caller_id_number=anonymous,"+
		"origination_caller_id_name=Anonymous,origination_privacy=hide_name:hide_number}user/1000" {
		t.Errorf("withheld caller: %s", arg)
	}
}

// Network input placed in every field of a dial: nothing may add a leg, a
// variable, an application or a line.
func TestBridgeArgInjection(t *testing.T) {
	injections := []string{"1000,user/evil", "1000|loopback/x", "{x=y}1000", "1000 &park", "1000\nexecute-app-name: hangup",
		"1000\r\n\r\napi hupall", "${system(reboot)}", "1000'}user/evil", "[x=y]1000", "1000^^:x"}
	for _, in := range injections {
		if _, _, err := BridgeArg(controller.DialSpec{LegID: legID, Target: "user/" + in}); !errors.Is(err, ErrUnsafeInput) {
			t.Errorf("target user/%q accepted", in)
		}
		if _, _, err := BridgeArg(controller.DialSpec{LegID: legID, Target: "sofia/gateway/pstn/" + in}); !errors.Is(err, ErrUnsafeInput) {
			t.Errorf("target gateway %q accepted", in)
		}
		if _, _, err := BridgeArg(controller.DialSpec{LegID: in, Target: "user/1000"}); !errors.Is(err, ErrUnsafeInput) {
			t.Errorf("leg id %q accepted", in)
		}
		if _, _, err := BridgeArg(controller.DialSpec{LegID: legID, Target: "sofia/gateway/srv12/1", Trunk: true, MarkOrg: in}); !errors.Is(err, ErrUnsafeInput) {
			t.Errorf("org mark %q accepted", in)
		}
		// A caller number that is not digits is left out, never passed on.
		arg, dropped, err := BridgeArg(controller.DialSpec{LegID: legID, Target: "user/1000", CallerIDNumber: in})
		if err != nil || dropped != in || strings.Contains(arg, "caller_id_number") {
			t.Errorf("caller number %q: arg %q dropped %q err %v", in, arg, dropped, err)
		}
		// A caller name keeps only harmless characters.
		arg, _, err = BridgeArg(controller.DialSpec{LegID: legID, Target: "user/1000", CallerIDName: in})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(arg, "{") != 1 || strings.Count(arg, "}") != 1 || strings.Count(arg, ",") > 2 ||
			strings.ContainsAny(arg, "|\n\r$'[]^&") || !strings.HasSuffix(arg, "}user/1000") {
			t.Errorf("caller name %q gave %q", in, arg)
		}
	}
}

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{
		"Aiko Sato":            "Aiko Sato",
		"  Müller,  Jörg  ":    "Müller Jörg",
		"佐藤 愛子":                "佐藤 愛子",
		"O'Brien {x=y}":        "OBrien xy",
		"a\x00b\nc\td":         "abc d",
		"${system(rm)}":        "system(rm)",
		"Dr. A-B_C (Sales)/+1": "Dr. A-B_C (Sales)/+1",
		"\xff\xfeok":           "ok",
	} {
		if got := SanitizeName(in); got != want {
			t.Errorf("SanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
	if n := len([]rune(SanitizeName(strings.Repeat("x", 500)))); n != 64 {
		t.Errorf("long name kept %d runes", n)
	}
}

func TestContactArg(t *testing.T) {
	for _, tc := range []struct {
		ep, dom, want string
		user          bool
	}{
		{"user/1000", "", "1000", true},
		{"user/1000", "example.com", "1000@example.com", true},
		{"user/1000@other.org", "example.com", "1000@other.org", true},
		{"loopback/101/targets", "", "", false},
		{"sofia/gateway/srv12/2099", "", "", false},
	} {
		got, user, err := contactArg(tc.ep, tc.dom)
		if err != nil || got != tc.want || user != tc.user {
			t.Errorf("contactArg(%q, %q) = %q %v %v", tc.ep, tc.dom, got, user, err)
		}
	}
	for _, ep := range []string{"user/1000 1001", "user/1000\nx", "user/x@y"} {
		if _, _, err := contactArg(ep, ""); err == nil {
			t.Errorf("contactArg(%q) accepted", ep)
		}
	}
}
