-- tables: queue_broadcasts, queue_subscriptions
-- unsubscribe.sql: removes a closing consumer's rows from queue_subscriptions and the
-- broadcast copies in queue_broadcasts it never took (taken ones wait for their ack).
-- name: unsubscribe
WITH subs AS (
    DELETE FROM queue_subscriptions WHERE ns = %(ns)s AND consumer = %(consumer)s
)
DELETE FROM queue_broadcasts WHERE ns = %(ns)s AND consumer = %(consumer)s AND NOT taken
