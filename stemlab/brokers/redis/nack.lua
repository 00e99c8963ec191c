-- nack.lua: give a delivery back; the message is ready again at once, at the tail of its level.
-- Keys (P = ARGV[1]): P seq, P msg:<id>, P lease:<q>, P ready:<q>, P held, P full;
--   channels P slot:<c>, P wake:<q>.
-- ARGV: P, retried, queue, id, token
-- A message whose lease expired and that already went back to ready stays where it is.
-- The token is kept as "~<token>" so that the receipt is stale from now on, yet a retried
-- call can tell that its first attempt was applied. Returns 1, or 0 for a stale receipt.
local q, id, token = ARGV[3], ARGV[4], ARGV[5]
local ok, f = live(q, id, token)
if not ok then
  if ARGV[2] == '1' and f[1] == '~' .. token then return 1 end
  return 0
end
local key = msg_key(id)
if redis.call('ZREM', P .. 'lease:' .. q, id) == 1 then
  release_slot(f[3])
  redis.call('HDEL', key, 'c')
  make_ready(q, id, tonumber(f[5]), now_ms())
  if redis.call('ZCARD', P .. 'ready:' .. q) == 1 then wake(q) end
end
redis.call('HSET', key, 't', '~' .. token)
return 1
