-- claim.lua: lease ready messages to one consumer, within its prefetch.
-- Keys (P = ARGV[1]): P seq, P held, P full, P msg:<id>, and for each queue q:
--   P ready:<q>, P lease:<q>, P delay:<q>, P idle:<q>; channel P wake:<q>.
-- ARGV: P, consumer, prefetch, batch, default lease ms, max idle ms, tick cap, consumer object
--   id, "1" if that object is registered as waiting, q1 .. qn
-- First moves due delayed messages and expired leases of the queues to ready (so any client
-- reclaims, no sweeper), then pops the best head across the queues: lowest score (highest
-- priority, earliest ready), ties broken by the member's sequence. It leases one message, or
-- up to `batch` (never beyond the free prefetch slots) when at least 4 times as many are
-- ready: claiming ahead only out of a real backlog, so a few messages are not hoarded by
-- one consumer while others idle. Each lease remembers its ready score and member (os, om)
-- so that release.lua can put a message the consumer never handed out back in its place.
-- A consumer that finds nothing (and has a free slot) is registered in P idle:<q> of each
-- queue, so the next publish can lease and push a message straight to it; one that leases
-- something, or is full, is taken out again.
-- Returns {now_ms, full (0/1), next_ms or -1, registered (0/1), then per lease: q, id, token,
-- deliveries, expiry ms, envelope}. next_ms is the earliest due time or lease expiry of the
-- queues, computed only when fewer than `limit` were leased (the caller waits until then).
local consumer = ARGV[2]
local prefetch = tonumber(ARGV[3])
local batch = tonumber(ARGV[4])
local default_vt = tonumber(ARGV[5])
local max_idle = tonumber(ARGV[6])
local cap = tonumber(ARGV[7])
local idle_member = ARGV[8] .. '|' .. ARGV[3] .. '|' .. ARGV[5] .. '|' .. consumer
local registered = ARGV[9] == '1'
local queues = {}
for i = 10, #ARGV do queues[#queues + 1] = ARGV[i] end

local now = now_ms()
local moved = 0
for _, q in ipairs(queues) do moved = moved + tick(q, now, cap) end

local held = tonumber(redis.call('HGET', P .. 'held', consumer) or '0')
local room = prefetch - held
local full = 0
local ready = 0
if batch > 1 and room > 1 then
  for _, q in ipairs(queues) do ready = ready + redis.call('ZCARD', P .. 'ready:' .. q) end
end
local limit = math.min(room, batch, math.max(1, math.floor(ready / 4)))
if limit <= 0 then
  redis.call('HSET', P .. 'full', consumer, 1)
  full = 1
end

-- the ready head with the lowest (score, member) across the queues
local function best()
  if #queues == 1 then
    local q = queues[1]
    local got = redis.call('ZPOPMIN', P .. 'ready:' .. q)
    if #got == 0 then return nil end
    return q, got[1], got[2]
  end
  local bq, bm, bs, braw
  for _, q in ipairs(queues) do
    local head = redis.call('ZRANGE', P .. 'ready:' .. q, 0, 0, 'WITHSCORES')
    if #head > 0 then
      local s = tonumber(head[2])
      if not bs or s < bs or (s == bs and head[1] < bm) then
        bq, bm, bs, braw = q, head[1], s, head[2]
      end
    end
  end
  if not bq then return nil end
  redis.call('ZREM', P .. 'ready:' .. bq, bm)
  return bq, bm, braw
end

local out = {now, full, -1, 0}
local leased = 0
while leased < limit do
  local q, member, score = best()
  if not q then break end
  local id = string.sub(member, 18)
  local key = msg_key(id)
  local f = redis.call('HMGET', key, 'e', 'v', 'n')
  if f[1] then
    local vt = tonumber(f[2]) or default_vt
    local n = (tonumber(f[3]) or 0) + 1
    local token = string.format('%d', next_seq())
    local expires = now + vt
    redis.call('HSET', key, 't', token, 'c', consumer, 'o', consumer, 'k', prefetch, 'n', n,
      'os', score, 'om', member)
    redis.call('ZADD', P .. 'lease:' .. q, expires, id)
    redis.call('HINCRBY', P .. 'held', consumer, 1)
    if vt < max_idle then wake(q) end
    out[#out + 1] = q
    out[#out + 1] = id
    out[#out + 1] = token
    out[#out + 1] = n
    out[#out + 1] = expires
    out[#out + 1] = f[1]
    leased = leased + 1
  end
end

if leased == 0 and full == 0 then
  for _, q in ipairs(queues) do
    local ikey = P .. 'idle:' .. q
    redis.call('ZREMRANGEBYSCORE', ikey, '-inf', now - 2 * max_idle) -- crashed waiters
    redis.call('ZADD', ikey, now, idle_member)
  end
  out[4] = 1
elseif registered then
  for _, q in ipairs(queues) do redis.call('ZREM', P .. 'idle:' .. q, idle_member) end
end
if leased < limit or full == 1 then
  local nxt = -1
  for _, q in ipairs(queues) do
    for _, k in ipairs({P .. 'delay:' .. q, P .. 'lease:' .. q}) do
      local head = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
      if #head > 0 then
        local s = tonumber(head[2])
        if nxt < 0 or s < nxt then nxt = s end
      end
    end
  end
  out[3] = nxt
end
-- messages moved to ready by time and left over: let other waiting consumers know
if moved > 0 then
  for _, q in ipairs(queues) do
    if redis.call('ZCARD', P .. 'ready:' .. q) > 0 then wake(q) end
  end
end
return out
