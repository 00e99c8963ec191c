-- dead_letter.lua: move a delivery's message to its queue's dead letters.
-- Keys (P = ARGV[1]): P seq, P s:<q>:<p>, P lv:<q>, P lease:<q>:<p>, P tok:<q>:<p>, P held, P full,
--   P dead:<q>, P deadent:<q>; channel P slot:<c>.
-- ARGV: P, retried, queue, "<p>/<entry id>", token, reason JSON, meta JSON, envelope JSON
--   override ("" = the stored one; used for undecodable payloads), envelope id
-- Returns 1, or 0 for a stale receipt.
local q, mid, token = ARGV[3], ARGV[4], ARGV[5]
local ok, p, id, rec = live(q, mid, token)
if not ok then
  if ARGV[2] == '1' and not rec and gone(q, p, id) then return 1 end
  return 0
end
local env = ARGV[8]
if env == '' then
  local e = redis.call('XRANGE', skey(q, p), id, id)
  if #e == 0 then return 0 end
  env = fields(e[1][2])['e']
end
remove(q, p, id, rec)
add_dead(q, env, ARGV[9], ARGV[6], ARGV[7])
return 1
