-- tables: queue_subscriptions, pg_stat_activity
-- subscribe.sql: records in queue_subscriptions that a consumer listens to broadcast
-- channels, with its connection's pid and start time (for the crashed-consumer sweep).
-- name: subscribe
INSERT INTO queue_subscriptions (ns, consumer, channel, pid, backend_start)
SELECT %(ns)s, %(consumer)s, c.channel, pg_backend_pid(),
       (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())
  FROM unnest(%(channels)s::text[]) AS c(channel)
ON CONFLICT (ns, channel, consumer)
DO UPDATE SET pid = excluded.pid, backend_start = excluded.backend_start
