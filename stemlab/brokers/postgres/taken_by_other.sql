-- tables: queue_messages
-- taken_by_other.sql: whether a row of queue_messages is now leased under another
-- token. Used after a settle was retried over a broken connection: if our first try
-- committed, the row is gone (ack, dead_letter) or has no token (nack); only a row
-- handed to another delivery makes the receipt stale.
-- name: taken_by_other
SELECT EXISTS (SELECT 1
                 FROM queue_messages
                WHERE id = %(id)s AND ns = %(ns)s
                  AND token IS NOT NULL AND token <> %(token)s)
