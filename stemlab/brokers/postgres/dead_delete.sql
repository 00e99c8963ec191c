-- tables: queue_dead_letters
-- dead_delete.sql: deletes the given rows of queue_dead_letters (after a replay).
-- name: dead_delete
DELETE FROM queue_dead_letters WHERE ns = %(ns)s AND id = ANY(%(ids)s::bigint[])
