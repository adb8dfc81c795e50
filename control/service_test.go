package control_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/file"
	"github.com/callctl/callctl/adapters/redis"
	"github.com/callctl/callctl/adapters/redis/redistest"
	"github.com/callctl/callctl/control"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/examples"
)

// logs is a log sink safe for the service's goroutines.
type logs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// node is one service under test with what it applied.
type node struct {
	*control.Service
	log     *logs
	mu      sync.Mutex
	applied []*provision.Plan
	file    string
}

func (n *node) last() *provision.Plan {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.applied) == 0 {
		return nil
	}
	return n.applied[len(n.applied)-1]
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// start starts a service for node id over store, with its plan file (a copy
// of content) in dir.
func start(t *testing.T, store control.Store, id, dir, content string) (*node, *provision.Plan) {
	t.Helper()
	path := filepath.Join(dir, id+".yaml")
	if content != "" {
		writeFile(t, path, content)
	}
	n := &node{log: &logs{}, file: path}
	n.Service = control.New(control.Options{Node: id, Store: store, File: path, Logger: slog.New(slog.NewTextHandler(n.log, nil)),
		Retry: 20 * time.Millisecond, Apply: func(p *provision.Plan) {
			n.mu.Lock()
			n.applied = append(n.applied, p)
			n.mu.Unlock()
		}})
	plan, err := n.Start(context.Background())
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	return n, plan
}

func fileStore(t *testing.T) control.Store {
	t.Helper()
	s, err := file.NewControl(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var lab = string(examples.Lab)

// edit changes the lab plan's first server limit: a valid edit.
func edit(doc string, limit string) string {
	return strings.Replace(doc, "channel_limit: 30", "channel_limit: "+limit, 1)
}

func limitOf(p *provision.Plan) int { return p.Server("srv11").ChannelLimit }

func TestFileSeedsTheStoreThenEditsApply(t *testing.T) {
	store := fileStore(t)
	n, plan := start(t, store, "n1", t.TempDir(), lab)
	st, err := store.Load(context.Background())
	if err != nil || st.Revision != 1 || st.Version != plan.Version || st.Plan != lab {
		t.Fatalf("store after the first start: rev %d version %s (plan %s) err %v", st.Revision, st.Version, plan.Version, err)
	}
	writeFile(t, n.file, edit(lab, "29"))
	n.CheckFile(context.Background(), false) // seen once: not yet taken
	if n.last() != nil {
		t.Fatal("a file content read once was applied: a file being written could be cut")
	}
	n.CheckFile(context.Background(), false)
	if p := n.last(); p == nil || limitOf(p) != 29 {
		t.Fatalf("edited file not applied: %v", p)
	}
	if s := n.Status(); s.Revision != 2 || s.FileBehind != "" {
		t.Fatalf("status %+v", s)
	}
	if st, _ := store.Load(context.Background()); st.Version != n.last().Version || st.Plan != edit(lab, "29") {
		t.Fatalf("the store holds version %s, the node runs %s", st.Version, n.last().Version)
	}
}

// Empty, comment-only and cut-off files never replace the running plan;
// the node says its file is not applied.
func TestBadPlanFilesNeverReplaceTheRunningPlan(t *testing.T) {
	store := fileStore(t)
	n, _ := start(t, store, "n1", t.TempDir(), lab)
	for name, content := range map[string]string{
		"empty":         "",
		"comments only": "# the plan\n",
		"cut mid-line":  lab[:strings.Index(lab, `name: "Aiko Sato"`)+12],
		"cut at a line": lab[:strings.Index(lab, "  - id: grp1")],
	} {
		writeFile(t, n.file, content)
		n.CheckFile(context.Background(), true)
		if p := n.last(); p != nil {
			t.Fatalf("%s: a plan was applied", name)
		}
		st, _ := store.Load(context.Background())
		if st.Revision != 1 || st.Plan != lab {
			t.Fatalf("%s: the store changed to revision %d", name, st.Revision)
		}
		if s := n.Status(); !strings.Contains(s.FileBehind, "does not validate") {
			t.Fatalf("%s: status %+v does not say the file is not applied", name, s)
		}
	}
	// A node whose file is bad at start does not start.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, bad, "# nothing\n")
	svc := control.New(control.Options{Node: "n2", Store: store, File: bad, Logger: slog.New(slog.NewTextHandler(&logs{}, nil))})
	if _, err := svc.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "no servers") {
		t.Fatalf("start on a comment-only file: %v", err)
	}
}

func addUser(org, ext string) func(d *control.Draft) error {
	return func(d *control.Draft) error {
		for i := range d.Doc.Orgs {
			if d.Doc.Orgs[i].ID == org {
				d.Doc.Orgs[i].Users = append(d.Doc.Orgs[i].Users, provision.User{Extension: ext, Name: "New", Server: "srv11"})
				return nil
			}
		}
		return control.ErrNotFound
	}
}

var admin = control.Actor{ID: "t1", Name: "ops"}

// A change made through the API survives a restart and is not reverted by
// the node's unchanged file; an edit of the file made after it is refused
// and reported, not merged.
func TestAPIChangeOutlivesRestartAndFileEdits(t *testing.T) {
	store := fileStore(t)
	dir := t.TempDir()
	n, _ := start(t, store, "n1", dir, lab)
	res, err := n.Change(context.Background(), admin, addUser("acme", "3000"))
	if err != nil {
		t.Fatal(err)
	}
	if p := n.last(); p == nil || p.Org("acme").Users["3000"] == nil || res.State.Revision != 2 {
		t.Fatalf("change not applied at once: rev %d", res.State.Revision)
	}
	// Restart with the same, unchanged file.
	n2, plan := start(t, store, "n1", dir, "")
	if plan.Org("acme").Users["3000"] == nil {
		t.Fatal("restart reverted the API change")
	}
	if s := n2.Status(); s.Revision != 2 || s.FileBehind == "" {
		t.Fatalf("status after restart %+v: want revision 2 and a note that the file is older\n%s", s, n2.log.String())
	}
	// The file is edited now: refused, said, nothing changes.
	writeFile(t, n2.file, edit(lab, "25"))
	n2.CheckFile(context.Background(), true)
	if p := n2.last(); p != nil {
		t.Fatalf("a file edit made after an API change was applied (limit %d)", limitOf(p))
	}
	if s := n2.Status(); !strings.Contains(s.FileBehind, "plan also changed elsewhere") {
		t.Fatalf("status %+v", s)
	}
	if !strings.Contains(n2.log.String(), "plan file edit refused") {
		t.Fatalf("no log line:\n%s", n2.log.String())
	}
	// The file brought in step (the running plan written back) and edited
	// again: taken.
	st, _ := store.Load(context.Background())
	writeFile(t, n2.file, st.Plan)
	n2.CheckFile(context.Background(), true)
	writeFile(t, n2.file, edit(st.Plan, "24"))
	n2.CheckFile(context.Background(), true)
	if p := n2.last(); p == nil || limitOf(p) != 24 || p.Org("acme").Users["3000"] == nil {
		t.Fatalf("edit of a file in step not applied: %v", p)
	}
}

// Two admins change the plan at once from what they both read: the second
// is refused with a conflict (the precondition is the first one's result).
func TestConcurrentChangesConflict(t *testing.T) {
	store := fileStore(t)
	n, _ := start(t, store, "n1", t.TempDir(), lab)
	st, _ := store.Load(context.Background())
	read := st.Revision
	change := func() error {
		_, err := n.Change(context.Background(), admin, func(d *control.Draft) error {
			if d.Base != read {
				return &control.ConflictError{Reason: "changed since read"}
			}
			return addUser("acme", "3001")(d)
		})
		return err
	}
	if err := change(); err != nil {
		t.Fatal(err)
	}
	var ce *control.ConflictError
	if err := change(); !errors.As(err, &ce) {
		t.Fatalf("second change on the same read: %v, want a conflict", err)
	}
	// A change that breaks the plan is refused whole, with its problems.
	_, err := n.Change(context.Background(), admin, addUser("acme", "3999"))
	var inv *provision.InvalidError
	if !errors.As(err, &inv) || !strings.Contains(inv.Error(), "3999") {
		t.Fatalf("duplicate extension: %v", err)
	}
}

// A plan file edited while Redis is down is published once it is back, and
// the other node runs it; meanwhile the node says its file is not applied.
func TestFileEditDuringRedisOutage(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{AppendOnly: true})
	cfg := redis.Config{Addrs: []string{rs.Addr}, Prefix: "outage", LeaseTTL: time.Second, PlanCheckInterval: 100 * time.Millisecond,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond}
	open := func(id string) *redis.Store {
		s, err := redis.New(context.Background(), cfg, id, slog.New(slog.NewTextHandler(&logs{}, nil)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		return s
	}
	dir := t.TempDir()
	n1, _ := start(t, open("n1").Control(), "n1", dir, lab)
	n2, _ := start(t, open("n2").Control(), "n2", dir, lab)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for _, n := range []*node{n1, n2} {
		wg.Add(1)
		go func() { defer wg.Done(); n.Run(ctx, nil) }()
	}
	defer wg.Wait()
	defer cancel()

	rs.Kill()
	writeFile(t, n1.file, edit(lab, "27"))
	eventually(t, "n1 did not say its file waits for the store", func() bool {
		return strings.Contains(n1.Status().FileBehind, "not yet published")
	})
	if n1.last() != nil || n2.last() != nil {
		t.Fatal("a plan was applied while it could not be published")
	}
	rs.Restart()
	eventually(t, "the edit was not published after Redis came back", func() bool {
		p := n2.last()
		return p != nil && limitOf(p) == 27
	}, n1.log, n2.log)
	eventually(t, "n1 does not run its file's plan", func() bool {
		p := n1.last()
		return p != nil && limitOf(p) == 27 && n1.Status().FileBehind == ""
	})
}

func eventually(t *testing.T, msg string, cond func() bool, logs ...*logs) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for _, l := range logs {
				t.Log(l.String())
			}
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
