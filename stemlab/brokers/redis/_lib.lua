-- _lib.lua: helpers prepended to every script of the Redis adapter (touches no key by itself).
--
-- Key layout of one namespace (P = "<namespace>:"; every script receives P as ARGV[1]):
--   P seq              STRING  counter: message ids, ready order, fencing tokens, dead-letter order
--   P msg:<id>         HASH    e=envelope JSON, q=queue, p=priority, v=lease ms or "", n=deliveries,
--                              t=live fencing token ("~<token>" once nacked), c=consumer whose prefetch
--                              slot the lease holds, o/k=consumer of the last lease and its prefetch
--                              (extend.lua re-leases an expired lease within it), r=its member in
--                              P ready:<q> when last made
--                              ready (left stale once leased: ZREM of a stale member is a no-op)
--   P ready:<q>        ZSET    ready messages: member "<seq16>:<id>", score (9-p)*2^43 + ms it became
--                              ready; so ZPOPMIN gives highest priority first, FIFO inside a level
--   P lease:<q>        ZSET    leased messages: member <id>, score lease expiry (server ms)
--   P delay:<q>        ZSET    delayed messages: member <id>, score due time (ms)
--   P held             HASH    consumer -> live leases (its prefetch slots); field dropped at 0
--   P full             HASH    consumer -> 1 while it waits at its prefetch limit
--   P dead:<q>         ZSET    dead letters: member "<seq16>:<envelope id>", score dead_at (server us)
--   P deadent:<q>      HASH    dead letters: member -> entry JSON {envelope, reason, meta, dead_at_us}
--   P idle:<q>         ZSET    consumers waiting on q: member "<oid>|<prefetch>|<lease ms>|<name>",
--                              score when they last found it empty (stale after 2 x max idle)
--   P cast:<rid>       STRING  an outstanding broadcast delivery (expires after a day)
-- Pub/sub channels: P wake:<q> (something became ready, or a due/expiry moved sooner; payload
--   "purge" when the queue was purged),
--   P slot:<consumer> (a full consumer got a slot back), P push:<oid> (a message leased to
--   that waiting consumer object, pushed with the publish), P bcast:<channel> (broadcasts).
-- Message keys are derived inside the scripts, so this needs a standalone (non-cluster) Redis.

local P = ARGV[1]
local BAND = 8796093022208 -- 2^43 ms (about 278 years) per priority level

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function next_seq()
  return redis.call('INCR', P .. 'seq')
end

local function msg_key(id)
  return P .. 'msg:' .. id
end

local function wake(q)
  redis.call('PUBLISH', P .. 'wake:' .. q, '')
end

-- Put message `id` at the tail of its priority level, as of `at_ms` (when it became ready).
local function make_ready(q, id, p, at_ms)
  local member = string.format('%016d:%s', next_seq(), id)
  redis.call('ZADD', P .. 'ready:' .. q, (9 - p) * BAND + at_ms, member)
  redis.call('HSET', msg_key(id), 'r', member)
end

-- Give back one prefetch slot of consumer `c`; wake it if it was waiting at its limit.
local function release_slot(c)
  if not c then return end
  if redis.call('HINCRBY', P .. 'held', c, -1) <= 0 then
    redis.call('HDEL', P .. 'held', c)
  end
  if redis.call('HDEL', P .. 'full', c) == 1 then
    redis.call('PUBLISH', P .. 'slot:' .. c, '')
  end
end

-- Lease a just-published message straight to the longest-waiting consumer of `q` that has a
-- free prefetch slot, and push it to that consumer object over pub/sub. PUBLISH counts the
-- receivers, so a consumer that closed or died (no subscriber) is skipped. Only when nothing
-- else of `q` is ready or due (so FIFO and priority hold). Returns whether it was pushed.
local function push(q, sid, member, score, p, v, env, now, max_idle)
  local ikey = P .. 'idle:' .. q
  if redis.call('EXISTS', ikey) == 0 or redis.call('EXISTS', P .. 'ready:' .. q) == 1 then
    return false
  end
  for _, k in ipairs({P .. 'delay:' .. q, P .. 'lease:' .. q}) do
    if #redis.call('ZRANGEBYSCORE', k, '-inf', now, 'LIMIT', 0, 1) > 0 then return false end
  end
  while true do
    local head = redis.call('ZRANGE', ikey, 0, 0, 'WITHSCORES')
    if #head == 0 then return false end
    redis.call('ZREM', ikey, head[1])
    local oid, prefetch, dvt, name = string.match(head[1], '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
    local held = tonumber(redis.call('HGET', P .. 'held', name) or '0')
    if oid and tonumber(head[2]) >= now - 2 * max_idle and held < tonumber(prefetch) then
      local vt = tonumber(v) or tonumber(dvt)
      local token = string.format('%d', next_seq())
      local expires = string.format('%d', now + vt)
      local payload = table.concat({q, sid, token, '1', expires, string.format('%d', now), env}, '\n')
      if redis.call('PUBLISH', P .. 'push:' .. oid, payload) > 0 then
        redis.call('HSET', msg_key(sid), 'e', env, 'q', q, 'p', p, 'v', v, 'n', 1, 't', token,
          'c', name, 'o', name, 'k', prefetch, 'os', score, 'om', member, 'r', member)
        redis.call('ZADD', P .. 'lease:' .. q, expires, sid)
        redis.call('HINCRBY', P .. 'held', name, 1)
        if vt < max_idle then wake(q) end
        return true
      end
    end
  end
end

-- Store one envelope: ready now (or pushed to a waiting consumer), or delayed until `due` (ms).
-- Wakes waiters when needed.
local function publish_one(q, p, v, due, env, now, max_idle)
  local id = next_seq()
  local sid = string.format('%d', id)
  local at = tonumber(due)
  if at and at > now then
    redis.call('HSET', msg_key(sid), 'e', env, 'q', q, 'p', p, 'v', v, 'n', 0)
    redis.call('ZADD', P .. 'delay:' .. q, at, sid)
    if at - now < max_idle then wake(q) end
    return
  end
  local member = string.format('%016d:%s', id, sid)
  local score = (9 - p) * BAND + now
  if push(q, sid, member, string.format('%d', score), p, v, env, now, max_idle) then return end
  redis.call('HSET', msg_key(sid), 'e', env, 'q', q, 'p', p, 'v', v, 'n', 0, 'r', member)
  redis.call('ZADD', P .. 'ready:' .. q, score, member)
  if redis.call('ZCARD', P .. 'ready:' .. q) == 1 then wake(q) end
end

-- Move due delayed messages and expired leases of queue `q` to ready (at most `cap` of each),
-- ordered by the instant each became ready. Returns how many moved.
local function tick(q, now, cap)
  local moved = 0
  local dkey, lkey = P .. 'delay:' .. q, P .. 'lease:' .. q
  local due = redis.call('ZRANGEBYSCORE', dkey, '-inf', now, 'WITHSCORES', 'LIMIT', 0, cap)
  for i = 1, #due, 2 do
    local id = due[i]
    redis.call('ZREM', dkey, id)
    local p = tonumber(redis.call('HGET', msg_key(id), 'p'))
    if p then
      make_ready(q, id, p, tonumber(due[i + 1]))
      moved = moved + 1
    end
  end
  local gone = redis.call('ZRANGEBYSCORE', lkey, '-inf', now, 'WITHSCORES', 'LIMIT', 0, cap)
  for i = 1, #gone, 2 do
    local id = gone[i]
    redis.call('ZREM', lkey, id)
    local f = redis.call('HMGET', msg_key(id), 'p', 'c')
    if f[1] then
      release_slot(f[2])
      redis.call('HDEL', msg_key(id), 'c')
      make_ready(q, id, tonumber(f[1]), tonumber(gone[i + 1]))
      moved = moved + 1
    end
  end
  return moved
end

-- The fencing check shared by the settle scripts: whether `token` is the live receipt of
-- message `id` in queue `q`, plus the message fields {t, q, c, r, p} (false where absent).
local function live(q, id, token)
  local f = redis.call('HMGET', msg_key(id), 't', 'q', 'c', 'r', 'p')
  return f[1] == token and f[2] == q, f
end

-- Take a live message out of the lease or ready set it sits in (freeing its slot).
local function unlink(q, id, f)
  if redis.call('ZREM', P .. 'lease:' .. q, id) == 1 then
    release_slot(f[3])
  elseif f[4] then
    redis.call('ZREM', P .. 'ready:' .. q, f[4])
  end
end

-- Append one dead letter for queue `q`; `reason` and `meta` arrive JSON-encoded.
local function add_dead(q, env, env_id, reason, meta)
  local us = now_us()
  local member = string.format('%016d:%s', next_seq(), env_id)
  redis.call('ZADD', P .. 'dead:' .. q, us, member)
  redis.call('HSET', P .. 'deadent:' .. q, member, '{"envelope":' .. env .. ',"reason":' .. reason
    .. ',"meta":' .. meta .. ',"dead_at_us":' .. string.format('%d', us) .. '}')
end
