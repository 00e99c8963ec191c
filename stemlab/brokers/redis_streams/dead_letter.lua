-- dead_letter.lua: move a delivery's message to its queue's dead letters.
-- Keys (P = ARGV[1]): P seq, P s:<q>:<p>, P lv:<q>, P lease:<q>:<p>, P tok:<q>:<p>, P held, P full,
--   P dead:<q>, P deadent:<q>; channel P slot:<c>.
-- ARGV: P, retried, queue, "<p>/<entry id>", token, reason JSON, meta JSON, envelope JSON
--   override ("" = the stored one; used for undecodable payloads), the override's envelope id
-- The entry is filed under the id of the envelope it keeps (the stored one's, decoded here,
-- whatever envelope the caller's delivery carries), so `get_dead_letter` finds it; a stored
-- envelope that does not decode to one with a string id is filed under ARGV[9].
-- Returns 1, or 0 for a stale receipt.
local q, mid, token = ARGV[3], ARGV[4], ARGV[5]
local ok, p, id, rec = live(q, mid, token)
if not ok then
  if ARGV[2] == '1' and not rec and gone(q, p, id) then return 1 end
  return 0
end
local env, env_id = ARGV[8], ARGV[9]
if env == '' then
  local e = redis.call('XRANGE', skey(q, p), id, id)
  if #e == 0 then return 0 end
  env = fields(e[1][2])['e']
  local decoded, data = pcall(cjson.decode, env)
  if decoded and type(data) == 'table' and type(data.id) == 'string' then env_id = data.id end
end
remove(q, p, id, rec)
add_dead(q, env, env_id, ARGV[6], ARGV[7])
return 1
