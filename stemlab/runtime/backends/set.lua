-- Store one task status and wake its watchers.
-- Keys: KEYS[1] = <ns>:rt:result:<id> (string, expires), KEYS[2] = <ns>:rt:done:<id> (channel).
-- ARGV: body (JSON), ttl in ms, "1" when the status is final (then watchers are told).
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] == '1' then
    redis.call('PUBLISH', KEYS[2], '1')
end
return 1
