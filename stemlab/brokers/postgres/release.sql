-- tables: queue_messages
-- release.sql: gives back messages of queue_messages that a closing consumer claimed
-- into its local buffer but never handed out: the lease is dropped and the row gets
-- its place and delivery count back, as if it had never been claimed.
-- name: release
UPDATE queue_messages m
   SET token = NULL, consumer = NULL, available_at = r.ready_at, deliveries = m.deliveries - 1
  FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(ready_ats)s::timestamptz[])
       AS r(id, token, ready_at)
 WHERE m.id = ANY(%(ids)s::bigint[]) AND m.id = r.id AND m.token = r.token AND m.ns = %(ns)s
