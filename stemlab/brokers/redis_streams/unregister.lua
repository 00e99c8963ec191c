-- unregister.lua: drop a closing consumer from the groups of its queues where it holds nothing.
-- Keys (P = ARGV[1]): P s:<q>:<p> for each queue q and level p (XGROUP DELCONSUMER).
-- ARGV: P, consumer, q1 .. qn
-- A consumer with entries still pending (deliveries handed out, not settled) stays, so that
-- nothing leased is lost. Returns how many group memberships were removed.
local removed = 0
for i = 3, #ARGV do
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
