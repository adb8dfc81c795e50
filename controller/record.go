package controller

import (
	"context"
	"time"

	"github.com/callctl/callctl/controller/accounting"
	"github.com/callctl/callctl/controller/hunt"
)

// Record is the one record written per call (SPEC §8).
type Record struct {
	CallID      string            `json:"call_id"`
	Node        string            `json:"node"`
	Server      string            `json:"server"`
	Origin      string            `json:"origin"`
	Caller      string            `json:"caller"`
	CallerName  string            `json:"caller_name,omitempty"`
	Dialed      string            `json:"dialed"`
	Route       string            `json:"route"`
	Org         string            `json:"org,omitempty"`
	CallerOrg   string            `json:"caller_org,omitempty"`
	Billing     string            `json:"billing,omitempty"`
	External    string            `json:"external,omitempty"`
	CallerID    string            `json:"caller_id_presented,omitempty"`
	Withheld    bool              `json:"caller_withheld,omitempty"`
	Attempts    []hunt.Attempt    `json:"attempts"`
	Legs        []accounting.Leg  `json:"counted_legs"`
	Start       time.Time         `json:"start"`
	Answer      *time.Time        `json:"answer,omitempty"`
	End         time.Time         `json:"end"`
	HangupCause string            `json:"hangup_cause"`
	Reason      string            `json:"reason,omitempty"`
	Transfer    string            `json:"transfer,omitempty"`
	PlanVersion string            `json:"plan_version"`
	Answered    string            `json:"answered_by,omitempty"`
	Extra       map[string]string `json:"extra,omitempty"`
}

// RecordSink stores finished call records.
type RecordSink interface {
	Write(ctx context.Context, r *Record) error
}
