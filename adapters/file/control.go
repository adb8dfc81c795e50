package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/callctl/callctl/control"
)

// Control is the control plane's state in dir/control.json. One node
// writes it; its changes are announced to its watchers in process.
type Control struct {
	dir  string
	path string

	mu sync.Mutex
	// changed is closed and replaced on every commit, waking watchers.
	changed chan struct{}
}

// controlFile is the file's content: the state and the audit log, one
// document so that a commit replaces both at once.
type controlFile struct {
	State control.State   `json:"state"`
	Audit []control.Entry `json:"audit"`
}

var _ control.Store = (*Control)(nil)

// NewControl opens (creating dir if needed) the control state in dir.
func NewControl(dir string) (*Control, error) {
	if err := Dir(dir); err != nil {
		return nil, err
	}
	return &Control{dir: dir, path: filepath.Join(dir, "control.json"), changed: make(chan struct{})}, nil
}

func (c *Control) read() (*controlFile, error) {
	b, err := os.ReadFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return &controlFile{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("control state: %w", err)
	}
	var f controlFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("control state %s does not decode (restore it from a backup, or remove it to seed from the plan file again): %w", c.path, err)
	}
	return &f, nil
}

// Load returns the current state; Revision 0 when there is none.
func (c *Control) Load(ctx context.Context) (*control.State, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := c.read()
	if err != nil {
		return nil, err
	}
	return &f.State, nil
}

// Commit replaces the state if it is still at base.
func (c *Control) Commit(ctx context.Context, base int64, next *control.State, audit []control.Entry) error {
	if next.Revision != base+1 {
		return fmt.Errorf("commit: revision %d does not follow %d", next.Revision, base)
	}
	return c.update(ctx, func(f *controlFile) error {
		if f.State.Revision != base {
			return fmt.Errorf("%w (store at %d, change based on %d)", control.ErrConflict, f.State.Revision, base)
		}
		f.State = *next
		f.Audit = append(f.Audit, audit...)
		return nil
	}, true)
}

// Append adds audit entries.
func (c *Control) Append(ctx context.Context, audit []control.Entry) error {
	return c.update(ctx, func(f *controlFile) error {
		f.Audit = append(f.Audit, audit...)
		return nil
	}, false)
}

func (c *Control) update(ctx context.Context, fn func(*controlFile) error, announce bool) error {
	unlock, err := lock(ctx, c.dir)
	if err != nil {
		return err
	}
	defer unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := c.read()
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		return err
	}
	if over := len(f.Audit) - control.AuditCap; over > 0 {
		f.Audit = append(f.Audit[:0], f.Audit[over:]...)
	}
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("control state: %w", err)
	}
	if err := WriteAtomic(c.path, b, 0o600); err != nil {
		return err
	}
	if announce {
		close(c.changed)
		c.changed = make(chan struct{})
	}
	return nil
}

// Audit returns up to limit of the newest entries concerning org (all when
// org is ""), oldest first.
func (c *Control) Audit(ctx context.Context, org string, limit int) ([]control.Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := c.read()
	if err != nil {
		return nil, err
	}
	return control.Filter(f.Audit, org, limit), nil
}

// Watch delivers the revision after each commit until ctx ends.
func (c *Control) Watch(ctx context.Context) <-chan int64 {
	out := make(chan int64, 1)
	c.mu.Lock()
	wake := c.changed
	c.mu.Unlock()
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case <-wake:
			}
			c.mu.Lock()
			wake = c.changed
			f, err := c.read()
			c.mu.Unlock()
			if err != nil {
				continue
			}
			select {
			case <-out: // drop an unread older revision
			default:
			}
			out <- f.State.Revision
		}
	}()
	return out
}
