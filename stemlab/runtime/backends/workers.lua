-- List the live workers, dropping those whose heartbeat expired.
-- Keys: KEYS[1] = <ns>:rt:workers (zset: worker id -> expiry ms), KEYS[2] = <ns>:rt:worker-info (hash).
-- Returns a flat list: id, info, id, info...
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, id in ipairs(dead) do
    redis.call('HDEL', KEYS[2], id)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local info = redis.call('HGET', KEYS[2], id)
    if info then
        table.insert(out, id)
        table.insert(out, info)
    end
end
return out
