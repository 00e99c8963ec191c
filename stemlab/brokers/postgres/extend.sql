-- tables: queue_messages
-- extend.sql: moves the lease expiry (available_at) of a message in queue_messages to
-- now() + by, only while the receipt's token is current; this also re-leases a
-- message whose lease expired but that nobody claimed since. No row = stale receipt.
-- name: extend
UPDATE queue_messages
   SET available_at = now() + make_interval(secs => %(by)s)
 WHERE id = %(id)s AND token = %(token)s AND ns = %(ns)s
RETURNING available_at
