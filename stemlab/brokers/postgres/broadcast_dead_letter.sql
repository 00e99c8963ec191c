-- tables: queue_broadcasts, queue_dead_letters
-- broadcast_dead_letter.sql: settles a taken broadcast copy in queue_broadcasts and
-- keeps it in queue_dead_letters of the envelope's queue; no row = stale receipt.
-- name: broadcast_dead_letter
WITH gone AS (
    DELETE FROM queue_broadcasts
     WHERE id = %(id)s AND ns = %(ns)s AND taken
    RETURNING ns, body
)
INSERT INTO queue_dead_letters (ns, queue, task_id, body, reason, meta)
SELECT ns, %(queue)s, %(task_id)s, body, %(reason)s, %(meta)s
  FROM gone
RETURNING id
