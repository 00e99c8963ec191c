-- tables: queue_dead_letters
-- dead_list.sql: one page of a queue's dead letters from queue_dead_letters, newest
-- first; asks for one row more than the page so the caller knows whether more remain.
-- name: dead_list
SELECT body, reason, meta, dead_at
  FROM queue_dead_letters
 WHERE ns = %(ns)s AND queue = %(queue)s
 ORDER BY dead_at DESC, id DESC
 LIMIT %(limit)s::bigint + 1 OFFSET %(offset)s
