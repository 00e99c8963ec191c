-- tables: queue_messages
-- publish.sql: inserts one message into queue_messages and notifies the namespace's
-- channel with the queue name, in one statement (one round trip, one commit).
-- A message with not_before in the future is stored with available_at = not_before.
-- name: publish
WITH ins AS (
    INSERT INTO queue_messages (ns, queue, priority, available_at, visibility, body)
    VALUES (%(ns)s, %(queue)s, %(priority)s, greatest(now(), %(not_before)s::timestamptz),
            %(visibility)s, %(body)s)
    RETURNING queue
)
SELECT pg_notify(%(channel)s, queue) FROM ins
