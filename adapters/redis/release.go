package redis

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"
)

// releaseServerScript: KEYS holds, server set; ARGV tag prefix, tombstone
// ttl ms, server. Releases every hold counted on the server (whichever node
// holds it) and tombstones it, so neither a late release nor a node putting
// its legs back counts it again. Returns how many it released.
var releaseServerScript = goredis.NewScript(`
local p = ARGV[1]
local ids = redis.call('SMEMBERS', KEYS[2])
local n = 0
for _, id in ipairs(ids) do
  local v = redis.call('HGET', KEYS[1], id)
  if v then
    local s, o, l = string.match(v, '^([^\31]*)\31([^\31]*)\31([^\31]*)\31')
    redis.call('HDEL', KEYS[1], id)
    if o ~= '' then redis.call('SREM', p .. 'o:' .. o, id) end
    redis.call('SREM', p .. 'l:' .. l, id)
    n = n + 1
  end
  redis.call('SET', p .. 't:' .. id, '1', 'PX', ARGV[2])
end
redis.call('DEL', KEYS[2])
return n
`)

// ReleaseServer releases every counted leg on server across the cluster: an
// operator's decision for a media server that will not come back.
func (s *Store) ReleaseServer(ctx context.Context, server string) (int, error) {
	n, err := releaseServerScript.Run(ctx, s.rdb, []string{s.holdsKey, s.tag + "s:" + server}, s.tag,
		tombstoneTTL.Milliseconds(), server).Int()
	if err != nil {
		return 0, fmt.Errorf("release the legs of server %s: %w", server, err)
	}
	s.log.Warn("counted legs of a media server released by an operator", "server", server, "released", n)
	return n, nil
}
