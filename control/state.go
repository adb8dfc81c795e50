// Package control keeps the plan a callctl cluster runs and the number
// assignments in flight (SPEC §7, §9, §10). Every change, from the API or
// from a node's plan file, is a whole plan validated before it is committed
// to the store, with compare-and-set on the store's revision: two admins or
// two nodes never overwrite each other, and a change based on an old
// revision is refused (409). Every node follows the store and switches to a
// new revision within a second.
//
// What the plan file and the store each own: the file seeds the store when
// the store has no plan; from then on the store is authoritative. A node
// applies an edit of its own plan file only when nothing else changed the
// plan since that file was last in step with it; otherwise the edit is
// refused and reported (log, /readyz, metric), never silently merged or
// reverted. So a restart, or a file edited on one node, never undoes a
// change made through the API.
package control

import (
	"context"
	"errors"
	"time"
)

// State is what the store keeps: the plan document with its revision, the
// number assignments, and where each node's plan file stands.
type State struct {
	// Revision grows by one with every commit; 0 is an empty store.
	Revision int64 `json:"revision"`
	// Plan is the YAML document; Version is its compiled content's hash
	// (what call records name).
	Plan    string `json:"plan"`
	Version string `json:"version"`
	// Changed and ChangedBy say when and by whom the last commit was made.
	Changed   time.Time `json:"changed"`
	ChangedBy string    `json:"changed_by"`
	// Assignments are the seed 001 assignments, open and closed.
	Assignments []Assignment `json:"assignments,omitempty"`
	// Files is, per node id, the plan file content that node last had in
	// step with the store.
	Files map[string]FileMark `json:"files,omitempty"`
}

// FileMark is a node's plan file as last in step with the store: its
// content hash and the plan version it was (or became) then. An edit of the
// file is taken while the store still runs that version.
type FileMark struct {
	Hash    string `json:"hash"`
	Version string `json:"version"`
}

// Entry is one line of the audit log: who did what, when, from which org,
// and which orgs it concerns (they may read it).
type Entry struct {
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`
	ActorOrg string    `json:"actor_org,omitempty"`
	Orgs     []string  `json:"orgs,omitempty"`
	Action   string    `json:"action"`
	Object   string    `json:"object"`
	Detail   string    `json:"detail,omitempty"`
	Revision int64     `json:"revision,omitempty"`
}

// Concerns says whether org may read the entry.
func (e *Entry) Concerns(org string) bool {
	if e.ActorOrg == org {
		return true
	}
	for _, o := range e.Orgs {
		if o == org {
			return true
		}
	}
	return false
}

// AuditCap is how many audit entries a store keeps (the oldest go first).
const AuditCap = 10000

// ErrConflict is returned by Commit when the store's revision is not the
// one the change was based on.
var ErrConflict = errors.New("the plan changed since the revision the change is based on")

// Store keeps the State. Single node: a local file written atomically;
// cluster: Redis.
type Store interface {
	// Load returns the current state; Revision 0 when the store is empty.
	Load(ctx context.Context) (*State, error)
	// Commit stores next (whose Revision is base+1) and appends audit,
	// atomically, if the store is still at revision base; else ErrConflict.
	Commit(ctx context.Context, base int64, next *State, audit []Entry) error
	// Append adds audit entries that change no state (a notice delivered).
	Append(ctx context.Context, audit []Entry) error
	// Audit returns up to limit of the newest entries, oldest first; only
	// those concerning org unless org is "".
	Audit(ctx context.Context, org string, limit int) ([]Entry, error)
	// Watch delivers the revision each time it changes, until ctx ends
	// (the channel is then closed). A slow reader misses intermediate
	// revisions, never the latest.
	Watch(ctx context.Context) <-chan int64
}

// Clone copies a state so a change never edits the one it was read from.
func (s *State) Clone() *State {
	c := *s
	c.Assignments = make([]Assignment, len(s.Assignments))
	for i, a := range s.Assignments {
		c.Assignments[i] = a.clone()
	}
	c.Files = make(map[string]FileMark, len(s.Files))
	for k, v := range s.Files {
		c.Files[k] = v
	}
	return &c
}

// Filter keeps the entries concerning org (all when org is ""), the newest
// limit of them (all when limit <= 0), oldest first.
func Filter(all []Entry, org string, limit int) []Entry {
	var out []Entry
	for i := len(all) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		if org == "" || all[i].Concerns(org) {
			out = append(out, all[i])
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}
