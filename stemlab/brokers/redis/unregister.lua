-- unregister.lua: a consumer object stops waiting on its queues (it closes).
-- Keys (P = ARGV[1]): P idle:<q> for each queue.
-- ARGV: P, idle member ("<oid>|<prefetch>|<lease ms>|<name>", as claim.lua wrote it), q1 .. qn
-- Returns how many registrations were removed.
local removed = 0
for i = 3, #ARGV do
  removed = removed + redis.call('ZREM', P .. 'idle:' .. ARGV[i], ARGV[2])
end
return removed
