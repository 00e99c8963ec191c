-- exists.sql: whether a row of queue_messages still exists; used after a settle was
-- retried over a broken connection, to tell "our first try committed" from "stale".
SELECT EXISTS (SELECT 1 FROM queue_messages WHERE id = %(id)s AND ns = %(ns)s)
