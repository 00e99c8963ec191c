-- dead_letter.lua: move a delivery's message to its queue's dead letters.
-- Keys (P = ARGV[1]): P seq, P msg:<id>, P lease:<q>, P ready:<q>, P held, P full,
--   P dead:<q>, P deadent:<q>; channel P slot:<c>.
-- ARGV: P, retried, queue, id, token, reason JSON, meta JSON, envelope JSON override ("" = the
--   stored one; used for undecodable payloads), the override's envelope id
-- The entry is filed under the id of the envelope it keeps (the stored one's, whatever
-- envelope the caller's delivery carries), so `get_dead_letter` finds it.
-- Returns 1, or 0 for a stale receipt.
local q, id, token = ARGV[3], ARGV[4], ARGV[5]
local ok, f = live(q, id, token)
if not ok then
  if ARGV[2] == '1' and not f[2] then return 1 end
  return 0
end
local key = msg_key(id)
local env, env_id = ARGV[8], ARGV[9]
if env == '' then
  env = redis.call('HGET', key, 'e')
  local decoded, data = pcall(cjson.decode, env)
  if decoded and type(data) == 'table' and type(data.id) == 'string' then env_id = data.id end
end
unlink(q, id, f)
redis.call('DEL', key)
add_dead(q, env, env_id, ARGV[6], ARGV[7])
return 1
