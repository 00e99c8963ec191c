-- tables: queue_messages
-- publish_many.sql: inserts a batch of messages into queue_messages (array parameters,
-- kept in order so seq follows the batch order) and sends ONE notification on the
-- namespace's channel listing the distinct queues ('*' when the list is too long).
-- name: publish_many
WITH ins AS (
    INSERT INTO queue_messages (ns, queue, priority, available_at, visibility, body)
    SELECT %(ns)s, t.queue, t.priority, greatest(now(), t.not_before), t.visibility, t.body
      FROM unnest(%(queues)s::text[], %(priorities)s::smallint[], %(not_befores)s::timestamptz[],
                  %(visibilities)s::float8[], %(bodies)s::bytea[])
           WITH ORDINALITY AS t(queue, priority, not_before, visibility, body, ord)
     ORDER BY t.ord
    RETURNING queue
),
names AS (
    SELECT string_agg(DISTINCT queue, ',') AS list FROM ins
)
SELECT pg_notify(%(channel)s, CASE WHEN length(list) > 7000 THEN '*' ELSE list END)
  FROM names
 WHERE list IS NOT NULL
