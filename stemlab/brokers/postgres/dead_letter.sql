-- tables: queue_messages, queue_dead_letters
-- dead_letter.sql: moves a leased message from queue_messages to queue_dead_letters in
-- one statement if the receipt's token is current (no row returned = stale receipt).
-- body replaces the stored body when given (an undecodable message is kept as a
-- reconstructed envelope). Dead letters get their own ids, so nothing can collide.
-- name: dead_letter
WITH gone AS (
    DELETE FROM queue_messages
     WHERE id = %(id)s AND token = %(token)s AND ns = %(ns)s
    RETURNING ns, queue, body
)
INSERT INTO queue_dead_letters (ns, queue, task_id, body, reason, meta)
SELECT ns, queue, %(task_id)s, coalesce(%(body)s::bytea, body), %(reason)s, %(meta)s
  FROM gone
RETURNING id
