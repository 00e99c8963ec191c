-- tables: queue_broadcasts
-- broadcast_take.sql: hands a consumer the broadcast copies waiting for it in
-- queue_broadcasts (oldest first), marking them taken until they are settled.
-- name: broadcast_take
UPDATE queue_broadcasts b
   SET taken = true
 WHERE b.id IN (SELECT id
                  FROM queue_broadcasts
                 WHERE ns = %(ns)s AND consumer = %(consumer)s AND NOT taken
                 ORDER BY id
                 LIMIT %(limit)s
                   FOR UPDATE SKIP LOCKED)
RETURNING b.id, b.channel, b.body
