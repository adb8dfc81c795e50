package controller

import (
	"context"
	"time"
)

// A channel can reach callctl more than once: a transfer (a phone's REFER,
// an IVR's or the media server's own transfer) hands the same channel, or
// the party of it on a new channel, back as a new call. Each time is a
// story of its own with its own record; stories keep, per channel, what the
// next story needs of the one before: the record to link to, the org the
// call was routed in (an IVR transfer routes there, SPEC §4), and the phone
// user it was connected to (a REFER from that phone routes as dialed by
// them, also when it does not name them). The next story may be another
// node's (the media server handed the transferred call, or the other call of
// an attended transfer, to another node): in a cluster the stories are kept
// where every node reads them.

// Story is what is kept of a channel's latest call.
type Story struct {
	Server string
	// Record is the record of the call; a transfer of the channel links to it.
	Record string
	// Org is the org the call was routed in (for an external call, the org
	// that received its DID).
	Org string
	// User is the phone user the channel was connected to, if any, with the
	// org domain they were reached in.
	User, Domain string
	// Leg is the channel of the call's connected leg (the phone's, when
	// User is set).
	Leg string
}

// StoryMemory bounds how long a story is kept after its call let go of the
// channel: a transfer follows the end of the story before it within
// milliseconds, a channel handed back much later is a new one.
const StoryMemory = 2 * time.Minute

// Stories keep the stories of channels. A story that cannot be read (the
// store unreachable, its data lost) is as one never kept: the transfer is
// not linked, the call goes on. Implementations use their own clock.
type Stories interface {
	// Begin starts a new story of channel on st.Server, replacing the one
	// before (st.User is set by Connect).
	Begin(ctx context.Context, channel string, st Story) error
	// Connect notes that channel's story with record is connected, over
	// the channel leg, to user of domain; nothing changes when channel has
	// a newer story.
	Connect(ctx context.Context, server, channel, record, user, domain, leg string) error
	// End notes that the call with record let go of channel; the story is
	// kept for StoryMemory more.
	End(ctx context.Context, server, channel, record string) error
	// Of is the latest story of channel on server, if one is still kept.
	Of(ctx context.Context, server, channel string) (Story, bool, error)
	// ConnectedTo is the latest story on server, other than channel's,
	// connected to user of domain and still kept: the call a phone user puts
	// on hold to consult, and then transfers (attended).
	ConnectedTo(ctx context.Context, server, domain, user, channel string) (Story, bool, error)
	// OfLeg is the story, not ended, of the call on server whose connected
	// leg is the channel leg: the call a phone's own consultation (an
	// attended transfer the phone's channel originates) puts on hold.
	OfLeg(ctx context.Context, server, leg string) (Story, bool, error)
}

// storyWait bounds how long a call waits for the stories (Redis, in a
// cluster): a link between records is not worth holding a call up for.
const storyWait = 500 * time.Millisecond

// noStories keeps nothing: an engine without Stories links no transfers.
type noStories struct{}

func (noStories) Begin(context.Context, string, Story) error { return nil }
func (noStories) Connect(context.Context, string, string, string, string, string, string) error {
	return nil
}
func (noStories) End(context.Context, string, string, string) error       { return nil }
func (noStories) Of(context.Context, string, string) (Story, bool, error) { return Story{}, false, nil }
func (noStories) ConnectedTo(context.Context, string, string, string, string) (Story, bool, error) {
	return Story{}, false, nil
}
func (noStories) OfLeg(context.Context, string, string) (Story, bool, error) {
	return Story{}, false, nil
}

// storyCtx is the bounded context of one stories operation. It does not
// follow the caller: the end of a call is noted after the caller left.
func storyCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), storyWait)
}

// beginStory starts this call's story of its channel.
func (c *run) beginStory(server, org string) {
	ctx, cancel := storyCtx()
	defer cancel()
	if err := c.e.stories.Begin(ctx, c.call.ID(), Story{Server: server, Record: c.rec.ID, Org: org}); err != nil {
		c.log.Warn("call story not kept: a transfer of this call will not link to its record", "err", err)
	}
}

// connectStory notes the phone user this call's channel is connected to,
// over the channel leg.
func (c *run) connectStory(user, domain, leg string) {
	ctx, cancel := storyCtx()
	defer cancel()
	if err := c.e.stories.Connect(ctx, c.rec.Server, c.call.ID(), c.rec.ID, user, domain, leg); err != nil {
		c.log.Warn("call story not kept: a transfer by the user who answered will not link to this record",
			"user", user, "err", err)
	}
}

// endStory notes that this call let go of its channel.
func (c *run) endStory() {
	ctx, cancel := storyCtx()
	defer cancel()
	if err := c.e.stories.End(ctx, c.rec.Server, c.call.ID(), c.rec.ID); err != nil {
		c.log.Warn("end of the call story not kept", "err", err)
	}
}

// storyOf is the latest story of channel on server; none when it cannot be
// read.
func (c *run) storyOf(server, channel string) (Story, bool) {
	ctx, cancel := storyCtx()
	defer cancel()
	st, ok, err := c.e.stories.Of(ctx, server, channel)
	if err != nil {
		c.log.Warn("call story unavailable: the transfer is not linked to the call before", "from_call", channel, "err", err)
		return Story{}, false
	}
	return st, ok
}

// storyConnectedTo is the latest other story connected to user of domain on
// server; none when it cannot be read.
func (c *run) storyConnectedTo(server, domain, user string) (Story, bool) {
	ctx, cancel := storyCtx()
	defer cancel()
	st, ok, err := c.e.stories.ConnectedTo(ctx, server, domain, user, c.call.ID())
	if err != nil {
		c.log.Warn("call story unavailable: the transfer is not linked to the held call", "transferer", user, "err", err)
		return Story{}, false
	}
	return st, ok
}

// storyOfLeg is the story, not ended, of the call on server connected over
// the channel leg; none when it cannot be read.
func (c *run) storyOfLeg(server, leg string) (Story, bool) {
	ctx, cancel := storyCtx()
	defer cancel()
	st, ok, err := c.e.stories.OfLeg(ctx, server, leg)
	if err != nil {
		c.log.Warn("call story unavailable: the consultation is not linked to the held call", "leg", leg, "err", err)
		return Story{}, false
	}
	return st, ok
}
