-- tables: queue_dead_letters
-- dead_pick.sql: a queue's dead letters in queue_dead_letters, oldest first, dead at
-- or after since (NULL: all), at most limit. Used by replay, which appends
-- FOR UPDATE SKIP LOCKED unless it is a dry run (a dry run changes nothing).
-- name: dead_pick
SELECT id, body, reason, meta, dead_at
  FROM queue_dead_letters
 WHERE ns = %(ns)s AND queue = %(queue)s
   AND (%(since)s::timestamptz IS NULL OR dead_at >= %(since)s::timestamptz)
 ORDER BY dead_at, id
 LIMIT %(limit)s
