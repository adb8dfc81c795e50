package redis

import goredis "github.com/redis/go-redis/v9"

// Accounting keys all carry one hash tag, {<prefix>:acct}, so they live in
// one slot of a Redis Cluster: a leg's server and org counters are checked
// and changed in one script, in one round trip, atomically. The cost is that
// accounting is served by a single master of the cluster (its replicas give
// failover, not capacity); one master runs well over 20,000 acquire+release
// pairs per second, far above the call setup rate of any media server fleet.
// Scripts build the per-server, per-org and per-lease key names from that
// tag (they are known only once a hold is read): allowed on a cluster because
// every one of them is in the declared keys' slot.
//
// Layout under T = {<prefix>:acct}:
//
//	T:holds       hash  hold id -> server US org US lease US channel US acquired-ms
//	T:s:<server>  set   hold ids counted on the server (its count is SCARD)
//	T:o:<org>     set   hold ids counted for the org
//	T:l:<lease>   set   hold ids tied to a node's lease
//	T:leases      zset  lease (node/incarnation) -> expiry, ms of Redis time
//	T:t:<id>      tombstone of a hold released before (or without) its acquire
//
// Counts are set sizes, so they cannot go negative, and acquiring or
// releasing a hold twice changes nothing.

// acquireScript: KEYS holds, server set, org set, lease set, leases, tombstone;
// ARGV id, server, org, lease, channel, server limit, org limit.
// Returns 1 held, -1 server full, -2 org full, -3 released already, -4 lease lost.
var acquireScript = goredis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[6]) == 1 then return -3 end
if not redis.call('ZSCORE', KEYS[5], ARGV[4]) then return -4 end
local sl = tonumber(ARGV[6])
if sl > 0 and redis.call('SCARD', KEYS[2]) >= sl then return -1 end
local ol = tonumber(ARGV[7])
if ol > 0 and ARGV[3] ~= '' and redis.call('SCARD', KEYS[3]) >= ol then return -2 end
local t = redis.call('TIME')
local ms = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '\31' .. ARGV[3] .. '\31' .. ARGV[4] .. '\31' .. ARGV[5] .. '\31' .. ms)
redis.call('SADD', KEYS[2], ARGV[1])
if ARGV[3] ~= '' then redis.call('SADD', KEYS[3], ARGV[1]) end
redis.call('SADD', KEYS[4], ARGV[1])
return 1
`)

// releaseScript: KEYS holds, tombstone; ARGV id, tombstone ttl ms, tag prefix.
// Returns 1 released, 0 unknown (a tombstone now refuses a late acquire).
var releaseScript = goredis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  return 0
end
local s, o, l = string.match(v, '^([^\31]*)\31([^\31]*)\31([^\31]*)\31')
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', ARGV[3] .. 's:' .. s, ARGV[1])
if o ~= '' then redis.call('SREM', ARGV[3] .. 'o:' .. o, ARGV[1]) end
redis.call('SREM', ARGV[3] .. 'l:' .. l, ARGV[1])
return 1
`)

// heartbeatScript: KEYS leases, lease set; ARGV lease, ttl ms.
// Returns {1 renewed or 0 created (first beat, or the lease had been reaped:
// the node must put its legs back), legs counted for the lease}.
var heartbeatScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local had = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
local n = redis.call('SCARD', KEYS[2])
if had then return {1, n} end
return {0, n}
`)

// expiredScript: KEYS leases. Returns lease, score pairs of expired leases.
var expiredScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now), 'WITHSCORES', 'LIMIT', 0, 64)
`)

// reapScript: KEYS leases, holds; ARGV tag prefix, lease, score seen expired.
// Releases every hold of the lease at once, unless the lease was renewed
// since (its score changed). Returns the holds released, or -1.
var reapScript = goredis.NewScript(`
local sc = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not sc or sc ~= ARGV[3] then return -1 end
local ls = ARGV[1] .. 'l:' .. ARGV[2]
local ids = redis.call('SMEMBERS', ls)
local n = 0
for _, id in ipairs(ids) do
  local v = redis.call('HGET', KEYS[2], id)
  if v then
    local s, o = string.match(v, '^([^\31]*)\31([^\31]*)\31')
    redis.call('HDEL', KEYS[2], id)
    redis.call('SREM', ARGV[1] .. 's:' .. s, id)
    if o ~= '' then redis.call('SREM', ARGV[1] .. 'o:' .. o, id) end
    n = n + 1
  end
end
redis.call('DEL', ls)
redis.call('ZREM', KEYS[1], ARGV[2])
return n
`)

// resyncScript: KEYS holds, leases; ARGV tag prefix, lease, then id, server,
// org, channel for each hold. Puts back the holds of a live node whose lease
// had been reaped (or that were let through while Redis was down), without
// a limit check: their channels are up. Tombstoned holds stay released.
// Returns how many were put back.
var resyncScript = goredis.NewScript(`
local p, lease = ARGV[1], ARGV[2]
if not redis.call('ZSCORE', KEYS[2], lease) then return -1 end
local t = redis.call('TIME')
local ms = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
local n = 0
for i = 3, #ARGV, 4 do
  local id, s, o, c = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('HEXISTS', KEYS[1], id) == 0 and redis.call('EXISTS', p .. 't:' .. id) == 0 then
    redis.call('HSET', KEYS[1], id, s .. '\31' .. o .. '\31' .. lease .. '\31' .. c .. '\31' .. ms)
    redis.call('SADD', p .. 's:' .. s, id)
    if o ~= '' then redis.call('SADD', p .. 'o:' .. o, id) end
    redis.call('SADD', p .. 'l:' .. lease, id)
    n = n + 1
  end
end
return n
`)

// reconcileScript: KEYS holds; ARGV tag prefix, tombstone ttl ms, min age ms,
// then id, channel pairs found gone. Releases each hold still on that channel
// and older than min age, and tombstones it so a node putting its legs back
// does not revive it. Returns the ids released.
var reconcileScript = goredis.NewScript(`
local p = ARGV[1]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local minAge = tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local v = redis.call('HGET', KEYS[1], id)
  if v then
    local s, o, l, c, at = string.match(v, '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31(%d+)$')
    if c == ARGV[i + 1] and now - tonumber(at) >= minAge then
      redis.call('HDEL', KEYS[1], id)
      redis.call('SREM', p .. 's:' .. s, id)
      if o ~= '' then redis.call('SREM', p .. 'o:' .. o, id) end
      redis.call('SREM', p .. 'l:' .. l, id)
      redis.call('SET', p .. 't:' .. id, '1', 'PX', ARGV[2])
      out[#out + 1] = id
    end
  end
end
return out
`)

// Ownership keys carry one hash tag per media server, {<prefix>:own:<server>}:
//
//	O:lease      owner (node/incarnation) "|" token, expiring after the owner TTL
//	O:fence      the last token handed out (grows forever)
//	O:e:<event>  events handled, with the token that handled them

// campaignScript: KEYS lease, fence; ARGV me, ttl ms, token held (0 = none).
// Returns {1, token} when me owns the server (renewed or newly won), else
// {0, current owner}.
var campaignScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  if ARGV[3] ~= '0' and cur == ARGV[1] .. '|' .. ARGV[3] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, ARGV[3]}
  end
  return {0, cur}
end
if ARGV[3] ~= '0' then return {0, ''} end
local tok = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. tok, 'PX', ARGV[2])
return {1, tostring(tok)}
`)

// resignScript: KEYS lease; ARGV me, token. Gives up a term still held.
var resignScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] .. '|' .. ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// claimScript: KEYS fence, lease, event; ARGV token, me, event ttl ms.
// Returns 1 first claim, 0 handled already, -1 the term is over.
var claimScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] .. '|' .. ARGV[1] then return -1 end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[3]) then return 1 end
return 0
`)

var allScripts = []*goredis.Script{acquireScript, releaseScript, heartbeatScript, expiredScript, reapScript,
	resyncScript, reconcileScript, campaignScript, resignScript, claimScript, commitScript}
