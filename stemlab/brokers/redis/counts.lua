-- counts.lua: pending, in-flight and delayed counts of one queue, exact at server time.
-- Keys (P = ARGV[1]): P ready:<q>, P lease:<q>, P delay:<q> (read only).
-- ARGV: P, queue
-- Due delayed messages and expired leases not yet moved by a claim count as pending.
local q = ARGV[2]
local now = now_ms()
local rkey, lkey, dkey = P .. 'ready:' .. q, P .. 'lease:' .. q, P .. 'delay:' .. q
local pending = redis.call('ZCARD', rkey) + redis.call('ZCOUNT', dkey, '-inf', now)
  + redis.call('ZCOUNT', lkey, '-inf', now)
local inflight = redis.call('ZCOUNT', lkey, '(' .. string.format('%d', now), '+inf')
local delayed = redis.call('ZCOUNT', dkey, '(' .. string.format('%d', now), '+inf')
return {pending, inflight, delayed}
