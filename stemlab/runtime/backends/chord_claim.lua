-- Let exactly one caller claim a complete group (to run its chord callback).
-- Keys: KEYS[1] = <ns>:rt:group:<gid> (hash: expected, claimed), KEYS[2] = <ns>:rt:group:<gid>:done (set).
-- Returns 1 to the one claimant, 0 to everyone else.
local g = redis.call('HMGET', KEYS[1], 'expected', 'claimed')
if not g[1] or g[2] ~= '0' then
    return 0
end
if redis.call('SCARD', KEYS[2]) < tonumber(g[1]) then
    return 0
end
redis.call('HSET', KEYS[1], 'claimed', '1')
return 1
