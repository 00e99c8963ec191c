-- Count one task as done in a group; false when the group was never declared.
-- Keys: KEYS[1] = <ns>:rt:group:<gid> (hash: expected, claimed), KEYS[2] = <ns>:rt:group:<gid>:done (set).
-- ARGV: task id, ttl in ms. Returns {expected, done, claimed}.
if redis.call('EXISTS', KEYS[1]) == 0 then
    return false
end
if ARGV[1] ~= '' then
    redis.call('SADD', KEYS[2], ARGV[1])
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
local g = redis.call('HMGET', KEYS[1], 'expected', 'claimed')
return {tonumber(g[1]), redis.call('SCARD', KEYS[2]), tonumber(g[2])}
