-- tables: queue_messages, queue_broadcasts, queue_dead_letters, queue_subscriptions
-- delete_namespace.sql: removes every row of one namespace from queue_messages,
-- queue_dead_letters, queue_subscriptions and queue_broadcasts (other namespaces stay).
-- name: delete_namespace
WITH m AS (DELETE FROM queue_messages WHERE ns = %(ns)s RETURNING 1),
     d AS (DELETE FROM queue_dead_letters WHERE ns = %(ns)s RETURNING 1),
     s AS (DELETE FROM queue_subscriptions WHERE ns = %(ns)s RETURNING 1),
     b AS (DELETE FROM queue_broadcasts WHERE ns = %(ns)s RETURNING 1)
SELECT (SELECT count(*) FROM m)::int + (SELECT count(*) FROM d)::int
     + (SELECT count(*) FROM s)::int + (SELECT count(*) FROM b)::int
