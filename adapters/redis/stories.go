package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/callctl/callctl/controller"
)

// Call stories (controller.Stories) are shared by the nodes, so that a
// transferred call links to the record of the call it came from when
// another node handled that one. They live under each media server's own
// hash tag (T = {<prefix>:story:<server>}):
//
//	T:c:<channel>        hash  record, org, user, domain, leg, started,
//	                     ended (ms of Redis time): the channel's latest
//	                     story; it expires heldStoryTTL after it began, or
//	                     controller.StoryMemory after its call ended
//	T:u:<domain>/<user>  zset  channel -> started: the stories connected to
//	                     a phone user, newest last; members whose story is
//	                     gone are dropped as they are met, the key expires
//	                     heldStoryTTL after the last connection
//	T:l:<leg>            the channel whose story is connected over leg;
//	                     deleted when that story ends or is replaced
//
// Times are Redis's, so that the nodes' clocks do not matter. Nothing here
// is counted or fenced: a story lost with Redis's data only leaves the next
// transfer unlinked.

// heldStoryTTL bounds how long a story is kept while its call holds the
// channel: longer than any call, and what a node that died mid-call leaves
// behind goes with it.
const heldStoryTTL = 24 * time.Hour

// errStoriesDown fails story operations at once while Redis is known to be
// unreachable: a call does not wait for a link.
var errStoriesDown = errors.New("call stories: Redis is down")

func (s *Store) storyTag(server string) string { return "{" + s.cfg.Prefix + ":story:" + server + "}:" }

// beginStoryScript: KEYS c; ARGV record, org, ttl ms, T:l: prefix.
var beginStoryScript = goredis.NewScript(`
local t = redis.call('TIME')
local ms = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
local leg = redis.call('HGET', KEYS[1], 'leg')
if leg and leg ~= '' then redis.call('DEL', ARGV[4] .. leg) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'org', ARGV[2], 'started', ms)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// connectStoryScript: KEYS c, u, l; ARGV record, user, domain, channel, ttl
// ms, leg. Returns 0 when the channel has another story by now.
var connectStoryScript = goredis.NewScript(`
if redis.call('HGET', KEYS[1], 'record') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'user', ARGV[2], 'domain', ARGV[3], 'leg', ARGV[6])
if ARGV[6] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[5]) end
local started = redis.call('HGET', KEYS[1], 'started')
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[2], started, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('(%d', now - tonumber(ARGV[5])))
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
`)

// endStoryScript: KEYS c; ARGV record, memory ms, T:l: prefix. Returns 0
// when the channel has another story by now.
var endStoryScript = goredis.NewScript(`
if redis.call('HGET', KEYS[1], 'record') ~= ARGV[1] then return 0 end
local leg = redis.call('HGET', KEYS[1], 'leg')
if leg and leg ~= '' then redis.call('DEL', ARGV[3] .. leg) end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'ended', string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000)))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// connectedToScript: KEYS u; ARGV T:c: prefix, channel to skip, user,
// domain. Returns {record, org, leg} of the newest story still connected to
// the user (an ended one is kept by its key's expiry), or nil. Story keys
// are built from T, in u's slot.
var connectedToScript = goredis.NewScript(`
local chans = redis.call('ZREVRANGE', KEYS[1], 0, -1)
for _, ch in ipairs(chans) do
  if ch ~= ARGV[2] then
    local f = redis.call('HMGET', ARGV[1] .. ch, 'record', 'org', 'user', 'domain', 'leg')
    if not f[1] then
      redis.call('ZREM', KEYS[1], ch)
    elseif f[3] == ARGV[3] and f[4] == ARGV[4] then
      return {f[1], f[2] or '', f[5] or ''}
    end
  end
end
return false
`)

// ofLegScript: KEYS l; ARGV T:c: prefix, leg. Returns {record, org, user,
// domain} of the story connected over leg if it has not ended, or nil.
var ofLegScript = goredis.NewScript(`
local ch = redis.call('GET', KEYS[1])
if not ch then return false end
local f = redis.call('HMGET', ARGV[1] .. ch, 'record', 'org', 'user', 'domain', 'leg', 'ended')
if not f[1] or f[5] ~= ARGV[2] or f[6] then return false end
return {f[1], f[2] or '', f[3] or '', f[4] or ''}
`)

var _ controller.Stories = (*Store)(nil)

// storiesUp fails fast while Redis is known to be down.
func (s *Store) storiesUp(what string) error {
	if !s.up.Load() {
		return fmt.Errorf("%s: %w", what, errStoriesDown)
	}
	return nil
}

// Begin starts a new story of channel on st.Server, replacing the one before.
func (s *Store) Begin(ctx context.Context, channel string, st controller.Story) error {
	if err := s.storiesUp("begin story"); err != nil {
		return err
	}
	tag := s.storyTag(st.Server)
	err := beginStoryScript.Run(ctx, s.rdb, []string{tag + "c:" + channel}, st.Record, st.Org, heldStoryTTL.Milliseconds(),
		tag+"l:").Err()
	if err != nil {
		return fmt.Errorf("begin story of %s on %s: %w", channel, st.Server, err)
	}
	return nil
}

// Connect notes the user, and the leg, channel's story with record is
// connected to.
func (s *Store) Connect(ctx context.Context, server, channel, record, user, domain, leg string) error {
	if err := s.storiesUp("connect story"); err != nil {
		return err
	}
	tag := s.storyTag(server)
	err := connectStoryScript.Run(ctx, s.rdb, []string{tag + "c:" + channel, tag + "u:" + domain + "/" + user, tag + "l:" + leg},
		record, user, domain, channel, heldStoryTTL.Milliseconds(), leg).Err()
	if err != nil {
		return fmt.Errorf("connect story of %s on %s to %s: %w", channel, server, user, err)
	}
	return nil
}

// End notes that the call with record let go of channel.
func (s *Store) End(ctx context.Context, server, channel, record string) error {
	if err := s.storiesUp("end story"); err != nil {
		return err
	}
	tag := s.storyTag(server)
	err := endStoryScript.Run(ctx, s.rdb, []string{tag + "c:" + channel}, record, controller.StoryMemory.Milliseconds(), tag+"l:").Err()
	if err != nil {
		return fmt.Errorf("end story of %s on %s: %w", channel, server, err)
	}
	return nil
}

// Of is the latest story of channel on server, if one is still kept.
func (s *Store) Of(ctx context.Context, server, channel string) (controller.Story, bool, error) {
	if err := s.storiesUp("story"); err != nil {
		return controller.Story{}, false, err
	}
	m, err := s.rdb.HGetAll(ctx, s.storyTag(server)+"c:"+channel).Result()
	if err != nil {
		return controller.Story{}, false, fmt.Errorf("story of %s on %s: %w", channel, server, err)
	}
	if m["record"] == "" {
		return controller.Story{}, false, nil
	}
	return controller.Story{Server: server, Record: m["record"], Org: m["org"], User: m["user"], Domain: m["domain"],
		Leg: m["leg"]}, true, nil
}

// ConnectedTo is the latest story on server, other than channel's, connected
// to user of domain and still kept.
func (s *Store) ConnectedTo(ctx context.Context, server, domain, user, channel string) (controller.Story, bool, error) {
	if err := s.storiesUp("stories of " + user); err != nil {
		return controller.Story{}, false, err
	}
	tag := s.storyTag(server)
	res, err := connectedToScript.Run(ctx, s.rdb, []string{tag + "u:" + domain + "/" + user},
		tag+"c:", channel, user, domain).StringSlice()
	if errors.Is(err, goredis.Nil) {
		return controller.Story{}, false, nil
	}
	if err != nil {
		return controller.Story{}, false, fmt.Errorf("stories of %s on %s: %w", user, server, err)
	}
	if len(res) != 3 {
		return controller.Story{}, false, fmt.Errorf("stories of %s on %s: unexpected reply %v", user, server, res)
	}
	return controller.Story{Server: server, Record: res[0], Org: res[1], User: user, Domain: domain, Leg: res[2]}, true, nil
}

// OfLeg is the story, not ended, of the call on server whose connected leg
// is the channel leg.
func (s *Store) OfLeg(ctx context.Context, server, leg string) (controller.Story, bool, error) {
	if err := s.storiesUp("story of leg " + leg); err != nil {
		return controller.Story{}, false, err
	}
	if leg == "" {
		return controller.Story{}, false, nil
	}
	tag := s.storyTag(server)
	res, err := ofLegScript.Run(ctx, s.rdb, []string{tag + "l:" + leg}, tag+"c:", leg).StringSlice()
	if errors.Is(err, goredis.Nil) {
		return controller.Story{}, false, nil
	}
	if err != nil {
		return controller.Story{}, false, fmt.Errorf("story of leg %s on %s: %w", leg, server, err)
	}
	if len(res) != 4 {
		return controller.Story{}, false, fmt.Errorf("story of leg %s on %s: unexpected reply %v", leg, server, res)
	}
	return controller.Story{Server: server, Record: res[0], Org: res[1], User: res[2], Domain: res[3], Leg: leg}, true, nil
}
