-- extend.lua: move a delivery's lease deadline to `by` ms from now (server time), in place.
-- Keys (P = ARGV[1]): P lease:<q>:<p>, P tok:<q>:<p>; channel P wake:<q>.
-- ARGV: P, retried (unused: extending twice is harmless), queue, "<p>/<entry id>", token,
--   by ms, max idle ms
-- The entry stays in the PEL of the same consumer (no copy, no redelivery). A lease that
-- expired but was not reclaimed by anyone is held again by the caller (without a prefetch
-- slot if it already gave that back). Returns the new deadline in ms, or -1 for a stale receipt.
local q, mid, token = ARGV[3], ARGV[4], ARGV[5]
local by, max_idle = tonumber(ARGV[6]), tonumber(ARGV[7])
local ok, p, id = live(q, mid, token)
if not ok then return -1 end
local expires = now_ms() + by
redis.call('ZADD', lkey(q, p), 'XX', expires, id)
if by < max_idle then wake(q) end
return expires
