package control

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/callctl/callctl/controller/provision"
)

// Assignment states (SPEC §7): requested → active (both confirmed) → reset;
// a request not confirmed by both sides before it expires lapses.
const (
	Requested = "requested"
	Active    = "active"
	Reset     = "reset"
	Lapsed    = "lapsed"
)

// DefaultExpiry is how long a request waits for both confirmations.
const DefaultExpiry = 7 * 24 * time.Hour

// Assignment is one request to use a number owned by org Owner in the PBX
// of org To (seed 001).
type Assignment struct {
	ID     string `json:"id"`
	Number string `json:"number"`
	Owner  string `json:"owner"`
	To     string `json:"to"`
	// Destination is where the number rings in To's PBX once active;
	// OwnerDestination where it rang in the owner's before (restored by a
	// reset).
	Destination      string    `json:"destination,omitempty"`
	OwnerDestination string    `json:"owner_destination,omitempty"`
	State            string    `json:"state"`
	Requested        time.Time `json:"requested"`
	RequestedBy      string    `json:"requested_by"`
	Expires          time.Time `json:"expires"`
	// Confirmed holds each side's confirmation, by org.
	Confirmed map[string]Confirmation `json:"confirmed,omitempty"`
	Ended     *time.Time              `json:"ended,omitempty"`
	EndedBy   string                  `json:"ended_by,omitempty"`
	// Tokens holds, by org, the hash of the confirmation token sent to that
	// org; cleared once the assignment is no longer requested.
	Tokens map[string]string `json:"tokens,omitempty"`
}

// Confirmation is one side's confirmation.
type Confirmation struct {
	By string    `json:"by"`
	At time.Time `json:"at"`
}

func (a Assignment) clone() Assignment {
	c := a
	c.Confirmed = make(map[string]Confirmation, len(a.Confirmed))
	for k, v := range a.Confirmed {
		c.Confirmed[k] = v
	}
	c.Tokens = make(map[string]string, len(a.Tokens))
	for k, v := range a.Tokens {
		c.Tokens[k] = v
	}
	if a.Ended != nil {
		t := *a.Ended
		c.Ended = &t
	}
	return c
}

// Concerns says whether org is a side of the assignment.
func (a *Assignment) Concerns(org string) bool { return a.Owner == org || a.To == org }

// Open says the assignment is requested or active.
func (a *Assignment) Open() bool { return a.State == Requested || a.State == Active }

// ErrNotFound is returned for an assignment (or object) that does not
// exist, or that the asker may not see.
var ErrNotFound = errors.New("not found")

// ErrBadToken refuses a confirmation whose token is not the one sent to the
// confirming org.
var ErrBadToken = errors.New("the confirmation token is not the one sent to this org")

// InputError refuses a request that cannot be carried out as asked.
type InputError struct{ Reason string }

func (e *InputError) Error() string { return e.Reason }

func inputf(format string, args ...any) error {
	return &InputError{Reason: fmt.Sprintf(format, args...)}
}

func newToken() (plain, hash string) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	plain = base64.RawURLEncoding.EncodeToString(b[:])
	return plain, hashToken(plain)
}

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func findNumber(doc *provision.Document, n string) *provision.Number {
	for i := range doc.Numbers {
		if doc.Numbers[i].Number == n {
			return &doc.Numbers[i]
		}
	}
	return nil
}

func findOrg(doc *provision.Document, id string) *provision.Org {
	for i := range doc.Orgs {
		if doc.Orgs[i].ID == id {
			return &doc.Orgs[i]
		}
	}
	return nil
}

// Find returns the assignment id in the draft.
func (d *Draft) Find(id string) *Assignment {
	for i := range d.Assignments {
		if d.Assignments[i].ID == id {
			return &d.Assignments[i]
		}
	}
	return nil
}

// Request asks that owner's number be used in to's PBX, ringing there at
// destination once active (optional; to's admin may set it when
// confirming). Each side gets its confirmation token through its webhook.
func (d *Draft) Request(owner, number, to, destination string, expiry time.Duration) (*Assignment, error) {
	n := findNumber(d.Doc, number)
	if n == nil || n.Owner != owner {
		return nil, fmt.Errorf("number %s of org %s: %w", number, owner, ErrNotFound)
	}
	if to == owner {
		return nil, inputf("to: the number is already org %s's", owner)
	}
	ownerOrg, toOrg := findOrg(d.Doc, owner), findOrg(d.Doc, to)
	if toOrg == nil {
		return nil, inputf("to: no org %q", to)
	}
	if n.AssignedTo != "" && n.Assignment == provision.AssignActive {
		return nil, &ConflictError{Reason: fmt.Sprintf("number %s is already in org %s's PBX: reset that assignment first", number, n.AssignedTo)}
	}
	for i := range d.Assignments {
		if a := &d.Assignments[i]; a.Number == number && a.Open() && !d.expired(a) {
			return nil, &ConflictError{Reason: fmt.Sprintf("number %s already has assignment %s (%s)", number, a.ID, a.State)}
		}
	}
	for _, o := range []*provision.Org{ownerOrg, toOrg} {
		if o.Webhook == "" {
			return nil, inputf("org %s has no webhook to receive its confirmation token: a cluster admin sets one (orgs[].webhook)", o.ID)
		}
	}
	if expiry <= 0 {
		expiry = DefaultExpiry
	}
	a := Assignment{ID: newID(), Number: number, Owner: owner, To: to, Destination: destination, State: Requested,
		Requested: d.Now, RequestedBy: d.actor.String(), Expires: d.Now.Add(expiry),
		Confirmed: map[string]Confirmation{}, Tokens: map[string]string{}}
	for _, o := range []*provision.Org{ownerOrg, toOrg} {
		plain, hash := newToken()
		a.Tokens[o.ID] = hash
		d.Notify(Notice{Org: o.ID, URL: o.Webhook, Event: "assignment.requested", Assignment: a.ID, Number: number,
			Owner: owner, To: to, Token: plain, Expires: a.Expires})
	}
	d.Assignments = append(d.Assignments, a)
	d.Audit("assignment.requested", "number "+number, fmt.Sprintf("assignment %s: org %s's number into org %s's PBX, expires %s",
		a.ID, owner, to, a.Expires.Format(time.RFC3339)), owner, to)
	return &d.Assignments[len(d.Assignments)-1], nil
}

func (d *Draft) expired(a *Assignment) bool { return a.State == Requested && !d.Now.Before(a.Expires) }

// Confirm records org's confirmation of assignment id with the token sent
// to org; the second confirmation makes the assignment active: from this
// change on the number is in the other org's PBX. destination (optional,
// the receiving org only) says where it rings there.
func (d *Draft) Confirm(id, org, token, destination string) (*Assignment, error) {
	a := d.Find(id)
	if a == nil || !a.Concerns(org) {
		return nil, fmt.Errorf("assignment %s: %w", id, ErrNotFound)
	}
	if d.expired(a) {
		d.lapse(a)
		return nil, &ConflictError{Reason: fmt.Sprintf("assignment %s expired at %s", id, a.Expires.Format(time.RFC3339))}
	}
	if a.State != Requested {
		return nil, &ConflictError{Reason: fmt.Sprintf("assignment %s is %s, not waiting for confirmation", id, a.State)}
	}
	want := a.Tokens[org]
	if want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(hashToken(token))) != 1 {
		return nil, ErrBadToken
	}
	if destination != "" {
		if org != a.To {
			return nil, inputf("destination: only org %s, whose PBX the number goes into, sets where it rings", a.To)
		}
		a.Destination = destination
	}
	if _, done := a.Confirmed[org]; !done {
		a.Confirmed[org] = Confirmation{By: d.actor.String(), At: d.Now}
		d.Audit("assignment.confirmed", "number "+a.Number, fmt.Sprintf("assignment %s confirmed by org %s", a.ID, org), a.Owner, a.To)
	}
	if len(a.Confirmed) < 2 {
		return a, nil
	}
	n := findNumber(d.Doc, a.Number)
	if n == nil || n.Owner != a.Owner {
		return nil, &ConflictError{Reason: fmt.Sprintf("number %s is no longer org %s's", a.Number, a.Owner)}
	}
	a.OwnerDestination = n.Destination
	n.AssignedTo, n.Assignment, n.Destination = a.To, provision.AssignActive, a.Destination
	a.State, a.Tokens = Active, nil
	d.Audit("assignment.active", "number "+a.Number, fmt.Sprintf("assignment %s active: the number is in org %s's PBX (destination %q), billed to org %s",
		a.ID, a.To, a.Destination, a.Owner), a.Owner, a.To)
	d.notifyBoth(a, "assignment.active")
	return a, nil
}

// ResetAssignment ends assignment id (either side, or a cluster admin when
// org is ""): a request is withdrawn; an active assignment takes the number
// out of the other org's PBX, where nothing may present it any more, and
// back to where it rang in the owner's.
func (d *Draft) ResetAssignment(id, org string) (*Assignment, error) {
	a := d.Find(id)
	if a == nil || (org != "" && !a.Concerns(org)) {
		return nil, fmt.Errorf("assignment %s: %w", id, ErrNotFound)
	}
	if !a.Open() {
		return nil, &ConflictError{Reason: fmt.Sprintf("assignment %s is %s already", id, a.State)}
	}
	detail := fmt.Sprintf("assignment %s reset", a.ID)
	if a.State == Active {
		if n := findNumber(d.Doc, a.Number); n != nil && n.AssignedTo == a.To {
			n.AssignedTo, n.Assignment, n.Destination = "", "", ""
			if o := findOrg(d.Doc, a.Owner); o != nil && a.OwnerDestination != "" && hasTarget(o, a.OwnerDestination) {
				n.Destination = a.OwnerDestination
			}
			if cleared := unpresent(findOrg(d.Doc, a.To), a.Number); len(cleared) > 0 {
				detail += "; org " + a.To + " no longer presents it: " + fmt.Sprint(cleared)
			}
		}
	}
	now := d.Now
	a.State, a.Tokens, a.Ended, a.EndedBy = Reset, nil, &now, d.actor.String()
	d.Audit("assignment.reset", "number "+a.Number, detail, a.Owner, a.To)
	d.notifyBoth(a, "assignment.reset")
	return a, nil
}

// lapse ends a request that was not confirmed by both sides in time.
func (d *Draft) lapse(a *Assignment) {
	now := d.Now
	a.State, a.Tokens, a.Ended, a.EndedBy = Lapsed, nil, &now, "expiry"
	d.Audit("assignment.lapsed", "number "+a.Number, fmt.Sprintf("assignment %s lapsed: not confirmed by both orgs before %s",
		a.ID, a.Expires.Format(time.RFC3339)), a.Owner, a.To)
	d.notifyBoth(a, "assignment.lapsed")
}

// LapseExpired lapses every request past its expiry; it says how many.
func (d *Draft) LapseExpired() int {
	n := 0
	for i := range d.Assignments {
		if a := &d.Assignments[i]; d.expired(a) {
			d.lapse(a)
			n++
		}
	}
	return n
}

func (d *Draft) notifyBoth(a *Assignment, event string) {
	for _, id := range []string{a.Owner, a.To} {
		if o := findOrg(d.Doc, id); o != nil && o.Webhook != "" {
			d.Notify(Notice{Org: id, URL: o.Webhook, Event: event, Assignment: a.ID, Number: a.Number,
				Owner: a.Owner, To: a.To, Expires: a.Expires})
		}
	}
}

// hasTarget says whether s is something a number can ring in org o.
func hasTarget(o *provision.Org, s string) bool {
	for _, u := range o.Users {
		if u.Extension == s {
			return true
		}
	}
	for _, n := range o.SIPNumbers {
		if n.Number == s {
			return true
		}
	}
	for _, n := range o.ServiceNumbers {
		if n.Number == s {
			return true
		}
	}
	return false
}

// unpresent removes number from what org o presents as caller ID (its
// default, its users' numbers, its caller-ID rules); it lists what changed.
func unpresent(o *provision.Org, number string) []string {
	if o == nil {
		return nil
	}
	var out []string
	if o.DefaultNumber == number {
		o.DefaultNumber = ""
		out = append(out, "default_outgoing_number")
	}
	for i := range o.Users {
		if o.Users[i].OutgoingNumber == number {
			o.Users[i].OutgoingNumber = ""
			out = append(out, "user "+o.Users[i].Extension)
		}
	}
	before := len(o.CallerID.Rules)
	o.CallerID.Rules = slices.DeleteFunc(o.CallerID.Rules, func(r provision.CallerIDRule) bool { return r.Number == number })
	if n := before - len(o.CallerID.Rules); n > 0 {
		out = append(out, fmt.Sprintf("%d caller-ID rules", n))
	}
	return out
}
