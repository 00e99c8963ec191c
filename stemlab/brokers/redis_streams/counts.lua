-- counts.lua: pending, in-flight and delayed counts of one queue, exact at server time.
-- Keys (P = ARGV[1]): P s:<q>:<p>, P lease:<q>:<p> for p = 0..9, P delay:<q> (read only).
-- ARGV: P, queue
-- Pending: entries not under a live lease (unread, expired, released) plus due delayed ones.
local q = ARGV[2]
local now = string.format('%d', now_ms())
local pending, inflight = 0, 0
for p = 0, 9 do
  local k = skey(q, p)
  local len = redis.call('XLEN', k)
  if len > 0 then
    local held = redis.call('ZCOUNT', lkey(q, p), '(' .. now, '+inf')
    pending = pending + len - held
    inflight = inflight + held
  end
end
local dkey = P .. 'delay:' .. q
pending = pending + redis.call('ZCOUNT', dkey, '-inf', now)
local delayed = redis.call('ZCOUNT', dkey, '(' .. now, '+inf')
return {pending, inflight, delayed}
