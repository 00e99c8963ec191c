-- _lib.lua: helpers prepended to every script of the Redis Streams adapter (touches no key by itself).
--
-- Key layout of one namespace (P = "<namespace>:"; every script receives P as ARGV[1]):
--   P seq              STRING  counter: fencing tokens, entry sequence (tie-break), dead-letter order
--   P s:<q>:<p>        STREAM  messages of queue q at priority p (0..9), consumer group "g";
--                              entry fields e=envelope JSON, v=lease ms or "", n=deliveries before
--                              this entry (a nack re-adds at the tail), a=ms it became ready,
--                              s=sequence. Acked entries are XACKed and XDELed; an empty stream is
--                              deleted (its group with it) and made again by the next publish.
--   P lv:<q>           SET     the levels p of q whose stream exists
--   P lease:<q>:<p>    ZSET    entries in the group's PEL: member entry id, score lease deadline
--                              (server ms); a released entry's score is the ms it became ready
--   P tok:<q>:<p>      HASH    entry id -> "<token>|<ready ms>|<prefetch>|<consumer>" of the live
--                              delivery: the prefetch of the consumer it was leased to (extend.lua
--                              re-leases an expired lease within it) and the consumer whose slot it
--                              holds ("" once its expired lease gave the slot back; the entry stays
--                              in that consumer's PEL, so XPENDING still names it)
--   P delay:<q>        ZSET    delayed messages: member sequence id, score due time (ms)
--   P later:<q>        HASH    delayed messages: sequence id -> "<p>|<lease ms>|<envelope JSON>"
--   P held             HASH    consumer -> live leases (its prefetch slots); field dropped at 0
--   P full             HASH    consumer -> 1 while it waits at its prefetch limit
--   P idle:<q>         ZSET    consumers waiting on q: member "<oid>|<prefetch>|<lease ms>|<name>",
--                              score when they last found it empty (stale after 2 x max idle)
--   P dead:<q>         ZSET    dead letters: member "<seq16>:<envelope id>", score dead_at (us)
--   P deadent:<q>      HASH    dead letters: member -> entry JSON {envelope, reason, meta, dead_at_us}
--   P bc:<ch>          STREAM  broadcasts of channel ch (capped, expires a day after the last one)
--   P cast:<rid>       STRING  an outstanding broadcast delivery (expires after a day)
-- Pub/sub channels (wake-ups only, no data): P wake:<q> (something became ready, or a due time
--   or lease expiry moved sooner), P slot:<consumer> (a full consumer got a slot back),
--   P bcast:<ch> (a broadcast was appended to P bc:<ch>); and one that carries data,
--   P push:<oid>: a just-published entry leased to that waiting consumer object (see push).
-- The dead-letter layout is the sorted-set adapter's, so its dead_read/dead_purge/dead_replay/
-- cast_settle scripts run here unchanged. Keys are derived inside the scripts (standalone Redis).

local P = ARGV[1]
local GROUP = 'g'

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

local function skey(q, p) return P .. 's:' .. q .. ':' .. p end
local function lkey(q, p) return P .. 'lease:' .. q .. ':' .. p end
local function tkey(q, p) return P .. 'tok:' .. q .. ':' .. p end

-- The levels of q whose stream exists, highest first (one SMEMBERS instead of ten EXISTS).
local function levels_of(q)
  local levels = {}
  for _, p in ipairs(redis.call('SMEMBERS', P .. 'lv:' .. q)) do
    levels[#levels + 1] = tonumber(p)
  end
  table.sort(levels, function(a, b) return a > b end)
  return levels
end

local function wake(q)
  redis.call('PUBLISH', P .. 'wake:' .. q, '')
end

-- A flat {k1, v1, k2, v2, ...} reply as a table.
local function fields(list)
  local t = {}
  for i = 1, #list, 2 do t[list[i]] = list[i + 1] end
  return t
end

-- Lease entry `id` (just appended to level p of q, and all that is ready in q, so priority and
-- FIFO hold) straight to the longest-waiting consumer of q with a free prefetch slot, and push
-- it to that consumer object over pub/sub: one round trip less than a wake-up and a claim.
-- PUBLISH counts the receivers, so a consumer that closed or died is skipped; the entry is read
-- into the PEL (XREADGROUP) for the consumer only once the push was received.
local function push(q, p, v, id, env, now, max_idle)
  local ikey = P .. 'idle:' .. q
  if redis.call('EXISTS', ikey) == 0 then return false end
  if #redis.call('ZRANGEBYSCORE', P .. 'delay:' .. q, '-inf', now, 'LIMIT', 0, 1) > 0 then
    return false
  end
  for _, lp in ipairs(levels_of(q)) do
    local mine = 0
    if lp == p then mine = 1 end
    if redis.call('XLEN', skey(q, lp)) - redis.call('ZCARD', lkey(q, lp)) ~= mine
        or #redis.call('ZRANGEBYSCORE', lkey(q, lp), '-inf', now, 'LIMIT', 0, 1) > 0 then
      return false
    end
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
      local at = string.format('%d', now)
      local payload = table.concat({q, p .. '/' .. id, token, '1', expires, at, env}, '\n')
      if redis.call('PUBLISH', P .. 'push:' .. oid, payload) > 0 then
        redis.call('XREADGROUP', 'GROUP', GROUP, name, 'COUNT', 1, 'STREAMS', skey(q, p), '>')
        redis.call('HSET', tkey(q, p), id, token .. '|' .. at .. '|' .. prefetch .. '|' .. name)
        redis.call('ZADD', lkey(q, p), expires, id)
        redis.call('HINCRBY', P .. 'held', name, 1)
        if vt < max_idle then wake(q) end
        return true
      end
    end
  end
end

-- Append one message to the tail of its level (making the stream and its group if needed);
-- a fresh publish (`now` given) may be pushed to a waiting consumer. Otherwise wakes waiting
-- consumers when that level had nothing ready before.
local function add_entry(q, p, v, n, env, at, now, max_idle)
  local k = skey(q, p)
  local woken = false
  if redis.call('EXISTS', k) == 0 then
    redis.call('XGROUP', 'CREATE', k, GROUP, '0', 'MKSTREAM')
    redis.call('SADD', P .. 'lv:' .. q, p)
    woken = true
  elseif redis.call('XLEN', k) == redis.call('ZCARD', lkey(q, p)) then
    woken = true
  end
  local id = redis.call('XADD', k, '*', 'e', env, 'v', v, 'n', n, 'a', at, 's', next_seq())
  if now and push(q, p, v, id, env, now, max_idle) then return end
  if woken then wake(q) end
end

-- Store one envelope: ready now (appended to its level's stream) or delayed until `due` (ms).
-- (Same arguments as the sorted-set adapter's publish_one, so its dead_replay.lua runs here.)
local function publish_one(q, p, v, due, env, now, max_idle)
  local at = tonumber(due)
  if at and at > now then
    local id = string.format('%d', next_seq())
    redis.call('HSET', P .. 'later:' .. q, id, p .. '|' .. v .. '|' .. env)
    redis.call('ZADD', P .. 'delay:' .. q, at, id)
    if at - now < max_idle then wake(q) end
    return
  end
  add_entry(q, p, v, 0, env, now, now, max_idle)
end

-- Move up to `cap` due delayed messages of q into their streams. Returns how many moved.
local function promote(q, now, cap)
  local dkey, hkey = P .. 'delay:' .. q, P .. 'later:' .. q
  local due = redis.call('ZRANGEBYSCORE', dkey, '-inf', now, 'WITHSCORES', 'LIMIT', 0, cap)
  for i = 1, #due, 2 do
    local id = due[i]
    local body = redis.call('HGET', hkey, id)
    redis.call('ZREM', dkey, id)
    redis.call('HDEL', hkey, id)
    if body then
      local p, v, env = string.match(body, '^(%d)|(%d*)|(.*)$')
      add_entry(q, tonumber(p), v, 0, env, due[i + 1])
    end
  end
  return #due / 2
end

-- Give back one prefetch slot of consumer `c`; wake it if it was waiting at its limit.
local function release_slot(c)
  if not c or c == '' then return end
  if redis.call('HINCRBY', P .. 'held', c, -1) <= 0 then
    redis.call('HDEL', P .. 'held', c)
  end
  if redis.call('HDEL', P .. 'full', c) == 1 then
    redis.call('PUBLISH', P .. 'slot:' .. c, '')
  end
end

-- A lease record "<token>|<ready ms>|<prefetch>|<consumer>" as {token, ready ms, consumer
-- holding the slot ("" once given back), prefetch}. A record written before the prefetch was
-- kept ("<token>|<ready ms>|<consumer>") reads with prefetch nil.
local function parse_record(raw)
  local token, os, k, c = string.match(raw, '^([^|]*)|([^|]*)|(%d+)|(.*)$')
  if token then return {token, os, c, k} end
  token, os, c = string.match(raw, '^([^|]*)|([^|]*)|(.*)$')
  return {token, os, c, nil}
end

-- The lease record of entry `id` of level p of q (see parse_record), nil when absent.
local function record(q, p, id)
  local raw = redis.call('HGET', tkey(q, p), id)
  if not raw then return nil end
  return parse_record(raw)
end

-- A lease record from its parts (rec[4], the prefetch, "" when unknown).
local function format_record(token, os, k, c)
  if k == nil or k == '' then return token .. '|' .. os .. '|' .. c end
  return token .. '|' .. os .. '|' .. k .. '|' .. c
end

-- "<p>/<entry id>" -> p (number), entry id; nil for anything else.
local function split_mid(mid)
  local p, id = string.match(mid, '^(%d)/(%d+%-%d+)$')
  if not p then return nil end
  return tonumber(p), id
end

-- The fencing check shared by the settle scripts: whether `token` is the live receipt of the
-- delivery `mid` of queue `q`. Returns ok, p, id, record.
local function live(q, mid, token)
  local p, id = split_mid(mid)
  if not p then return false end
  local rec = record(q, p, id)
  return rec ~= nil and rec[1] == token, p, id, rec
end

-- Whether entry `id` is gone from its stream (a retried settle whose first try was applied).
local function gone(q, p, id)
  if not p then return false end
  return #redis.call('XRANGE', skey(q, p), id, id) == 0
end

-- The entry's fields and its delivery count (deliveries before it + its PEL count).
local function entry_of(q, p, id)
  local k = skey(q, p)
  local e = redis.call('XRANGE', k, id, id)
  if #e == 0 then return nil, 0 end
  local f = fields(e[1][2])
  local pel = redis.call('XPENDING', k, GROUP, id, id, 1)
  local count = 0
  if #pel > 0 then count = tonumber(pel[1][4]) end
  return f, (tonumber(f['n']) or 0) + count
end

-- Settle a live delivery for good: out of the PEL and the stream, its slot freed, its lease
-- and record dropped; an emptied stream is deleted with its group.
local function remove(q, p, id, rec)
  local k = skey(q, p)
  redis.call('XACK', k, GROUP, id)
  redis.call('XDEL', k, id)
  redis.call('ZREM', lkey(q, p), id)
  redis.call('HDEL', tkey(q, p), id)
  release_slot(rec[3])
  if redis.call('XLEN', k) == 0 then
    redis.call('DEL', k)
    redis.call('SREM', P .. 'lv:' .. q, p)
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
