-- ack.lua: settle a delivery; its entry is acked and deleted from the stream for good.
-- Keys (P = ARGV[1]): P s:<q>:<p>, P lv:<q>, P lease:<q>:<p>, P tok:<q>:<p>, P held, P full;
--   channel P slot:<c>.
-- ARGV: P, retried ("1" when re-sent after a lost connection), queue, "<p>/<entry id>", token
-- The receipt is fenced server-side: it must still be the delivery's live token.
-- Returns 1 when acked, 0 for a stale receipt (LeaseLost).
local q, mid, token = ARGV[3], ARGV[4], ARGV[5]
local ok, p, id, rec = live(q, mid, token)
if not ok then
  -- a retry whose first attempt was applied finds the entry already gone
  if ARGV[2] == '1' and not rec and gone(q, p, id) then return 1 end
  return 0
end
remove(q, p, id, rec)
return 1
