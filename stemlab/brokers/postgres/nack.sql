-- tables: queue_messages, queue_seq
-- nack.sql: requeues a leased message of queue_messages at the TAIL of its priority
-- (new seq, ready now, same body; the delivery count grows on the next claim) if the
-- receipt's token is current, and notifies the namespace's channel. No row = stale.
-- name: nack
WITH requeued AS (
    UPDATE queue_messages
       SET token = NULL, consumer = NULL, available_at = now(), seq = nextval('queue_seq')
     WHERE id = %(id)s AND token = %(token)s AND ns = %(ns)s
    RETURNING queue
)
SELECT pg_notify(%(channel)s, queue) FROM requeued
