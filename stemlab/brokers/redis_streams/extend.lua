-- extend.lua: move a delivery's lease deadline to `by` ms from now (server time), in place.
-- Keys (P = ARGV[1]): P s:<q>:<p> (XPENDING), P lease:<q>:<p>, P tok:<q>:<p>, P held;
--   channel P wake:<q>.
-- ARGV: P, retried (unused: extending twice is harmless), queue, "<p>/<entry id>", token,
--   by ms, max idle ms
-- The entry stays in the PEL of the same consumer (no copy, no redelivery). A lease that
-- expired but was not reclaimed by anyone is held again by the consumer it was leased to:
-- one whose record still names that consumer keeps its prefetch slot; one whose slot a claim
-- already gave back takes a slot of that consumer (the PEL owner) again, or, when all its
-- prefetch slots are taken (or its record predates the kept prefetch), is refused, so the
-- prefetch cap holds. Returns the new deadline in ms, or -1 for a stale receipt (or a refused
-- re-lease).
local q, mid, token = ARGV[3], ARGV[4], ARGV[5]
local by, max_idle = tonumber(ARGV[6]), tonumber(ARGV[7])
local ok, p, id, rec = live(q, mid, token)
if not ok then return -1 end
if rec[3] == '' then
  local k = tonumber(rec[4])
  if not k then return -1 end
  local pel = redis.call('XPENDING', skey(q, p), GROUP, id, id, 1)
  if #pel == 0 then return -1 end
  local owner = pel[1][2]
  if tonumber(redis.call('HGET', P .. 'held', owner) or '0') >= k then return -1 end
  redis.call('HINCRBY', P .. 'held', owner, 1)
  redis.call('HSET', tkey(q, p), id, format_record(rec[1], rec[2], rec[4], owner))
end
local expires = now_ms() + by
redis.call('ZADD', lkey(q, p), 'XX', expires, id)
if by < max_idle then wake(q) end
return expires
