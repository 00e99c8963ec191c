-- tables: queue_messages
-- extend.sql: moves the lease expiry (available_at) of a message in queue_messages to
-- now() + by, only while the receipt's token is current; this also re-leases a
-- message whose lease expired but that nobody claimed since, if its consumer holds
-- fewer than %(prefetch)s other live leases (the prefetch cap holds).
-- No row = stale receipt (or a refused re-lease).
-- name: extend
UPDATE queue_messages m
   SET available_at = now() + make_interval(secs => %(by)s)
 WHERE m.id = %(id)s AND m.token = %(token)s AND m.ns = %(ns)s
   AND (m.available_at > now()
        OR (SELECT count(*)
              FROM queue_messages o
             WHERE o.ns = %(ns)s AND o.consumer = m.consumer AND o.token IS NOT NULL
               AND o.available_at > now() AND o.id <> m.id) < %(prefetch)s)
RETURNING m.available_at
