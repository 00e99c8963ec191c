-- ack_claim.lua: ack a delivery, then run claim.lua for the consumer that held it (one call).
-- Keys (P = ARGV[1]): those of ack.lua, then those of claim.lua.
-- ARGV: P, retried ("1" when re-sent after a lost connection), queue, id, token, then
--   claim.lua's arguments from its ARGV[2] on (consumer, prefetch, batch, ...).
-- The ack is fenced exactly as in ack.lua. Returns 0 for a stale receipt (nothing claimed),
-- 1 when a retried call acked (or found its first attempt applied) without claiming (a
-- retry never claims twice), else claim.lua's reply: the ack freed its slot first, so the
-- claim sees the consumer's prefetch room after the ack.
do
  local q, id, token = ARGV[3], ARGV[4], ARGV[5]
  local ok, f = live(q, id, token)
  if not ok then
    if ARGV[2] == '1' and not f[2] then return 1 end
    return 0
  end
  unlink(q, id, f)
  redis.call('DEL', msg_key(id))
  if ARGV[2] == '1' then return 1 end
  for _ = 1, 4 do table.remove(ARGV, 2) end -- claim.lua reads ARGV[2] on
end
