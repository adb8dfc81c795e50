package accounting_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/callctl/callctl/controller/accounting"
)

func TestLegsRoundTripThroughJSON(t *testing.T) {
	var l accounting.Legs
	l.Add(accounting.Leg{Server: "srv11", Org: "acme", Kind: accounting.PSTNIn})
	l.Add(accounting.Leg{Server: "srv12", Org: "acme", Kind: accounting.TrunkIn, Remote: true})
	b, err := json.Marshal(l.Slice())
	if err != nil {
		t.Fatal(err)
	}
	var back []accounting.Leg
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if len(back) != 2 || back[0] != l.At(0) || back[1] != l.At(1) {
		t.Errorf("round trip: %+v", back)
	}
	if err := json.Unmarshal([]byte(`[{"kind":"sideways"}]`), &back); err == nil {
		t.Error("an unknown leg kind decoded")
	}
	if l.Count("srv12") != 1 || l.String() != "srv11:pstn-in(acme), srv12:trunk-in(acme)[counted there]" {
		t.Errorf("legs %s", l)
	}
}

func TestLimitError(t *testing.T) {
	err := error(&accounting.LimitError{Scope: "server", Name: "srv11", Limit: 30})
	if !errors.Is(err, accounting.ErrLimit) || err.Error() != "server srv11 is at its channel limit of 30" {
		t.Errorf("%v", err)
	}
}

// A call may count any number of legs: none is dropped, and a copy of a
// decision's legs that grows does not change the original.
func TestLegsKeepEveryLeg(t *testing.T) {
	var l accounting.Legs
	kinds := []accounting.Kind{accounting.PSTNIn, accounting.TrunkOut, accounting.TrunkIn, accounting.PSTNOut, accounting.TrunkOut}
	for i, k := range kinds {
		l.Add(accounting.Leg{Server: "srv1" + string(rune('1'+i%2)), Org: "acme", Kind: k})
	}
	if l.Len() != 5 {
		t.Fatalf("%d legs kept of 5 added", l.Len())
	}
	for i, k := range kinds {
		if l.At(i).Kind != k {
			t.Errorf("leg %d is %s, want %s", i, l.At(i).Kind, k)
		}
	}
	if got := l.Slice(); len(got) != 5 || got[3].Kind != accounting.PSTNOut || got[4].Kind != accounting.TrunkOut {
		t.Errorf("slice %+v", got)
	}
	if l.Count("srv11") != 3 || l.Count("srv12") != 2 {
		t.Errorf("srv11 counts %d, srv12 %d; want 3 and 2", l.Count("srv11"), l.Count("srv12"))
	}
	if want := "srv11:pstn-in(acme), srv12:trunk-out(acme), srv11:trunk-in(acme), srv12:pstn-out(acme), srv11:trunk-out(acme)"; l.String() != want {
		t.Errorf("legs %s", l)
	}
	c := l
	c.Add(accounting.Leg{Server: "srv13", Kind: accounting.PSTNIn})
	if l.Len() != 5 || c.Len() != 6 || c.At(5).Server != "srv13" || l.Count("srv13") != 0 {
		t.Errorf("a copy's leg changed the original: %s / %s", l, c)
	}
}
