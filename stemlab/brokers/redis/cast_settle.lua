-- cast_settle.lua: release a broadcast delivery (ack or nack), or dead-letter a copy of it.
-- Keys (P = ARGV[1]): P cast:<rid>, and for "dead": P seq, P dead:<q>, P deadent:<q>.
-- ARGV: P, retried, receipt id, mode ("release" | "dead"), and for "dead":
--   queue, reason JSON, meta JSON, envelope JSON, envelope id
-- Returns 1, or 0 when the delivery was settled already (LeaseLost).
local key = P .. 'cast:' .. ARGV[3]
if redis.call('DEL', key) == 0 then
  if ARGV[2] == '1' then return 1 end
  return 0
end
if ARGV[4] == 'dead' then
  add_dead(ARGV[5], ARGV[8], ARGV[9], ARGV[6], ARGV[7])
end
return 1
