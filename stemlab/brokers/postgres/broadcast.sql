-- tables: queue_broadcasts, queue_subscriptions
-- broadcast.sql: fans one message out into queue_broadcasts, one row per consumer
-- subscribed to the channel in queue_subscriptions at this moment, and notifies the
-- namespace's channel with '#<channel>' so the subscribers take it at once.
-- name: broadcast
WITH fan AS (
    INSERT INTO queue_broadcasts (ns, consumer, channel, body)
    SELECT ns, consumer, channel, %(body)s
      FROM queue_subscriptions
     WHERE ns = %(ns)s AND channel = %(bchannel)s
    RETURNING 1
)
SELECT pg_notify(%(channel)s, '#' || %(bchannel)s)
 WHERE EXISTS (SELECT 1 FROM fan)
