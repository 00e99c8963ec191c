-- tables: queue_messages
-- ack.sql: deletes a leased message from queue_messages if the receipt's fencing token
-- is still the row's token (rowcount 0 = stale receipt: settled or handed to another).
-- name: ack
DELETE FROM queue_messages
 WHERE id = %(id)s AND token = %(token)s AND ns = %(ns)s
