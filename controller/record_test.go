package controller_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/callctl/callctl/controller"
)

// A transferred call's record carries its link as one object; records of
// calls not transferred carry none; records written before the link existed
// ("transfer": "blind") still read; a transfer that is neither is an error,
// not a silently empty link.
func TestRecordTransferJSON(t *testing.T) {
	rec := controller.Record{ID: "r2", CallID: "c1", Transfer: "attended", TransferFrom: "r1", TransferBy: "3999",
		Reason: "nobody answered"}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.Contains(s, `"transfer":{"kind":"attended","from_record":"r1","by":"3999"}`) || !strings.Contains(s, `"record_id":"r2"`) ||
		!strings.Contains(s, `"reason":"nobody answered"`) {
		t.Errorf("JSON %s", s)
	}
	var back controller.Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.ID != "r2" || back.CallID != "c1" || back.Transfer != "attended" || back.TransferFrom != "r1" || back.TransferBy != "3999" {
		t.Errorf("read back %+v", back)
	}

	plain, err := json.Marshal(controller.Record{CallID: "c2"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(plain), "transfer") {
		t.Errorf("a call not transferred carries a transfer: %s", plain)
	}

	old := controller.Record{TransferFrom: "stale"}
	if err := json.Unmarshal([]byte(`{"call_id":"c3","transfer":"blind","hangup_cause":"NORMAL_CLEARING"}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.CallID != "c3" || old.Transfer != "blind" || old.TransferFrom != "" || old.HangupCause != "NORMAL_CLEARING" {
		t.Errorf("an older record read as %+v", old)
	}

	for _, bad := range []string{`{"transfer":42}`, `{"transfer":["blind"]}`, `{"transfer":{"kind":7}}`, `{"call_id":`} {
		var r controller.Record
		if err := json.Unmarshal([]byte(bad), &r); err == nil {
			t.Errorf("%s read as %+v, want an error", bad, r)
		}
	}
}
