-- publish.lua: store envelopes, each appended to its level's stream or delayed until due.
-- Keys (P = ARGV[1]): P seq, P held, and per queue q: P lv:<q>, P s:<q>:<p> (XGROUP CREATE, XADD,
--   XREADGROUP for a push), P lease:<q>:<p>, P tok:<q>:<p>, P delay:<q>, P later:<q>,
--   P idle:<q>; channels P wake:<q>, P push:<oid>.
-- ARGV: P, max idle ms, then 5 values per envelope: queue, priority, lease ms or "",
--   due ms or "" (an absolute instant; due now or in the past means ready now), envelope JSON
-- (The sorted-set adapter's arguments, so the broker code is shared.) Returns how many.
local now = now_ms()
local max_idle = tonumber(ARGV[2])
local n = 0
for i = 3, #ARGV, 5 do
  publish_one(ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], now, max_idle)
  n = n + 1
end
return n
