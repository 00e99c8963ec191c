-- Declare (or reset) a group.
-- Keys: KEYS[1] = <ns>:rt:group:<gid> (hash: expected, claimed), KEYS[2] = <ns>:rt:group:<gid>:done (set).
-- ARGV: expected count, ttl in ms.
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'expected', ARGV[1], 'claimed', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
