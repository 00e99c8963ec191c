-- tables: queue_broadcasts, queue_dead_letters, queue_subscriptions, pg_stat_activity
-- sweep.sql: enforces the namespace's retention in one statement: deletes rows of
-- queue_dead_letters older than dead_retention seconds (NULL: keep), rows of
-- queue_broadcasts older than broadcast_retention seconds, and rows of
-- queue_subscriptions whose consumer connection is gone (a crashed process; a live
-- consumer that lost its connection re-subscribes when it reconnects), and untaken
-- broadcast copies addressed to consumers that no longer have a subscription.
-- name: sweep
WITH dead AS (
    DELETE FROM queue_dead_letters
     WHERE ns = %(ns)s AND %(dead_retention)s::float8 IS NOT NULL
       AND dead_at < now() - make_interval(secs => %(dead_retention)s::float8)
    RETURNING 1
),
bcast AS (
    DELETE FROM queue_broadcasts
     WHERE ns = %(ns)s AND %(broadcast_retention)s::float8 IS NOT NULL
       AND created_at < now() - make_interval(secs => %(broadcast_retention)s::float8)
    RETURNING 1
),
subs AS (
    DELETE FROM queue_subscriptions s
     WHERE s.ns = %(ns)s
       AND NOT EXISTS (SELECT 1
                         FROM pg_stat_activity a
                        WHERE a.pid = s.pid
                          AND (a.backend_start IS NULL OR a.backend_start = s.backend_start))
    RETURNING 1
),
orphans AS (
    DELETE FROM queue_broadcasts b
     WHERE b.ns = %(ns)s AND NOT b.taken
       AND NOT EXISTS (SELECT 1
                         FROM queue_subscriptions s
                        WHERE s.ns = b.ns AND s.consumer = b.consumer)
    RETURNING 1
)
SELECT (SELECT count(*) FROM dead)::int AS dead_letters,
       (SELECT count(*) FROM bcast)::int + (SELECT count(*) FROM orphans)::int AS broadcasts,
       (SELECT count(*) FROM subs)::int AS subscriptions
