package redis

import goredis "github.com/redis/go-redis/v9"

// Accounting is partitioned so that a Redis Cluster spreads it over its
// masters: each media server's counts live under their own hash tag
// (S = {<prefix>:acct:s:<server>}), each org's under theirs
// (O = {<prefix>:acct:o:<org>}), and what concerns the whole cluster (node
// leases, the epoch, a recovery in progress) under G = {<prefix>:acct}.
//
// A leg's server and org counts are in two partitions, so no script can
// check both limits at once. The org's partition is the one authority on
// the org's count and the server's on the server's: a leg is counted in
// both, one after the other, and when the second refuses it the first is
// undone. While that happens the leg counts where it was accepted, for one
// round trip, exactly as a leg that is placed and ends at once: neither count
// ever exceeds its limit, and a count never includes a leg that is not
// counted in its partition. When both limits are set the org is asked first
// (then a leg the org refuses never touches the server); when only one is,
// both partitions are written in the same round trip. On a single Redis
// (or a Sentinel's master), where every partition is on one server, one
// script checks and counts both at once instead (the org's limit first
// there too, so a leg both would refuse is refused by the org everywhere).
//
// Layout of a partition P (S or O):
//
//	P:h            hash  hold id -> other US lease US channel US acquired-ms
//	               (other: the org in S, the server in O); the count is HLEN
//	P:l:<lease>    set   hold ids of a node's lease in this partition
//	P:t:<id>       tombstone of a released hold, so that a late acquire or
//	               a node putting its legs back never counts it again
//	P:gone:<lease> the lease was adopted by another node: nothing more is
//	               counted under it here
//
// and of G:
//
//	G:leases       zset  lease (node/incarnation) -> expiry, ms of Redis time
//	G:lp:<lease>   set   partitions the lease counts legs in ("s:x", "o:y")
//	G:epoch        the cluster's epoch, a random token: it changes when Redis
//	               lost data (or may have), never otherwise
//	G:rec          hash  a recovery after data loss: epoch, deadline (ms)
//	G:rec:pending  set   leases that have not yet put their legs back
//
// Counts are hash sizes, so they cannot go negative, and acquiring or
// releasing a hold twice changes nothing. Scripts build key names inside
// their partition from its prefix (allowed on a cluster: they are in the
// declared keys' slot).

// acquireScript: KEYS h, l:<lease>, t:<id>, gone:<lease>; ARGV id, other,
// lease, channel, limit (0 = none). Returns 1 held, -1 full, -3 released
// already, -4 lease adopted by another node.
var acquireScript = goredis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -3 end
if redis.call('EXISTS', KEYS[4]) == 1 then return -4 end
local lim = tonumber(ARGV[5])
if lim > 0 and redis.call('HLEN', KEYS[1]) >= lim then return -1 end
local t = redis.call('TIME')
local ms = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '\31' .. ARGV[3] .. '\31' .. ARGV[4] .. '\31' .. ms)
redis.call('SADD', KEYS[2], ARGV[1])
return 1
`)

// acquireBothScript: the acquire of a leg in its server's partition and
// its org's at once, where both are on one Redis (not a Cluster): KEYS
// server h, l:<lease>, t:<id>, gone:<lease>, then the same of the org; ARGV
// id, server, org, lease, channel, server limit, org limit. Returns 1 held,
// -1 server full, -2 org full, -3 released already, -4 lease adopted.
var acquireBothScript = goredis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[7]) == 1 then return -3 end
if redis.call('EXISTS', KEYS[4]) == 1 or redis.call('EXISTS', KEYS[8]) == 1 then return -4 end
local sl, ol = tonumber(ARGV[6]), tonumber(ARGV[7])
if ol > 0 and redis.call('HLEN', KEYS[5]) >= ol then return -2 end
if sl > 0 and redis.call('HLEN', KEYS[1]) >= sl then return -1 end
local t = redis.call('TIME')
local ms = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. '\31' .. ARGV[4] .. '\31' .. ARGV[5] .. '\31' .. ms)
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[2] .. '\31' .. ARGV[4] .. '\31' .. ARGV[5] .. '\31' .. ms)
redis.call('SADD', KEYS[6], ARGV[1])
return 1
`)

// releaseScript: KEYS h, t:<id>; ARGV id, tombstone ttl ms (0 = none),
// partition prefix. Returns 1 released, 0 unknown (a tombstone now refuses a
// late acquire).
var releaseScript = goredis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then
  if ARGV[2] ~= '0' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
  return 0
end
local l = string.match(v, '^[^\31]*\31([^\31]*)\31')
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', ARGV[3] .. 'l:' .. l, ARGV[1])
return 1
`)

// releaseBothScript: releaseScript in a leg's server partition and its
// org's at once (KEYS and ARGV of both, one after the other). Returns 1.
var releaseBothScript = goredis.NewScript(`
for i = 0, 1 do
  local h, tk, id, ttl, p = KEYS[1 + 2 * i], KEYS[2 + 2 * i], ARGV[1 + 3 * i], ARGV[2 + 3 * i], ARGV[3 + 3 * i]
  local v = redis.call('HGET', h, id)
  if not v then
    if ttl ~= '0' then redis.call('SET', tk, '1', 'PX', ttl) end
  else
    local l = string.match(v, '^[^\31]*\31([^\31]*)\31')
    redis.call('HDEL', h, id)
    redis.call('SREM', p .. 'l:' .. l, id)
  end
end
return 1
`)

// dropScript: KEYS h; ARGV partition prefix, tombstone ttl ms, min age ms,
// then id, channel pairs (an empty channel: any). Releases each hold still on that
// channel and older than min age, and tombstones it so that a node putting
// its legs back does not revive it. Returns id, other pairs released.
var dropScript = goredis.NewScript(`
local p = ARGV[1]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local minAge = tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local v = redis.call('HGET', KEYS[1], id)
  if v then
    local o, l, c, at = string.match(v, '^([^\31]*)\31([^\31]*)\31([^\31]*)\31(%d+)$')
    if (ARGV[i + 1] == '' or c == ARGV[i + 1]) and now - tonumber(at) >= minAge then
      redis.call('HDEL', KEYS[1], id)
      redis.call('SREM', p .. 'l:' .. l, id)
      redis.call('SET', p .. 't:' .. id, '1', 'PX', ARGV[2])
      out[#out + 1] = id
      out[#out + 1] = o
    end
  end
end
return out
`)

// recPending is Lua shared by the scripts that read a recovery (KEYS[1]
// leases, rec and pending given as rk, pk; now in ms): the leases still
// pending. Once the recovery's deadline (a lease TTL after it began) has
// passed, a pending lease that is not alive any more (it expired, or never
// came back after the loss) is given up; a live one is waited for.
const recPending = `
local function recPending(rk, pk, now)
  local dl = redis.call('HGET', rk, 'deadline')
  if not dl then return 0, 0 end
  local left = tonumber(dl) - now
  if left <= 0 then
    for _, l in ipairs(redis.call('SMEMBERS', pk)) do
      local sc = redis.call('ZSCORE', KEYS[1], l)
      if not sc or tonumber(sc) <= now then redis.call('SREM', pk, l) end
    end
  end
  return redis.call('SCARD', pk), left
end
`

// heartbeatScript: KEYS leases, epoch, rec, rec:pending; ARGV lease, ttl
// ms, a fresh epoch token (used if there is none). Returns {1 renewed or 0
// created (first beat, or the lease was adopted or lost), epoch, recovery
// epoch or empty, recovery ms left, leases pending in the recovery, 1 if this
// lease is one of them, then the live leases}.
var heartbeatScript = goredis.NewScript(recPending + `
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local had = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
local e = redis.call('GET', KEYS[2])
if not e then
  e = ARGV[3]
  redis.call('SET', KEYS[2], e)
end
local re = redis.call('HGET', KEYS[3], 'epoch') or ''
local pending, left = recPending(KEYS[3], KEYS[4], now)
local mine = redis.call('SISMEMBER', KEYS[4], ARGV[1])
local out = {had and 1 or 0, e, re, left, pending, mine}
for _, l in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', now), '+inf')) do
  out[#out + 1] = l
end
return out
`)

// recoverScript: KEYS epoch, rec, rec:pending, leases; ARGV the epoch the
// node knew, a fresh token, recovery ms, then the leases the node last saw
// alive. Begins a recovery after data loss, or joins the one under way:
// the epoch changes (once per loss, whoever comes first) and every lease that
// may hold legs must put them back before counting resumes (or the deadline
// passes). Returns the epoch of the recovery.
var recoverScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local e = redis.call('GET', KEYS[1])
if not e or e == ARGV[1] then
  e = ARGV[2]
  redis.call('SET', KEYS[1], e)
end
if redis.call('HGET', KEYS[2], 'epoch') ~= e then
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[2], 'epoch', e, 'deadline', string.format('%d', now + tonumber(ARGV[3])))
  for _, l in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. string.format('%d', now), '+inf')) do
    redis.call('SADD', KEYS[3], l)
  end
  for i = 4, #ARGV do redis.call('SADD', KEYS[3], ARGV[i]) end
  redis.call('PEXPIRE', KEYS[2], 3 * tonumber(ARGV[3]))
  redis.call('PEXPIRE', KEYS[3], 3 * tonumber(ARGV[3]))
end
return e
`)

// publishedScript: KEYS leases, rec, rec:pending; ARGV epoch, process. The
// process (every lease it had: a node may have taken a new one) put its
// legs back for the recovery of that epoch. Returns {leases still pending,
// ms left, the epoch of the recovery under way or empty}.
var publishedScript = goredis.NewScript(recPending + `
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local re = redis.call('HGET', KEYS[2], 'epoch')
if not re then return {0, 0, ''} end
if re ~= ARGV[1] then return {0, 0, re} end
for _, l in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if string.sub(l, 1, #ARGV[2]) == ARGV[2] then redis.call('SREM', KEYS[3], l) end
end
local pending, left = recPending(KEYS[2], KEYS[3], now)
return {pending, left, re}
`)

// registerScript: KEYS leases, lp:<lease>; ARGV lease, then partitions.
// Records where a live lease counts legs, so that whoever adopts it finds
// them. Returns 1, or -4 when the lease is not alive.
var registerScript = goredis.NewScript(`
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return -4 end
for i = 2, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
return 1
`)

// expiredScript: KEYS leases. Returns lease, score pairs of expired leases.
var expiredScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now), 'WITHSCORES', 'LIMIT', 0, 64)
`)

// claimLeaseScript: KEYS leases, lp:<dead>, lp:<me>; ARGV dead lease, the
// score seen expired (empty: whatever it is, the same node restarted), me.
// Takes a dead node's lease over: it is removed, unless renewed since, and
// its partitions become the adopter's. Returns them, or -1.
var claimLeaseScript = goredis.NewScript(`
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) then return -1 end
local sc = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and sc ~= ARGV[2] then return -1 end
redis.call('ZREM', KEYS[1], ARGV[1])
local parts = redis.call('SMEMBERS', KEYS[2])
for _, p in ipairs(parts) do redis.call('SADD', KEYS[3], p) end
redis.call('DEL', KEYS[2])
return parts
`)

// adoptScript: KEYS h, l:<dead>, l:<me>, gone:<dead>; ARGV me, gone ttl ms.
// Moves a dead lease's holds in one partition to the adopter's lease, and
// refuses any later acquire under the dead lease there. Returns id, record
// pairs adopted.
var adoptScript = goredis.NewScript(`
redis.call('SET', KEYS[4], '1', 'PX', ARGV[2])
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local v = redis.call('HGET', KEYS[1], id)
  if v then
    local o, c, at = string.match(v, '^([^\31]*)\31[^\31]*\31([^\31]*)\31(%d+)$')
    local rec = o .. '\31' .. ARGV[1] .. '\31' .. c .. '\31' .. at
    redis.call('HSET', KEYS[1], id, rec)
    redis.call('SADD', KEYS[3], id)
    out[#out + 1] = id
    out[#out + 1] = rec
  end
end
redis.call('DEL', KEYS[2])
return out
`)

// putBackScript: KEYS h, l:<lease>; ARGV partition prefix, lease, then id,
// other, channel triples. Puts back the holds of a live node (Redis lost
// them, its lease was adopted while it was cut off, or they were let through
// while Redis was down), without a limit check: their channels are up. A
// hold counted under another lease is taken back; a tombstoned one stays
// released. Returns the ids that stay released.
var putBackScript = goredis.NewScript(`
local p, lease = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local ms = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
local gone = {}
for i = 3, #ARGV, 3 do
  local id, o, c = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('EXISTS', p .. 't:' .. id) == 1 then
    gone[#gone + 1] = id
  else
    local v = redis.call('HGET', KEYS[1], id)
    if v then
      local l, at = string.match(v, '^[^\31]*\31([^\31]*)\31[^\31]*\31(%d+)$')
      if l ~= lease then
        redis.call('SREM', p .. 'l:' .. l, id)
        redis.call('HSET', KEYS[1], id, o .. '\31' .. lease .. '\31' .. c .. '\31' .. at)
        redis.call('SADD', KEYS[2], id)
      end
    else
      redis.call('HSET', KEYS[1], id, o .. '\31' .. lease .. '\31' .. c .. '\31' .. ms)
      redis.call('SADD', KEYS[2], id)
    end
  end
end
return gone
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

var allScripts = []*goredis.Script{acquireScript, acquireBothScript, releaseScript, releaseBothScript, dropScript, heartbeatScript, recoverScript,
	publishedScript, registerScript, expiredScript, claimLeaseScript, adoptScript, putBackScript, campaignScript,
	resignScript, claimScript, commitScript, beginStoryScript, connectStoryScript, endStoryScript, connectedToScript,
	ofLegScript}
