package redis

import (
	"context"
	"fmt"
	"time"
)

func (s *Store) planKey() string     { return "{" + s.cfg.Prefix + ":plan}:current" }
func (s *Store) planChannel() string { return s.cfg.Prefix + ":plan" }

// Get returns the current plan document and its version, read together (one
// HMGET), so never a version with another version's document.
func (s *Store) Get(ctx context.Context) (string, []byte, error) {
	vals, err := s.rdb.HMGet(ctx, s.planKey(), "version", "doc").Result()
	if err != nil {
		return "", nil, fmt.Errorf("get plan: %w", err)
	}
	v, _ := vals[0].(string)
	d, _ := vals[1].(string)
	if v == "" {
		return "", nil, nil
	}
	return v, []byte(d), nil
}

// Put stores a validated document with its version in one atomic write and
// notifies every node.
func (s *Store) Put(ctx context.Context, version string, doc []byte) error {
	if version == "" {
		return fmt.Errorf("put plan: empty version")
	}
	if err := putPlanScript.Run(ctx, s.rdb, []string{s.planKey()}, version, doc, s.planChannel()).Err(); err != nil {
		return fmt.Errorf("put plan %s: %w", version, err)
	}
	s.log.Info("plan stored", "version", version, "bytes", len(doc))
	return nil
}

// Watch delivers the plan version each time it changes, until ctx ends (the
// channel is then closed). Changes arrive by pub/sub at once, and a periodic
// check (plan_check_interval) catches any notice lost while the connection
// was down. A slow reader misses intermediate versions, never the latest.
func (s *Store) Watch(ctx context.Context) <-chan string {
	out := make(chan string, 1)
	sub := s.rdb.Subscribe(ctx, s.planChannel())
	current := func() (string, error) {
		c, cancel := context.WithTimeout(ctx, s.cfg.ReadTimeout+time.Second)
		defer cancel()
		v, err := s.rdb.HGet(c, s.planKey(), "version").Result()
		if isNil(err) {
			return "", nil
		}
		return v, err
	}
	last, _ := current()
	go func() {
		defer close(out)
		defer sub.Close()
		msgs := sub.Channel()
		tick := time.NewTicker(s.cfg.PlanCheckInterval)
		defer tick.Stop()
		failing := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-msgs:
			case <-tick.C:
			}
			v, err := current()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if !failing {
					s.log.Warn("plan check failed: Redis unavailable; the node keeps its plan", "err", err)
					failing = true
				}
				continue
			}
			failing = false
			if v == last || v == "" {
				continue
			}
			last = v
			select {
			case <-out: // drop an unread older version
			default:
			}
			out <- v
		}
	}()
	return out
}
