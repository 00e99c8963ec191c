-- The SQLite result backend's statements. Tables: stemlab_results (one status per
-- namespace and task id, with its expiry), stemlab_groups and stemlab_group_members
-- (expected count, claimed flag, members done), stemlab_workers (heartbeats).

-- name: schema
CREATE TABLE IF NOT EXISTS stemlab_results (
    ns TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (ns, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stemlab_groups (
    ns TEXT NOT NULL, id TEXT NOT NULL, expected INTEGER NOT NULL,
    claimed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (ns, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stemlab_group_members (
    ns TEXT NOT NULL, group_id TEXT NOT NULL, task_id TEXT NOT NULL,
    PRIMARY KEY (ns, group_id, task_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stemlab_workers (
    ns TEXT NOT NULL, id TEXT NOT NULL, info TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (ns, id)
) WITHOUT ROWID;

-- name: set
INSERT INTO stemlab_results (ns, id, body, expires_at) VALUES (:ns, :id, :body, :expires_at)
ON CONFLICT (ns, id) DO UPDATE SET body = excluded.body, expires_at = excluded.expires_at;

-- name: get
SELECT body FROM stemlab_results WHERE ns = :ns AND id = :id AND expires_at > :now;

-- name: expire
DELETE FROM stemlab_results WHERE ns = :ns AND expires_at <= :now;

-- name: group_init
INSERT INTO stemlab_groups (ns, id, expected, claimed) VALUES (:ns, :id, :expected, 0)
ON CONFLICT (ns, id) DO UPDATE SET expected = excluded.expected, claimed = 0;

-- name: group_reset
DELETE FROM stemlab_group_members WHERE ns = :ns AND group_id = :id;

-- name: group_done
INSERT OR IGNORE INTO stemlab_group_members (ns, group_id, task_id)
SELECT :ns, :id, :task_id WHERE EXISTS (SELECT 1 FROM stemlab_groups WHERE ns = :ns AND id = :id);

-- name: group_get
SELECT g.expected, g.claimed,
       (SELECT count(*) FROM stemlab_group_members m WHERE m.ns = g.ns AND m.group_id = g.id)
FROM stemlab_groups g WHERE g.ns = :ns AND g.id = :id;

-- name: chord_claim
UPDATE stemlab_groups SET claimed = 1
WHERE ns = :ns AND id = :id AND claimed = 0
  AND expected <= (SELECT count(*) FROM stemlab_group_members m
                   WHERE m.ns = :ns AND m.group_id = :id);

-- name: heartbeat
INSERT INTO stemlab_workers (ns, id, info, expires_at) VALUES (:ns, :id, :info, :expires_at)
ON CONFLICT (ns, id) DO UPDATE SET info = excluded.info, expires_at = excluded.expires_at;

-- name: workers
SELECT id, info FROM stemlab_workers WHERE ns = :ns AND expires_at > :now ORDER BY id;

-- name: forget_worker
DELETE FROM stemlab_workers WHERE ns = :ns AND id = :id;

-- name: clear
DELETE FROM stemlab_results WHERE ns = :ns;
DELETE FROM stemlab_groups WHERE ns = :ns;
DELETE FROM stemlab_group_members WHERE ns = :ns;
DELETE FROM stemlab_workers WHERE ns = :ns;
