-- tables: stem_dead_letters
-- Dead letters per (namespace, queue): newest first for listing, oldest first
-- for replay and purge. `dead_at` is epoch microseconds.

-- name: insert
INSERT INTO stem_dead_letters (ns, queue, task_id, reason, meta, dead_at, payload)
VALUES (:ns, :queue, :task_id, :reason, :meta, :dead_at, :payload);

-- name: list
SELECT reason, meta, dead_at, payload FROM stem_dead_letters
WHERE ns = :ns AND queue = :queue
ORDER BY id DESC
LIMIT :limit OFFSET :offset;

-- name: get
SELECT reason, meta, dead_at, payload FROM stem_dead_letters
WHERE ns = :ns AND queue = :queue AND task_id = :task_id
ORDER BY id DESC
LIMIT 1;

-- name: select_oldest
-- What replay and purge act on: oldest first, dead at or after :since, at most :limit (-1: all).
SELECT id, reason, meta, dead_at, payload FROM stem_dead_letters
WHERE ns = :ns AND queue = :queue AND dead_at >= :since
ORDER BY id
LIMIT :limit;

-- name: delete
DELETE FROM stem_dead_letters WHERE id = :id AND ns = :ns;
