-- tables: queue_messages, queue_dead_letters
-- purge.sql: deletes every ready, delayed and leased message of one queue from
-- queue_messages (its dead letters in queue_dead_letters stay) and notifies the
-- namespace's channel with "!<queue>" (consumers drop what they read ahead of it).
-- Returns one row: how many messages were removed.
-- name: purge
WITH gone AS (
    DELETE FROM queue_messages WHERE ns = %(ns)s AND queue = %(queue)s
    RETURNING 1
)
SELECT count(*), pg_notify(%(channel)s, '!' || %(queue)s) FROM gone
