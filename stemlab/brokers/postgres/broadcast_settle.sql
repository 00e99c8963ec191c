-- tables: queue_broadcasts
-- broadcast_settle.sql: releases a taken broadcast copy (ack or nack) by deleting it
-- from queue_broadcasts; no row returned = already settled (stale receipt).
-- name: broadcast_settle
DELETE FROM queue_broadcasts
 WHERE id = %(id)s AND ns = %(ns)s AND taken
RETURNING id
