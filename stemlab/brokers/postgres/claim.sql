-- tables: queue_messages, queue_seq
-- claim.sql: leases due or lease-expired messages of ONE queue in queue_messages, in one
-- statement (claim_many.sql does several queues). Takes up to (prefetch - live leases of
-- the consumer) rows, highest priority first, FIFO (ready time, then seq) within a
-- priority, skipping rows other claimers hold (FOR UPDATE SKIP LOCKED). Expired leases are
-- claimable like due messages, so reclaim needs no sweeper. Every claimed row gets a
-- fresh fencing token and a lease until now() + its visibility timeout (server clock).
-- The per-priority LATERAL probes are index range scans that stop at now() and are pulled
-- lazily by the outer LIMIT, so a claimer locks exactly the rows it takes and the cost
-- does not grow with delayed or leased rows.
-- Result: one row per claimed message (id not NULL), then one trailer row (id NULL):
--   now        the server's clock;
--   slots      free prefetch slots the claim had;
--   more       when every free slot was filled: whether other rows are claimable now
--              (so the consumer knows if an ack should trigger another claim);
--   wake_in    when nothing more is claimable: seconds until the next delayed message
--              or lease of the queue becomes claimable (NULL: none).
-- So an idle consumer knows how long to sleep without another round trip.
-- name: claim
WITH slots AS (
    SELECT greatest(0, %(prefetch)s - count(*))::int AS n
      FROM queue_messages
     WHERE ns = %(ns)s AND consumer = %(consumer)s
       AND token IS NOT NULL AND available_at > now()
),
picked AS (
    SELECT c.id, c.available_at AS ready_at, c.seq, p.priority
      FROM generate_series(9, 0, -1) AS p(priority)
     CROSS JOIN LATERAL (
           SELECT m.id, m.available_at, m.seq
             FROM queue_messages m
            WHERE m.ns = %(ns)s AND m.queue = %(queue)s AND m.priority = p.priority
              AND m.available_at <= now()
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
       NULL::int AS slots, NULL::boolean AS more, NULL::float8 AS wake_in
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
       END
