-- Record a worker heartbeat with the server's clock.
-- Keys: KEYS[1] = <ns>:rt:workers (zset: worker id -> expiry ms), KEYS[2] = <ns>:rt:worker-info (hash).
-- ARGV: worker id, info JSON, ttl in ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
