package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/callctl/callctl/controller/accounting"
	"github.com/callctl/callctl/controller/hunt"
)

// Record is the one record written per call (SPEC §8). A transferred
// call's channel gets a record of its own (with the same call id), linked to
// the record of the call it came from.
type Record struct {
	// ID names this record; a transferred call's record links to it.
	ID          string           `json:"record_id,omitempty"`
	CallID      string           `json:"call_id"`
	Node        string           `json:"node"`
	Server      string           `json:"server"`
	Origin      string           `json:"origin"`
	Caller      string           `json:"caller"`
	CallerName  string           `json:"caller_name,omitempty"`
	Dialed      string           `json:"dialed"`
	Route       string           `json:"route"`
	Org         string           `json:"org,omitempty"`
	CallerOrg   string           `json:"caller_org,omitempty"`
	Billing     string           `json:"billing,omitempty"`
	External    string           `json:"external,omitempty"`
	CallerID    string           `json:"caller_id_presented,omitempty"`
	Withheld    bool             `json:"caller_withheld,omitempty"`
	Attempts    []hunt.Attempt   `json:"attempts"`
	Legs        []accounting.Leg `json:"counted_legs"`
	Start       time.Time        `json:"start"`
	Answer      *time.Time       `json:"answer,omitempty"`
	End         time.Time        `json:"end"`
	HangupCause string           `json:"hangup_cause"`
	Reason      string           `json:"reason,omitempty"`
	// Transfer is the kind of transfer that made this call (blind,
	// attended); TransferFrom the record of the call it came from, and
	// TransferBy the extension that transferred it, when known. The JSON
	// carries them together: "transfer": {"kind", "from_record", "by"}.
	Transfer     string `json:"-"`
	TransferFrom string `json:"-"`
	TransferBy   string `json:"-"`
	// HandedOff: the call was handed to the media server's own dialplan
	// (a feature code, park, voicemail) and stayed counted until it ended.
	HandedOff   bool              `json:"handed_off,omitempty"`
	PlanVersion string            `json:"plan_version"`
	Answered    string            `json:"answered_by,omitempty"`
	Extra       map[string]string `json:"extra,omitempty"`
}

// RecordSink stores finished call records.
type RecordSink interface {
	Write(ctx context.Context, r *Record) error
}

// TransferLink is how a record's JSON says where a transferred call came
// from (SPEC §4).
type TransferLink struct {
	Kind       string `json:"kind"`
	FromRecord string `json:"from_record,omitempty"`
	By         string `json:"by,omitempty"`
}

// recordFields is Record without its methods, for encoding it.
type recordFields Record

// MarshalJSON writes the transfer as one object, absent for a call that was
// not transferred.
func (r Record) MarshalJSON() ([]byte, error) {
	var link *TransferLink
	if r.Transfer != "" {
		link = &TransferLink{Kind: r.Transfer, FromRecord: r.TransferFrom, By: r.TransferBy}
	}
	return json.Marshal(struct {
		recordFields
		Transfer *TransferLink `json:"transfer,omitempty"`
	}{recordFields(r), link})
}

// UnmarshalJSON reads the transfer object, and the bare kind that records
// written before the link existed carry ("transfer": "blind").
func (r *Record) UnmarshalJSON(b []byte) error {
	var v struct {
		*recordFields
		Transfer json.RawMessage `json:"transfer"`
	}
	v.recordFields = (*recordFields)(r)
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	r.Transfer, r.TransferFrom, r.TransferBy = "", "", ""
	if len(v.Transfer) == 0 || string(v.Transfer) == "null" {
		return nil
	}
	if v.Transfer[0] == '"' {
		return json.Unmarshal(v.Transfer, &r.Transfer)
	}
	var link TransferLink
	if err := json.Unmarshal(v.Transfer, &link); err != nil {
		return fmt.Errorf("record transfer: %w", err)
	}
	r.Transfer, r.TransferFrom, r.TransferBy = link.Kind, link.FromRecord, link.By
	return nil
}
