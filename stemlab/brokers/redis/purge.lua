-- purge.lua: remove up to `cap` of a queue's ready, delayed and leased messages (not its dead
-- letters); the caller repeats until nothing is left.
-- Keys (P = ARGV[1]): P msg:<id>, P ready:<q>, P lease:<q>, P delay:<q>, P held, P full;
--   channels P slot:<c>, P wake:<q> (payload "purge": consumers drop what they read ahead).
-- ARGV: P, queue, cap
-- Returns how many messages were removed.
local q, cap = ARGV[2], tonumber(ARGV[3])
local removed = 0
local rkey, lkey, dkey = P .. 'ready:' .. q, P .. 'lease:' .. q, P .. 'delay:' .. q
for _, member in ipairs(redis.call('ZRANGE', rkey, 0, cap - 1)) do
  redis.call('ZREM', rkey, member)
  redis.call('DEL', msg_key(string.sub(member, 18)))
  removed = removed + 1
end
for _, id in ipairs(redis.call('ZRANGE', dkey, 0, cap - 1)) do
  redis.call('ZREM', dkey, id)
  redis.call('DEL', msg_key(id))
  removed = removed + 1
end
for _, id in ipairs(redis.call('ZRANGE', lkey, 0, cap - 1)) do
  redis.call('ZREM', lkey, id)
  release_slot(redis.call('HGET', msg_key(id), 'c'))
  redis.call('DEL', msg_key(id))
  removed = removed + 1
end
redis.call('PUBLISH', P .. 'wake:' .. q, 'purge')
return removed
