package controller

import (
	"sync"
	"time"
)

// A channel can reach callctl more than once: a transfer (a phone's REFER,
// an IVR's or the media server's own transfer) hands the same channel, or
// the party of it on a new channel, back as a new call. Each time is a
// story of its own with its own record; stories keep, per channel, what the
// next story needs of the one before: the record to link to, the org the
// call was routed in (an IVR transfer routes there, SPEC §4), and the phone
// user it was connected to (a REFER from that phone routes as dialed by
// them, also when it does not name them).

// story is what is kept of a channel's latest call.
type story struct {
	server string
	// record is the record of the call; a transfer of the channel links to it.
	record string
	// org is the org the call was routed in (for an external call, the org
	// that received its DID).
	org string
	// user is the phone user the channel was connected to, if any, with
	// the org domain they were reached in.
	user, domain string
	// leg is the channel of the call's connected leg (the phone's, when
	// user is set).
	leg string
	// started and ended are when the call's handler took and let go of
	// the channel (ended is zero while it holds it).
	started, ended time.Time
}

// storyMemory bounds how long a story is kept after its call let go of the
// channel: a transfer follows the end of the story before it within
// milliseconds, a channel handed back much later is a new one.
const storyMemory = 2 * time.Minute

// stories are the stories of the channels this engine handled.
type stories struct {
	mu sync.Mutex
	m  map[string]*story
}

// begin starts a new story for channel, replacing the one before.
func (s *stories) begin(channel string, st story, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*story{}
	}
	for id, old := range s.m {
		if !old.ended.IsZero() && now.Sub(old.ended) > storyMemory {
			delete(s.m, id)
		}
	}
	st.started = now
	s.m[channel] = &st
}

// update changes the current story of channel, if it is the one with record.
func (s *stories) update(channel, record string, f func(*story)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.m[channel]; st != nil && st.record == record {
		f(st)
	}
}

// of is the latest story of channel, if one is still kept.
func (s *stories) of(channel string, now time.Time) (story, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.m[channel]
	if st == nil || !st.ended.IsZero() && now.Sub(st.ended) > storyMemory {
		return story{}, false
	}
	return *st, true
}

// connectedTo is the latest story, other than channel's, whose channel is
// connected to user of domain on server and still held: the call a phone
// user puts on hold to consult, and then transfers (attended).
func (s *stories) connectedTo(server, domain, user, channel string, now time.Time) (story, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best *story
	for id, st := range s.m {
		if id == channel || st.server != server || st.user != user || st.domain != domain {
			continue
		}
		if !st.ended.IsZero() && now.Sub(st.ended) > storyMemory {
			continue
		}
		if best == nil || st.started.After(best.started) {
			best = st
		}
	}
	if best == nil {
		return story{}, false
	}
	return *best, true
}

// ofLeg is the story, still held, of the call whose connected leg is the
// channel leg on server: the call a phone's own consultation (an attended
// transfer the phone's channel originates) puts on hold.
func (s *stories) ofLeg(server, leg string) (story, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.m {
		if st.leg == leg && st.server == server && st.ended.IsZero() {
			return *st, true
		}
	}
	return story{}, false
}
