-- ack.lua: settle a delivery; the message is removed for good.
-- Keys (P = ARGV[1]): P msg:<id>, P lease:<q>, P ready:<q>, P held, P full; channel P slot:<c>.
-- ARGV: P, retried ("1" when re-sent after a lost connection), queue, id, token
-- The receipt is fenced server-side: it must still be the message's live token.
-- Returns 1 when acked, 0 for a stale receipt (LeaseLost).
local q, id, token = ARGV[3], ARGV[4], ARGV[5]
local ok, f = live(q, id, token)
if not ok then
  -- a retry whose first attempt was applied finds the message already gone
  if ARGV[2] == '1' and not f[2] then return 1 end
  return 0
end
unlink(q, id, f)
redis.call('DEL', msg_key(id))
return 1
