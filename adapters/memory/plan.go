package memory

import (
	"context"
	"fmt"
	"sync"
)

// planState is the stored plan and the watchers waiting for a new one.
type planState struct {
	mu      sync.Mutex
	version string
	doc     []byte
	// changed is closed and replaced on every Put, waking every watcher.
	changed chan struct{}
}

func (p *planState) init() { p.changed = make(chan struct{}) }

// Get returns the current document and its version; empty when none.
func (s *Store) Get(ctx context.Context) (string, []byte, error) {
	s.plan.mu.Lock()
	defer s.plan.mu.Unlock()
	return s.plan.version, append([]byte(nil), s.plan.doc...), nil
}

// Put stores a validated document with its version, both at once.
func (s *Store) Put(ctx context.Context, version string, doc []byte) error {
	if version == "" {
		return fmt.Errorf("put plan: empty version")
	}
	s.plan.mu.Lock()
	defer s.plan.mu.Unlock()
	s.plan.version, s.plan.doc = version, append([]byte(nil), doc...)
	close(s.plan.changed)
	s.plan.changed = make(chan struct{})
	return nil
}

// Watch delivers the version each time it changes, until ctx ends; the
// channel is then closed. A slow reader misses intermediate versions, never
// the latest.
func (s *Store) Watch(ctx context.Context) <-chan string {
	out := make(chan string, 1)
	s.plan.mu.Lock()
	last, wake := s.plan.version, s.plan.changed
	s.plan.mu.Unlock()
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case <-wake:
			}
			s.plan.mu.Lock()
			v := s.plan.version
			wake = s.plan.changed
			s.plan.mu.Unlock()
			if v == last {
				continue
			}
			last = v
			select {
			case out <- v:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
