package memory

import (
	"context"
	"sync"
	"time"

	"github.com/callctl/callctl/controller"
)

// stories are the call stories of the channels this node handled
// (controller.Stories).
type stories struct {
	mu sync.Mutex
	m  map[string]*story // by channel
}

type story struct {
	controller.Story
	// started and ended are when the call's handler took and let go of the
	// channel (ended is zero while it holds it).
	started, ended time.Time
}

var _ controller.Stories = (*Store)(nil)

// kept says whether st is still kept at now.
func (st *story) kept(now time.Time) bool {
	return st.ended.IsZero() || now.Sub(st.ended) <= controller.StoryMemory
}

// Begin starts a new story of channel, replacing the one before.
func (s *Store) Begin(ctx context.Context, channel string, st controller.Story) error {
	now := s.opt.Now()
	ss := &s.stories
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m == nil {
		ss.m = map[string]*story{}
	}
	for id, old := range ss.m {
		if !old.kept(now) {
			delete(ss.m, id)
		}
	}
	st.User, st.Domain, st.Leg = "", "", ""
	ss.m[channel] = &story{Story: st, started: now}
	return nil
}

// update changes channel's story on server if it is the one with record.
func (s *Store) update(server, channel, record string, f func(*story)) {
	ss := &s.stories
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if st := ss.m[channel]; st != nil && st.Server == server && st.Record == record {
		f(st)
	}
}

// Connect notes the user, and the leg, channel's story with record is
// connected to.
func (s *Store) Connect(ctx context.Context, server, channel, record, user, domain, leg string) error {
	s.update(server, channel, record, func(st *story) { st.User, st.Domain, st.Leg = user, domain, leg })
	return nil
}

// End notes that the call with record let go of channel.
func (s *Store) End(ctx context.Context, server, channel, record string) error {
	now := s.opt.Now()
	s.update(server, channel, record, func(st *story) { st.ended = now })
	return nil
}

// Of is the latest story of channel on server, if one is still kept.
func (s *Store) Of(ctx context.Context, server, channel string) (controller.Story, bool, error) {
	now := s.opt.Now()
	ss := &s.stories
	ss.mu.Lock()
	defer ss.mu.Unlock()
	st := ss.m[channel]
	if st == nil || st.Server != server || !st.kept(now) {
		return controller.Story{}, false, nil
	}
	return st.Story, true, nil
}

// ConnectedTo is the latest story on server, other than channel's, connected
// to user of domain and still kept.
func (s *Store) ConnectedTo(ctx context.Context, server, domain, user, channel string) (controller.Story, bool, error) {
	now := s.opt.Now()
	ss := &s.stories
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var best *story
	for id, st := range ss.m {
		if id == channel || st.Server != server || st.User != user || st.Domain != domain || !st.kept(now) {
			continue
		}
		if best == nil || st.started.After(best.started) {
			best = st
		}
	}
	if best == nil {
		return controller.Story{}, false, nil
	}
	return best.Story, true, nil
}

// OfLeg is the story, not ended, of the call on server whose connected leg
// is the channel leg.
func (s *Store) OfLeg(ctx context.Context, server, leg string) (controller.Story, bool, error) {
	ss := &s.stories
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, st := range ss.m {
		if leg != "" && st.Leg == leg && st.Server == server && st.ended.IsZero() {
			return st.Story, true, nil
		}
	}
	return controller.Story{}, false, nil
}
