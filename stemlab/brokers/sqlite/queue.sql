-- tables: stem_messages
-- Publishing, claiming (into a consumer's prefetch buffer), handing out and settling.
-- Every write here runs inside BEGIN IMMEDIATE ... COMMIT issued by the adapter;
-- settling statements carry the fencing token in their WHERE clause, so a stale
-- receipt matches no row (the adapter turns rowcount 0 into LeaseLost).

-- name: publish
INSERT INTO stem_messages (ns, queue, priority, avail_at, vt, payload)
VALUES (:ns, :queue, :priority, :avail_at, :vt, :payload);

-- name: held
-- Live leases (buffered or delivered) of one consumer name: what prefetch caps.
SELECT COUNT(*) FROM stem_messages
WHERE ns = :ns AND consumer = :consumer AND lease_token IS NOT NULL AND avail_at > :now;

-- name: candidates
-- Claimable rows of one queue, best first: one index seek per priority level, no sort.
SELECT seq, priority, avail_at FROM stem_messages
WHERE ns = :ns AND queue = :queue AND priority IN (9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
  AND avail_at <= :now
ORDER BY priority DESC, avail_at, seq
LIMIT :limit;

-- name: reserve
-- Lease the chosen rows into the consumer's buffer: a fresh token per row
-- (reclaiming an expired lease this way makes the old receipt stale). The unary
-- `+` keeps the planner on the primary key instead of the (ns, ...) index.
UPDATE stem_messages
SET lease_token = random(), consumer = :consumer, handed = 0,
    avail_at = :now + COALESCE(vt, :default_vt)
WHERE seq IN (SELECT value FROM json_each(:seqs)) AND +ns = :ns AND +avail_at <= :now
RETURNING seq, lease_token, deliveries, avail_at, COALESCE(vt, :default_vt), queue, payload;

-- name: hand_out
-- A buffered row is given to the application: it counts as in flight from now.
UPDATE stem_messages SET handed = 1, deliveries = deliveries + 1
WHERE seq = :seq AND ns = :ns AND lease_token = :token;

-- name: hand_out_restamp
-- Same, for a row that waited in the buffer: its lease restarts now.
UPDATE stem_messages
SET handed = 1, deliveries = deliveries + 1, avail_at = :now + COALESCE(vt, :default_vt)
WHERE seq = :seq AND ns = :ns AND lease_token = :token
RETURNING avail_at;

-- name: release
-- A closing consumer gives back rows it buffered but never handed out, in place.
UPDATE stem_messages SET lease_token = NULL, consumer = NULL, avail_at = :avail_at
WHERE seq = :seq AND ns = :ns AND lease_token = :token AND handed = 0;

-- name: next_due
-- The earliest future instant at which a row of this queue becomes claimable
-- (a delayed message, or a lease that will expire): when an idle consumer looks again.
WITH levels(p) AS (VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9))
SELECT MIN((SELECT avail_at FROM stem_messages
            WHERE ns = :ns AND queue = :queue AND priority = levels.p AND avail_at > :now
            ORDER BY avail_at LIMIT 1))
FROM levels;

-- name: ack
DELETE FROM stem_messages WHERE seq = :seq AND ns = :ns AND lease_token = :token;

-- name: nack
-- Requeue at the tail of its priority level (it became ready again now).
UPDATE stem_messages SET lease_token = NULL, consumer = NULL, handed = 0, avail_at = :now
WHERE seq = :seq AND ns = :ns AND lease_token = :token;

-- name: take
-- Remove a leased row and return it (for dead-lettering).
DELETE FROM stem_messages WHERE seq = :seq AND ns = :ns AND lease_token = :token
RETURNING queue, priority, payload;

-- name: extend
-- Works on an expired lease too, as long as nobody re-leased the row (same token) and
-- its consumer holds fewer than :prefetch other live leases (the prefetch cap holds).
UPDATE stem_messages SET avail_at = :expires, handed = 1
WHERE seq = :seq AND ns = :ns AND lease_token = :token
  AND (avail_at > :now
       OR (SELECT COUNT(*) FROM stem_messages AS o
           WHERE o.ns = :ns AND o.consumer = stem_messages.consumer
             AND o.lease_token IS NOT NULL AND o.avail_at > :now AND o.seq <> :seq) < :prefetch);

-- name: purge
DELETE FROM stem_messages WHERE ns = :ns AND queue = :queue;

-- name: pending_count
-- Due and not delivered: ready rows, expired leases not yet reclaimed, and rows
-- sitting in a consumer's prefetch buffer (claimed but not handed to the application).
SELECT COUNT(*) FROM stem_messages
WHERE ns = :ns AND queue = :queue
  AND (avail_at <= :now OR (lease_token IS NOT NULL AND handed = 0));

-- name: inflight_count
SELECT COUNT(*) FROM stem_messages
WHERE ns = :ns AND queue = :queue AND lease_token IS NOT NULL AND handed = 1
  AND avail_at > :now;

-- name: delayed_count
SELECT COUNT(*) FROM stem_messages
WHERE ns = :ns AND queue = :queue AND lease_token IS NULL AND avail_at > :now;
