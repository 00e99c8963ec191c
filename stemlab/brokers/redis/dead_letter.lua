-- dead_letter.lua: move a delivery's message to its queue's dead letters.
-- Keys (P = ARGV[1]): P seq, P msg:<id>, P lease:<q>, P ready:<q>, P held, P full,
--   P dead:<q>, P deadent:<q>; channel P slot:<c>.
-- ARGV: P, retried, queue, id, token, reason JSON, meta JSON, envelope JSON override ("" = the
--   stored one; used for undecodable payloads), envelope id
-- Returns 1, or 0 for a stale receipt.
local q, id, token = ARGV[3], ARGV[4], ARGV[5]
local ok, f = live(q, id, token)
if not ok then
  if ARGV[2] == '1' and not f[2] then return 1 end
  return 0
end
local key = msg_key(id)
local env = ARGV[8]
if env == '' then env = redis.call('HGET', key, 'e') end
unlink(q, id, f)
redis.call('DEL', key)
add_dead(q, env, ARGV[9], ARGV[6], ARGV[7])
return 1
