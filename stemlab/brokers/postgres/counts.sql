-- tables: queue_messages
-- counts.sql: counts one queue's rows of queue_messages by state at the server's now():
-- pending (claimable now, including expired leases), inflight (live leases) and
-- delayed (not yet due, never leased since the last publish or requeue).
-- name: counts
SELECT count(*) FILTER (WHERE available_at <= now())::int AS pending,
       count(*) FILTER (WHERE available_at > now() AND token IS NOT NULL)::int AS inflight,
       count(*) FILTER (WHERE available_at > now() AND token IS NULL)::int AS delayed
  FROM queue_messages
 WHERE ns = %(ns)s AND queue = %(queue)s
