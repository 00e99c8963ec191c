-- release.lua: put entries a consumer leased ahead but never handed out back in their old place.
-- Keys (P = ARGV[1]): P s:<q>:<p> (XPENDING, XCLAIM ... RETRYCOUNT JUSTID), P lease:<q>:<p>,
--   P tok:<q>:<p>, P held, P full; channels P slot:<c>, P wake:<q>.
-- ARGV: P, then 3 values per delivery: queue, "<p>/<entry id>", token
-- Each entry stays in the PEL with its delivery count taken back by one, its lease score set to
-- the ms it became ready (so claims take it again first, in FIFO order), its receipt dead.
-- Returns how many were released.
local released = 0
for i = 2, #ARGV, 3 do
  local q = ARGV[i]
  local ok, p, id, rec = live(q, ARGV[i + 1], ARGV[i + 2])
  if ok then
    local k = skey(q, p)
    local pel = redis.call('XPENDING', k, GROUP, id, id, 1)
    if #pel > 0 then
      local count = math.max(0, tonumber(pel[1][4]) - 1)
      redis.call('XCLAIM', k, GROUP, pel[1][2], 0, id, 'RETRYCOUNT', count, 'JUSTID')
    end
    release_slot(rec[3])
    redis.call('HDEL', tkey(q, p), id)
    redis.call('ZADD', lkey(q, p), tonumber(rec[2]), id)
    wake(q)
    released = released + 1
  end
end
return released
