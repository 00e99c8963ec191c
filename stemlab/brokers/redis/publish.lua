-- publish.lua: store envelopes, each ready now or delayed until its due time.
-- Keys (P = ARGV[1]): P seq, P msg:<id>, and per queue q: P ready:<q>, P delay:<q>;
--   channel P wake:<q>.
-- ARGV: P, max idle ms, then 5 values per envelope: queue, priority, lease ms or "",
--   due ms or "" (an absolute instant; due now or in the past means ready now), envelope JSON
-- Returns how many were stored.
local now = now_ms()
local max_idle = tonumber(ARGV[2])
local n = 0
for i = 3, #ARGV, 5 do
  publish_one(ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], now, max_idle)
  n = n + 1
end
return n
