-- extend.lua: make a delivery's lease expire `by` ms from now (server time), same delivery.
-- Keys (P = ARGV[1]): P msg:<id>, P lease:<q>, P ready:<q>, P held, P full;
--   channels P slot:<c>, P wake:<q>.
-- ARGV: P, retried (unused: extending twice is harmless), queue, id, token, by ms, max idle ms
-- A lease that expired but was not handed to anyone else is leased again to the caller
-- (without a prefetch slot, as the consumer may be gone). Returns the new expiry in ms,
-- or -1 for a stale receipt.
local q, id, token = ARGV[3], ARGV[4], ARGV[5]
local by, max_idle = tonumber(ARGV[6]), tonumber(ARGV[7])
local ok, f = live(q, id, token)
if not ok then return -1 end
local key = msg_key(id)
local lkey = P .. 'lease:' .. q
local now = now_ms()
local current = redis.call('ZSCORE', lkey, id)
if current then
  if tonumber(current) <= now then
    release_slot(f[3])
    redis.call('HDEL', key, 'c')
  end
elseif not (f[4] and redis.call('ZREM', P .. 'ready:' .. q, f[4]) == 1) then
  return -1
end
local expires = now + by
redis.call('ZADD', lkey, expires, id)
if by < max_idle then wake(q) end
return expires
