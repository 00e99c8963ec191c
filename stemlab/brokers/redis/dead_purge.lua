-- dead_purge.lua: delete dead letters of one queue, oldest first, dead at or after `since`.
-- Keys (P = ARGV[1]): P dead:<q>, P deadent:<q>.
-- ARGV: P, queue, since us or "-inf", limit or "" (no limit)
-- Returns how many were deleted.
local q = ARGV[2]
local zkey, hkey = P .. 'dead:' .. q, P .. 'deadent:' .. q
local members
if ARGV[4] == '' then
  members = redis.call('ZRANGEBYSCORE', zkey, ARGV[3], '+inf')
else
  members = redis.call('ZRANGEBYSCORE', zkey, ARGV[3], '+inf', 'LIMIT', 0, tonumber(ARGV[4]))
end
for i = 1, #members, 500 do
  local chunk = {}
  for j = i, math.min(i + 499, #members) do chunk[#chunk + 1] = members[j] end
  redis.call('ZREM', zkey, unpack(chunk))
  redis.call('HDEL', hkey, unpack(chunk))
end
return #members
