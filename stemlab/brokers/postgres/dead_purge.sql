-- tables: queue_dead_letters
-- dead_purge.sql: deletes a queue's dead letters from queue_dead_letters, oldest first,
-- dead at or after since (NULL: all), at most limit (NULL: no limit).
-- name: dead_purge
DELETE FROM queue_dead_letters
 WHERE id IN (SELECT id
                FROM queue_dead_letters
               WHERE ns = %(ns)s AND queue = %(queue)s
                 AND (%(since)s::timestamptz IS NULL OR dead_at >= %(since)s::timestamptz)
               ORDER BY dead_at, id
               LIMIT %(limit)s
                 FOR UPDATE SKIP LOCKED)
