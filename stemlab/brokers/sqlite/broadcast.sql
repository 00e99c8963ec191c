-- tables: stem_broadcasts, stem_subscribers, stem_broadcast_deliveries
-- Host-wide broadcast: a broadcast is one row; each subscriber (one per
-- Consumer object) reads the rows past its cursor, copies those of its channels
-- into stem_broadcast_deliveries (what ack settles) and advances its cursor.
-- Rows every subscriber has passed are pruned.

-- name: subscribe
-- Start at the newest existing row, so a late subscriber sees nothing earlier.
INSERT INTO stem_subscribers (id, ns, consumer, channels, cursor, host, pid, seen_at)
VALUES (:id, :ns, :consumer, :channels,
        COALESCE((SELECT MAX(seq) FROM stem_broadcasts), 0), :host, :pid, :now)
RETURNING cursor;

-- name: unsubscribe
DELETE FROM stem_subscribers WHERE id = :id AND ns = :ns;

-- name: subscribers_stale
SELECT id, host, pid FROM stem_subscribers WHERE ns = :ns AND seen_at < :before;

-- name: has_subscribers
SELECT EXISTS (SELECT 1 FROM stem_subscribers WHERE ns = :ns);

-- name: insert
INSERT INTO stem_broadcasts (ns, channel, payload, created_at)
VALUES (:ns, :channel, :payload, :now);

-- name: after
-- Rows past a cursor, every channel (the subscriber filters its own).
SELECT seq, channel, payload FROM stem_broadcasts
WHERE ns = :ns AND seq > :cursor
ORDER BY seq
LIMIT :limit;

-- name: advance
UPDATE stem_subscribers SET cursor = :cursor, seen_at = :now WHERE id = :id AND ns = :ns;

-- name: deliver
INSERT INTO stem_broadcast_deliveries (ns, subscriber, channel, payload)
VALUES (:ns, :subscriber, :channel, :payload)
RETURNING token;

-- name: prune
-- Rows every subscriber of the namespace has passed; all rows when none is left.
DELETE FROM stem_broadcasts
WHERE ns = :ns
  AND seq <= COALESCE((SELECT MIN(cursor) FROM stem_subscribers WHERE ns = :ns),
                      (SELECT MAX(seq) FROM stem_broadcasts));

-- name: settle
DELETE FROM stem_broadcast_deliveries WHERE token = :token AND ns = :ns
RETURNING channel, payload;

-- name: forget_subscriber
-- A vanished subscriber's unsettled copies can never be acked: drop them.
DELETE FROM stem_broadcast_deliveries WHERE ns = :ns AND subscriber = :id;
