-- tables: queue_messages, queue_seq
-- ack_claim.sql: claim.sql preceded by a fenced ack, in one statement (one round trip, one
-- commit): deletes the acked row of queue_messages if its token is still the receipt's,
-- then leases up to (prefetch - live leases of the consumer other than the acked row) due
-- or lease-expired rows of ONE queue exactly as claim.sql does. A stale receipt deletes
-- nothing and claims nothing (no free slots). The acked row itself is never claimed.
-- Result: claim.sql's rows, each with one more column `acked` (NULL on claimed rows; on the
-- trailer row: whether the ack deleted the row, false = stale receipt, LeaseLost).
-- name: ack_claim
WITH acked AS (
    DELETE FROM queue_messages
     WHERE id = %(id)s AND token = %(token)s AND ns = %(ns)s
    RETURNING id
),
slots AS (
    SELECT CASE WHEN EXISTS (SELECT 1 FROM acked)
                THEN greatest(0, %(prefetch)s - count(*))::int ELSE 0 END AS n
      FROM queue_messages
     WHERE ns = %(ns)s AND consumer = %(consumer)s
       AND token IS NOT NULL AND available_at > now() AND id <> %(id)s
),
picked AS (
    SELECT c.id, c.available_at AS ready_at, c.seq, p.priority
      FROM generate_series(9, 0, -1) AS p(priority)
     CROSS JOIN LATERAL (
           SELECT m.id, m.available_at, m.seq
             FROM queue_messages m
            WHERE m.ns = %(ns)s AND m.queue = %(queue)s AND m.priority = p.priority
              AND m.available_at <= now() AND m.id <> %(id)s
            ORDER BY m.available_at, m.seq
            LIMIT (SELECT n FROM slots)
              FOR UPDATE SKIP LOCKED) c
     LIMIT (SELECT n FROM slots)
),
claimed AS (
    UPDATE queue_messages m
       SET token = nextval('queue_seq'),
           consumer = %(consumer)s,
           deliveries = m.deliveries + 1,
           available_at = now() + make_interval(secs => coalesce(m.visibility, %(visibility)s))
     WHERE m.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING m.id, m.token, m.queue, m.deliveries, m.available_at, m.body
),
short AS (
    SELECT (SELECT count(*) FROM claimed) < (SELECT n FROM slots) AS yes
),
more AS (
    SELECT CASE WHEN NOT (SELECT yes FROM short) AND (SELECT n FROM slots) > 0 THEN
               EXISTS (SELECT 1
                         FROM generate_series(0, 9) AS p(priority)
                        CROSS JOIN LATERAL (
                              SELECT 1
                                FROM queue_messages m
                               WHERE m.ns = %(ns)s AND m.queue = %(queue)s
                                 AND m.priority = p.priority AND m.available_at <= now()
                                 AND m.id <> ALL(ARRAY(SELECT id FROM claimed))
                               ORDER BY m.available_at
                               LIMIT 1) f)
           END AS yes
)
SELECT c.id, c.token, c.queue, c.deliveries, c.available_at, c.body,
       p.priority, p.ready_at, p.seq,
       NULL::int AS slots, NULL::boolean AS more, NULL::float8 AS wake_in,
       NULL::boolean AS acked
  FROM claimed c
  JOIN picked p ON p.id = c.id
UNION ALL
SELECT NULL, NULL, NULL, NULL, now(), NULL, NULL, NULL, NULL,
       (SELECT n FROM slots),
       (SELECT yes FROM more),
       CASE WHEN (SELECT yes FROM short) OR (SELECT yes FROM more) IS FALSE THEN
           (SELECT extract(epoch FROM min(f.available_at) - now())::float8
              FROM generate_series(0, 9) AS p(priority)
             CROSS JOIN LATERAL (
                   SELECT m.available_at
                     FROM queue_messages m
                    WHERE m.ns = %(ns)s AND m.queue = %(queue)s AND m.priority = p.priority
                      AND m.available_at > now()
                    ORDER BY m.available_at
                    LIMIT 1) f)
       END,
       EXISTS (SELECT 1 FROM acked)
