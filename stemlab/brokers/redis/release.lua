-- release.lua: put messages a consumer leased ahead but never handed out back where they were.
-- Keys (P = ARGV[1]): P msg:<id>, P lease:<q>, P ready:<q>, P held, P full;
--   channels P slot:<c>, P wake:<q>.
-- ARGV: P, then 3 values per message: queue, id, token
-- Each goes back to its old ready score and member (so FIFO order is kept), its delivery count
-- is taken back, and its receipt dies. One whose lease already expired and moved on is left
-- alone. Returns how many were released.
local released = 0
for i = 2, #ARGV, 3 do
  local q, id = ARGV[i], ARGV[i + 1]
  local ok, f = live(q, id, ARGV[i + 2])
  if ok and redis.call('ZREM', P .. 'lease:' .. q, id) == 1 then
    release_slot(f[3])
    local key = msg_key(id)
    local o = redis.call('HMGET', key, 'os', 'om', 'n')
    local n = math.max(0, (tonumber(o[3]) or 1) - 1)
    redis.call('HDEL', key, 'c', 't')
    redis.call('HSET', key, 'n', n, 'r', o[2])
    redis.call('ZADD', P .. 'ready:' .. q, o[1], o[2])
    if redis.call('ZCARD', P .. 'ready:' .. q) == 1 then wake(q) end
    released = released + 1
  end
end
return released
