-- unregister.lua: a closing consumer object stops waiting on its queues, and leaves the groups
-- where it holds nothing.
-- Keys (P = ARGV[1]): P idle:<q>, and P s:<q>:<p> for each level p (XGROUP DELCONSUMER).
-- ARGV: P, consumer, idle member ("<oid>|<prefetch>|<lease ms>|<name>", as claim.lua wrote it),
--   q1 .. qn
-- A consumer with entries still pending (deliveries handed out, not settled) stays, so that
-- nothing leased is lost. Returns how many group memberships were removed.
local removed = 0
for i = 4, #ARGV do
  redis.call('ZREM', P .. 'idle:' .. ARGV[i], ARGV[3])
  for p = 0, 9 do
    local k = skey(ARGV[i], p)
    if redis.call('EXISTS', k) == 1
        and #redis.call('XPENDING', k, GROUP, '-', '+', 1, ARGV[2]) == 0 then
      redis.call('XGROUP', 'DELCONSUMER', k, GROUP, ARGV[2])
      removed = removed + 1
    end
  end
end
return removed
