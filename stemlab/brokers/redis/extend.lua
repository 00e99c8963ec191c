-- extend.lua: make a delivery's lease expire `by` ms from now (server time), same delivery.
-- Keys (P = ARGV[1]): P msg:<id>, P lease:<q>, P ready:<q>, P held, P full;
--   channels P slot:<c>, P wake:<q>.
-- ARGV: P, retried (unused: extending twice is harmless), queue, id, token, by ms, max idle ms
-- A lease that expired but was not handed to anyone else is leased again to the consumer
-- it was leased to: an expired lease still in P lease:<q> keeps its prefetch slot; one that
-- a claim already moved to ready takes a slot of that consumer again, or, when all its
-- prefetch slots are taken, is refused (so the prefetch cap holds). Returns the new expiry
-- in ms, or -1 for a stale receipt (or a refused re-lease).
local q, id, token = ARGV[3], ARGV[4], ARGV[5]
local by, max_idle = tonumber(ARGV[6]), tonumber(ARGV[7])
local ok, f = live(q, id, token)
if not ok then return -1 end
local key = msg_key(id)
local lkey = P .. 'lease:' .. q
local now = now_ms()
local current = redis.call('ZSCORE', lkey, id)
if not current then
  if not f[4] or redis.call('ZSCORE', P .. 'ready:' .. q, f[4]) == false then return -1 end
  local o = redis.call('HMGET', key, 'o', 'k')
  if o[1] and o[2] then
    local held = tonumber(redis.call('HGET', P .. 'held', o[1]) or '0')
    if held >= tonumber(o[2]) then return -1 end
    redis.call('HINCRBY', P .. 'held', o[1], 1)
    redis.call('HSET', key, 'c', o[1])
  end
  redis.call('ZREM', P .. 'ready:' .. q, f[4])
end
local expires = now + by
redis.call('ZADD', lkey, expires, id)
if by < max_idle then wake(q) end
return expires
