-- nack.lua: give a delivery back; the message is ready again at once, at the tail of its level.
-- Keys (P = ARGV[1]): P seq, P s:<q>:<p>, P lv:<q>, P lease:<q>:<p>, P tok:<q>:<p>, P held, P full;
--   channels P slot:<c>, P wake:<q>.
-- ARGV: P, retried, queue, "<p>/<entry id>", token
-- The entry is acked and deleted, and a copy appended to the stream carrying its delivery count
-- (field n), so the next delivery counts one more. Returns 1, or 0 for a stale receipt.
local q, mid, token = ARGV[3], ARGV[4], ARGV[5]
local ok, p, id, rec = live(q, mid, token)
if not ok then
  if ARGV[2] == '1' and not rec and gone(q, p, id) then return 1 end
  return 0
end
local f, n = entry_of(q, p, id)
remove(q, p, id, rec)
if f then add_entry(q, p, f['v'], n, f['e'], now_ms()) end
return 1
