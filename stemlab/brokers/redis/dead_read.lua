-- dead_read.lua: read dead letters of one queue without changing anything.
-- Keys (P = ARGV[1]): P dead:<q>, P deadent:<q> (read only).
-- ARGV: P, queue, mode, then per mode:
--   "page",  offset, limit      -> {total, member, entry, ...} newest first
--   "since", since us or "-inf", limit or "" -> {member, entry, ...} oldest first, dead_at >= since
--   "id",    envelope id        -> {member, entry} of the newest dead letter of that envelope, or {}
local q, mode = ARGV[2], ARGV[3]
local zkey, hkey = P .. 'dead:' .. q, P .. 'deadent:' .. q

local function with_entries(members, out)
  for i = 1, #members, 500 do
    local chunk = {}
    for j = i, math.min(i + 499, #members) do chunk[#chunk + 1] = members[j] end
    local entries = redis.call('HMGET', hkey, unpack(chunk))
    for j, member in ipairs(chunk) do
      if entries[j] then
        out[#out + 1] = member
        out[#out + 1] = entries[j]
      end
    end
  end
  return out
end

if mode == 'page' then
  local offset, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
  local total = redis.call('ZCARD', zkey)
  if limit <= 0 then return {total} end
  return with_entries(redis.call('ZREVRANGE', zkey, offset, offset + limit - 1), {total})
elseif mode == 'since' then
  local members
  if ARGV[5] == '' then
    members = redis.call('ZRANGEBYSCORE', zkey, ARGV[4], '+inf')
  else
    members = redis.call('ZRANGEBYSCORE', zkey, ARGV[4], '+inf', 'LIMIT', 0, tonumber(ARGV[5]))
  end
  return with_entries(members, {})
elseif mode == 'id' then
  local suffix = ':' .. ARGV[4]
  local total = redis.call('ZCARD', zkey)
  local start = 0
  while start < total do
    for _, member in ipairs(redis.call('ZREVRANGE', zkey, start, start + 499)) do
      if string.sub(member, 17) == suffix then return with_entries({member}, {}) end
    end
    start = start + 500
  end
  return {}
end
return redis.error_reply('dead_read: unknown mode ' .. tostring(mode))
