-- broadcast.lua: append a broadcast to its channel's stream and wake the subscribers.
-- Keys (P = ARGV[1]): P bc:<ch>; channel P bcast:<ch>.
-- ARGV: P, channel, envelope JSON, max entries kept, ms the stream lives after the last one
-- Each subscriber reads the stream from the tail it saw when it subscribed (XREAD, no group),
-- so a broadcast reaches exactly the consumers subscribed at the time.
local k = P .. 'bc:' .. ARGV[2]
local id = redis.call('XADD', k, 'MAXLEN', '~', ARGV[4], '*', 'e', ARGV[3])
redis.call('PEXPIRE', k, ARGV[5])
redis.call('PUBLISH', P .. 'bcast:' .. ARGV[2], '')
return id
