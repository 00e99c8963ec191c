-- claim.lua: lease messages to one consumer, within its prefetch, highest priority level first.
-- Keys (P = ARGV[1]): P seq, P held, P full, and for each queue q: P delay:<q>, P later:<q>,
--   P idle:<q>, P lv:<q>, and per level p: P s:<q>:<p> (XREADGROUP / XCLAIM in group "g"),
--   P lease:<q>:<p>, P tok:<q>:<p>; channel P wake:<q>.
-- ARGV: P, consumer, prefetch, batch, default lease ms, max idle ms, tick cap, consumer object
--   id, "1" if that object is registered as waiting, q1 .. qn
-- First promotes due delayed messages into their streams and gives back the prefetch slots of
-- expired leases (their entries stay in the PEL, reclaimable). Then, level by level from 9 down,
-- takes the entry that became ready first across the queues: an unread entry (XREADGROUP ">")
-- or an expired/released PEL entry (XCLAIM, which adds one to its delivery count), ready since
-- its lease deadline (or its old place, when released). With one queue and nothing expired at
-- a level it reads up to the batch in one XREADGROUP. It leases one message, or up to `batch`
-- (within the free slots) when at least 4 times as many are ready.
-- Each lease's record in P tok:<q>:<p> keeps the consumer's prefetch (ARGV[3]), so extend.lua can
-- re-lease an expired entry within it after the slot was given back.
-- A consumer that finds nothing (with a free slot) is registered in P idle:<q> of each queue, so
-- the next publish can lease and push an entry straight to it; one that leases, or is full, is
-- taken out again.
-- Returns {now_ms, full (0/1), next_ms or -1, registered (0/1), then per lease: q, "<p>/<id>", token,
-- deliveries, expiry ms, envelope}. next_ms is the earliest due time or lease deadline.
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
local live_levels = {} -- per queue: the levels whose stream exists, highest first
local expired = {} -- "<q>:<p>" -> true where some lease has expired
for _, q in ipairs(queues) do
  moved = moved + promote(q, now, cap)
  local levels = levels_of(q)
  for _, p in ipairs(levels) do
    -- expired leases give their prefetch slot back (the entry waits in the PEL)
    local tk = tkey(q, p)
    local gone = redis.call('ZRANGEBYSCORE', lkey(q, p), '-inf', now, 'LIMIT', 0, cap)
    if #gone > 0 then expired[q .. ':' .. p] = true end
    for _, id in ipairs(gone) do
      local rec = record(q, p, id)
      if rec and rec[3] ~= '' then
        release_slot(rec[3])
        redis.call('HSET', tk, id, format_record(rec[1], rec[2], rec[4], ''))
        moved = moved + 1
      end
    end
  end
  live_levels[q] = levels
end

local held = tonumber(redis.call('HGET', P .. 'held', consumer) or '0')
local room = prefetch - held
local full = 0
local ready = 0
if batch > 1 and room > 1 then
  for _, q in ipairs(queues) do
    for _, p in ipairs(live_levels[q]) do
      ready = ready + redis.call('XLEN', skey(q, p)) - redis.call('ZCARD', lkey(q, p))
    end
  end
end
local limit = math.min(room, batch, math.max(1, math.floor(ready / 4)))
if limit <= 0 then
  redis.call('HSET', P .. 'full', consumer, 1)
  full = 1
end

local out = {now, full, -1, 0}
local leased = 0

-- Lease one entry (fields f, delivery count n) of level p of q to the consumer.
local function lease(q, p, id, f, n, os)
  local vt = tonumber(f['v']) or default_vt
  local token = string.format('%d', next_seq())
  local expires = now + vt
  redis.call('HSET', tkey(q, p), id, format_record(token, os, ARGV[3], consumer))
  redis.call('ZADD', lkey(q, p), expires, id)
  redis.call('HINCRBY', P .. 'held', consumer, 1)
  if vt < max_idle then wake(q) end
  out[#out + 1] = q
  out[#out + 1] = p .. '/' .. id
  out[#out + 1] = token
  out[#out + 1] = n
  out[#out + 1] = expires
  out[#out + 1] = f['e']
  leased = leased + 1
end

-- Read up to `count` unread entries of level p of q and lease them.
local function read(q, p, count)
  local got = redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', count,
    'STREAMS', skey(q, p), '>')
  if not got then return 0 end
  local entries = got[1][2]
  for _, e in ipairs(entries) do
    local f = fields(e[2])
    lease(q, p, e[1], f, (tonumber(f['n']) or 0) + 1, f['a'])
  end
  return #entries
end

-- Reclaim one expired or released PEL entry for the consumer (delivery count + 1).
local function reclaim(q, p, id, os)
  local k = skey(q, p)
  local owner = redis.call('XPENDING', k, GROUP, id, id, 1)
  local got = redis.call('XCLAIM', k, GROUP, consumer, 0, id)
  redis.call('HDEL', tkey(q, p), id)
  if #got == 0 or not got[1] then -- deleted meanwhile: forget it
    redis.call('ZREM', lkey(q, p), id)
    return
  end
  local f = fields(got[1][2])
  local pel = redis.call('XPENDING', k, GROUP, id, id, 1)
  lease(q, p, id, f, (tonumber(f['n']) or 0) + tonumber(pel[1][4]), os)
  -- a consumer left with nothing pending is dropped from the group (no leftover names)
  if #owner > 0 and owner[1][2] ~= consumer then
    if #redis.call('XPENDING', k, GROUP, '-', '+', 1, owner[1][2]) == 0 then
      redis.call('XGROUP', 'DELCONSUMER', k, GROUP, owner[1][2])
    end
  end
end

-- The first unread entry of a stream {id, fields} (peeked, not read), or nil.
local function unread_head(k)
  local last = '0-0'
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', k)) do
    local info = fields(g)
    if info['name'] == GROUP then last = info['last-delivered-id'] end
  end
  local r = redis.call('XRANGE', k, '(' .. last, '+', 'COUNT', 1)
  if #r == 0 then return nil end
  return r[1]
end

-- The candidate of level p of q: {ready ms, seq, kind, id}, or nil.
local function head(q, p)
  local best
  local u = unread_head(skey(q, p))
  if u then
    local f = fields(u[2])
    best = {tonumber(f['a']), tonumber(f['s']), 'u', u[1]}
  end
  local x = redis.call('ZRANGEBYSCORE', lkey(q, p), '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
  if #x > 0 then
    local at = tonumber(x[2])
    if not best or at < best[1] then
      best = {at, -1, 'x', x[1]}
    elseif at == best[1] then -- same ms (e.g. a released entry): the older sequence first
      local e = redis.call('XRANGE', skey(q, p), x[1], x[1])
      local seq = #e > 0 and tonumber(fields(e[1][2])['s']) or -1
      if seq < best[2] then best = {at, seq, 'x', x[1]} end
    end
  end
  return best
end

local function has_level(q, p)
  for _, lp in ipairs(live_levels[q]) do
    if lp == p then return true end
  end
  return false
end

for p = 9, 0, -1 do
  if leased >= limit then break end
  local present = {}
  for _, q in ipairs(queues) do
    if has_level(q, p) then present[#present + 1] = q end
  end
  if #present == 1 and not expired[present[1] .. ':' .. p] then
    read(present[1], p, limit - leased) -- the common case: one queue, nothing expired
  else
    while leased < limit and #present > 0 do
      local bq, bh
      for _, q in ipairs(present) do
        local h = head(q, p)
        if h and (not bh or h[1] < bh[1] or (h[1] == bh[1] and h[2] < bh[2])) then
          bq, bh = q, h
        end
      end
      if not bh then break end
      if bh[3] == 'u' then
        read(bq, p, 1)
      else
        local rec = record(bq, p, bh[4])
        reclaim(bq, p, bh[4], string.format('%d', bh[1]))
        if rec then release_slot(rec[3]) end
      end
    end
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
    local keys = {P .. 'delay:' .. q}
    for _, p in ipairs(live_levels[q]) do keys[#keys + 1] = lkey(q, p) end
    for _, k in ipairs(keys) do
      local h = redis.call('ZRANGEBYSCORE', k, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
      if #h > 0 then
        local s = tonumber(h[2])
        if nxt < 0 or s < nxt then nxt = s end
      end
    end
  end
  out[3] = nxt
end
-- messages made ready by time and left over: let other waiting consumers know
if moved > 0 then
  for _, q in ipairs(queues) do wake(q) end
end
return out
