package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/callctl/callctl/controller/provision"
)

// Options configure a Service.
type Options struct {
	// Node is this node's id: its plan file's mark in the store is kept
	// under it.
	Node  string
	Store Store
	// File is the node's plan file; empty when the node has none (Seed then
	// gives the plan an empty store starts with).
	File string
	// Seed names and gives the plan used when there is no file.
	SeedName string
	Seed     []byte
	// Apply switches the node to a plan; it is called with each new plan,
	// never concurrently.
	Apply  func(*provision.Plan)
	Logger *slog.Logger
	Now    func() time.Time
	// Notify sends the notices of changes the service makes by itself
	// (requests that lapse).
	Notify func([]Notice)
	// Retry is how often a change that could not reach the store is tried
	// again, and how often the file is checked (1 s).
	Retry time.Duration
}

// Service is one node's side of the control plane: it starts the node on
// the right plan, follows the store, takes the node's plan file edits, and
// makes the API's changes.
type Service struct {
	opt Options
	log *slog.Logger

	// mu serialises what changes the running plan or the file's standing.
	mu      sync.Mutex
	running *provision.Plan
	rev     int64
	file    fileState
	// starting is set while Start runs: the node is not up yet, so plans
	// are not applied to it (Start returns the one to start with).
	starting bool
}

// fileState is where the node's plan file stands.
type fileState struct {
	// seen is the hash of the content read last, and stable says it was
	// read the same twice in a row (a file being written is not taken).
	seen   string
	stable bool
	// handled is the content last dealt with (applied, or refused and
	// reported); an unchanged file is not dealt with again.
	handled string
	// pending is a valid file content not yet applied because the store
	// could not be reached: retried until applied or replaced.
	pending *filePlan
	// standing says, for /readyz and the metrics, why the running plan is
	// not the file's ("" when it is, or the node has no file).
	standing string
}

type filePlan struct {
	hash string
	data []byte
	plan *provision.Plan
}

// Status is what /readyz and the metrics say about the plan.
type Status struct {
	Revision int64
	Version  string
	// FileBehind is set when the node's plan file holds a plan the node
	// does not run, with why.
	FileBehind string
}

// New returns a service; Start brings it up.
func New(opt Options) *Service {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Retry <= 0 {
		opt.Retry = time.Second
	}
	return &Service{opt: opt, log: opt.Logger}
}

func hashOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Start decides the plan the node starts with and returns it (the node is
// started on it; Apply is not called for it). A plan file that does not
// validate stops the start. An empty store is seeded with the file (or the
// seed plan); a store that cannot be reached leaves the node on its file's
// plan, published once the store answers.
func (s *Service) Start(ctx context.Context) (*provision.Plan, error) {
	name, data := s.opt.SeedName, s.opt.Seed
	if s.opt.File != "" {
		var err error
		name = s.opt.File
		if data, err = os.ReadFile(s.opt.File); err != nil {
			return nil, fmt.Errorf("plan: %w", err)
		}
	}
	local, probs, err := provision.Load(name, data)
	s.logProblems(probs)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.starting = true
	defer func() { s.starting = false }()
	s.running = local
	h := hashOf(data)
	s.file.seen, s.file.stable, s.file.handled = h, true, h
	fp := &filePlan{hash: h, data: data, plan: local}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.opt.Store.Load(lctx)
	if err != nil {
		s.file.pending = fp
		s.file.standing = "not yet published: the state store is unavailable (" + err.Error() + ")"
		s.log.Error("plan store unavailable: starting with this node's plan; it is published once the store answers",
			"version", local.Version, "err", err)
		return local, nil
	}
	if st.Revision > 0 && st.Version != local.Version {
		// The store's plan runs unless this node's file is an edit to
		// take (decided by publish once the node runs).
		plan, probs, err := provision.Load(fmt.Sprintf("plan revision %d", st.Revision), []byte(st.Plan))
		s.logProblems(probs)
		if err != nil {
			s.log.Error("the stored plan does not validate: starting with this node's plan", "revision", st.Revision, "err", err)
		} else {
			s.running, s.rev = plan, st.Revision
			s.log.Info("following the stored plan", "revision", st.Revision, "version", plan.Version,
				"changed_by", st.ChangedBy, "changed", st.Changed)
		}
	}
	if s.opt.File == "" && st.Revision > 0 {
		return s.running, nil
	}
	s.publish(lctx, fp, st)
	return s.running, nil
}

// Running is the plan the node runs and its store revision.
func (s *Service) Running() (*provision.Plan, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running, s.rev
}

// Status says which plan runs and whether the node's file is behind.
func (s *Service) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{Revision: s.rev, Version: s.running.Version, FileBehind: s.file.standing}
}

// Run follows the store and the plan file until ctx ends: a new revision in
// the store is applied within a second; the file is checked every Retry
// (a change is taken once it reads the same twice in a row); a file edit
// that could not be published is retried; assignments past their expiry
// lapse. reload forces a file check (SIGHUP).
func (s *Service) Run(ctx context.Context, reload <-chan struct{}) {
	watch := s.opt.Store.Watch(ctx)
	tick := time.NewTicker(s.opt.Retry)
	defer tick.Stop()
	lapse := time.NewTicker(max(s.opt.Retry, 10*time.Second))
	defer lapse.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
			s.log.Info("reloading the plan file")
			s.CheckFile(ctx, true)
		case <-tick.C:
			s.CheckFile(ctx, false)
		case <-lapse.C:
			s.lapse(ctx)
		case rev, ok := <-watch:
			if !ok {
				watch = nil
				continue
			}
			s.Follow(ctx, rev)
		}
	}
}

// Follow switches the node to the store's plan when it is newer than the
// one running.
func (s *Service) Follow(ctx context.Context, rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev != 0 && rev <= s.rev {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.opt.Store.Load(lctx)
	if err != nil {
		s.log.Error("the plan changed but cannot be read: keeping the running plan", "revision", rev, "err", err)
		return
	}
	s.adopt(st, "store")
}

// adopt runs st's plan if it is newer than the running one; s.mu is held.
func (s *Service) adopt(st *State, source string) {
	if st.Revision <= s.rev {
		return
	}
	if st.Version == s.running.Version {
		s.rev = st.Revision
		return
	}
	plan, probs, err := provision.Load(fmt.Sprintf("plan revision %d", st.Revision), []byte(st.Plan))
	s.logProblems(probs)
	if err != nil {
		s.log.Error("stored plan rejected: keeping the running plan", "revision", st.Revision, "err", err)
		return
	}
	old := s.running.Version
	s.running, s.rev = plan, st.Revision
	s.apply(plan)
	s.log.Info("plan switched", "from_version", old, "version", plan.Version, "revision", st.Revision,
		"source", source, "changed_by", st.ChangedBy)
}

// CheckFile looks at the node's plan file and publishes an edit. Unless
// forced, a content is taken only once it read the same twice in a row.
func (s *Service) CheckFile(ctx context.Context, force bool) {
	if s.opt.File == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := os.ReadFile(s.opt.File)
	if err != nil {
		if force {
			s.log.Error("plan file unreadable: keeping the running plan", "err", err)
		}
		return
	}
	h := hashOf(data)
	if h != s.file.seen {
		s.file.seen, s.file.stable = h, false
		if !force {
			return
		}
	}
	s.file.stable = true
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if h == s.file.handled && !force {
		if p := s.file.pending; p != nil && p.hash == h {
			s.retry(pctx, p)
		}
		return
	}
	s.file.handled = h
	plan, probs, err := provision.Load(s.opt.File, data)
	s.logProblems(probs)
	if err != nil {
		s.file.pending = nil
		s.file.standing = "the plan file does not validate: " + err.Error()
		s.log.Error("plan file rejected: keeping the running plan", "running_revision", s.rev,
			"running_version", s.running.Version, "err", err)
		return
	}
	s.retry(pctx, &filePlan{hash: h, data: data, plan: plan})
}

func (s *Service) retry(ctx context.Context, p *filePlan) {
	st, err := s.opt.Store.Load(ctx)
	if err != nil {
		if s.file.pending == nil || s.file.pending.hash != p.hash {
			s.log.Error("plan file edit not published: the state store is unavailable; retrying", "version", p.plan.Version, "err", err)
		}
		s.file.pending = p
		s.file.standing = "not yet published: the state store is unavailable (" + err.Error() + ")"
		return
	}
	s.publish(ctx, p, st)
}

// publish takes the file content p into the store as st stands; s.mu is held.
func (s *Service) publish(ctx context.Context, p *filePlan, st *State) {
	mark, marked := st.Files[s.opt.Node]
	next := st.Clone()
	next.Revision = st.Revision + 1
	next.Files[s.opt.Node] = FileMark{Hash: p.hash, Version: p.plan.Version}
	what := "plan file " + s.opt.File
	if s.opt.File == "" {
		what = "seed plan " + s.opt.SeedName
		delete(next.Files, s.opt.Node)
	}
	switch {
	case st.Revision == 0:
		// An empty store: the file seeds it.
	case st.Version == p.plan.Version:
		// In step already: remember it, so the file's next edit is taken.
		if marked && mark.Hash == p.hash {
			s.settled(st)
			return
		}
	case marked && mark.Hash == p.hash:
		// The file has not changed since it was in step; the plan moved on
		// (API, another node): the store's plan runs.
		s.settled(st)
		s.file.standing = fmt.Sprintf("the plan file is older than the running plan (revision %d, changed by %s): the stored plan runs; `callctl plan get` gives it", st.Revision, st.ChangedBy)
		return
	case marked && mark.Version == st.Version:
		// Edited since it was in step, and nothing else changed: take it.
	default:
		s.settled(st)
		s.file.standing = fmt.Sprintf("the plan file was edited but the plan also changed elsewhere since this file was last in step with it (revision %d, changed by %s at %s): edit not applied; take the running plan with `callctl plan get`, redo the edit there, and apply it with `callctl plan apply`",
			st.Revision, st.ChangedBy, st.Changed.Format(time.RFC3339))
		s.log.Error("plan file edit refused: the plan changed since the file was last in step with it",
			"file", s.opt.File, "revision", st.Revision, "changed_by", st.ChangedBy, "file_version", p.plan.Version)
		return
	}
	if p.plan.Version != st.Version || st.Revision == 0 {
		next.Plan, next.Version = string(p.data), p.plan.Version
	}
	next.Changed, next.ChangedBy = s.opt.Now().UTC(), "node "+s.opt.Node+" "+what
	audit := []Entry{{Time: next.Changed, Actor: next.ChangedBy, Action: "plan.file", Object: "plan",
		Detail: "version " + next.Version, Revision: next.Revision}}
	if err := s.opt.Store.Commit(ctx, st.Revision, next, audit); err != nil {
		if errors.Is(err, ErrConflict) {
			// Someone committed meanwhile: decide again on their state.
			if st2, lerr := s.opt.Store.Load(ctx); lerr == nil {
				s.publish(ctx, p, st2)
				return
			}
		}
		s.file.pending = p
		s.file.standing = "not yet published: the state store is unavailable (" + err.Error() + ")"
		s.log.Error("publishing the plan failed; retrying", "version", p.plan.Version, "err", err)
		return
	}
	s.file.pending, s.file.standing = nil, ""
	if next.Version != st.Version {
		s.log.Info("plan published", "revision", next.Revision, "version", next.Version, "source", what)
	}
	s.adoptCompiled(next, p.plan, "file")
}

// settled notes the file needs nothing more and runs the store's plan.
func (s *Service) settled(st *State) {
	s.file.pending, s.file.standing = nil, ""
	s.adopt(st, "store")
}

// adoptCompiled runs a plan this node compiled itself at st's revision.
func (s *Service) adoptCompiled(st *State, plan *provision.Plan, source string) {
	if st.Revision <= s.rev {
		return
	}
	changed := plan.Version != s.running.Version
	old := s.running.Version
	s.running, s.rev = plan, st.Revision
	if changed {
		s.apply(plan)
		s.log.Info("plan switched", "from_version", old, "version", plan.Version, "revision", st.Revision, "source", source)
	}
}

// apply hands a new plan to the node; s.mu is held.
func (s *Service) apply(plan *provision.Plan) {
	if s.opt.Apply != nil && !s.starting {
		s.opt.Apply(plan)
	}
}

func (s *Service) logProblems(probs provision.Problems) {
	for _, p := range probs {
		level := slog.LevelError
		if p.Severity == provision.Warning {
			level = slog.LevelWarn
		}
		s.log.Log(context.Background(), level, "plan problem", "file", p.File, "line", p.Line,
			"object", p.Object, "field", p.Field, "reason", p.Reason)
	}
}

// lapse ends the requests past their expiry (one node does it: the others
// find nothing left when their change is made again on the new revision).
func (s *Service) lapse(ctx context.Context) {
	st, err := s.opt.Store.Load(ctx)
	if err != nil || st.Revision == 0 {
		return
	}
	now := s.opt.Now()
	due := false
	for i := range st.Assignments {
		if a := &st.Assignments[i]; a.State == Requested && !now.Before(a.Expires) {
			due = true
		}
	}
	if !due {
		return
	}
	n := 0
	res, err := s.Change(ctx, Actor{ID: "expiry", Name: "callctl"}, func(d *Draft) error {
		if n = d.LapseExpired(); n == 0 {
			return errNothing
		}
		return nil
	})
	switch {
	case errors.Is(err, errNothing):
	case err != nil:
		s.log.Warn("expired assignment requests not lapsed yet", "err", err)
	default:
		s.log.Info("assignment requests lapsed", "count", n, "revision", res.State.Revision)
		if s.opt.Notify != nil {
			s.opt.Notify(res.Notices)
		}
	}
}

// errNothing ends a change that has nothing to do.
var errNothing = errors.New("nothing to change")
