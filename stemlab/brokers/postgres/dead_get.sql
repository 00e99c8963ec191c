-- tables: queue_dead_letters
-- dead_get.sql: the newest dead letter of a queue in queue_dead_letters whose
-- envelope id is the given task id.
-- name: dead_get
SELECT body, reason, meta, dead_at
  FROM queue_dead_letters
 WHERE ns = %(ns)s AND queue = %(queue)s AND task_id = %(task_id)s
 ORDER BY dead_at DESC, id DESC
 LIMIT 1
