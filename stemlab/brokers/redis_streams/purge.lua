-- purge.lua: remove a queue's ready, delayed and leased messages (not its dead letters).
-- Keys (P = ARGV[1]): P s:<q>:<p>, P lease:<q>:<p>, P tok:<q>:<p> for p = 0..9, P delay:<q>,
--   P later:<q>, P lv:<q>, P held, P full; channels P slot:<c>, P wake:<q> (payload "purge":
--   consumers drop what they read ahead).
-- ARGV: P, queue, cap (unused: one call removes everything)
-- Returns how many messages were removed.
local q = ARGV[2]
local removed = 0
for p = 0, 9 do
  local k = skey(q, p)
  removed = removed + redis.call('XLEN', k)
  local recs = redis.call('HVALS', tkey(q, p))
  for _, raw in ipairs(recs) do
    release_slot(parse_record(raw)[3])
  end
  redis.call('DEL', k, lkey(q, p), tkey(q, p))
end
local dkey = P .. 'delay:' .. q
removed = removed + redis.call('ZCARD', dkey)
redis.call('DEL', dkey, P .. 'later:' .. q, P .. 'lv:' .. q)
redis.call('PUBLISH', P .. 'wake:' .. q, 'purge')
return removed
