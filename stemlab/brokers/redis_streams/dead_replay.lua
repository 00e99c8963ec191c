-- dead_replay.lua: move chosen dead letters back to their queue, each exactly once.
-- Keys (P = ARGV[1]): P dead:<q>, P deadent:<q>, and as publish.lua: P seq, P held,
--   P lv:<q>, P s:<q>:<p>, P lease:<q>:<p>, P tok:<q>:<p>, P delay:<q>, P later:<q>, P idle:<q>;
--   channels P wake:<q>, P push:<oid>.
-- ARGV: P, queue, max idle ms, then 5 values per dead letter: member, priority, lease ms or "",
--   due ms or "", envelope JSON (the dead envelope with its new not_before)
-- A dead letter that another replay or purge removed meanwhile is skipped.
-- Returns the members that were replayed.
local q = ARGV[2]
local max_idle = tonumber(ARGV[3])
local zkey, hkey = P .. 'dead:' .. q, P .. 'deadent:' .. q
local now = now_ms()
local out = {}
for i = 4, #ARGV, 5 do
  local member = ARGV[i]
  if redis.call('HDEL', hkey, member) == 1 then
    redis.call('ZREM', zkey, member)
    publish_one(q, tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], now, max_idle)
    out[#out + 1] = member
  end
end
return out
