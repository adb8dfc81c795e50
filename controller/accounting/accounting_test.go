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
