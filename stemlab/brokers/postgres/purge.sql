-- tables: queue_messages, queue_dead_letters
-- purge.sql: deletes every ready, delayed and leased message of one queue from
-- queue_messages (its dead letters in queue_dead_letters stay).
-- name: purge
DELETE FROM queue_messages WHERE ns = %(ns)s AND queue = %(queue)s
