-- The PostgreSQL result backend's statements. Tables (schema stemlab_rt):
-- results (one status per namespace and task id, with its expiry), groups and
-- group_members (expected count, claimed flag, members done), workers (heartbeats).
-- Channel: stemlab_results (NOTIFY "<ns> <id>" when a status becomes final).

-- name: schema
SELECT pg_advisory_xact_lock(hashtext('stemlab_rt schema'));
CREATE SCHEMA IF NOT EXISTS stemlab_rt;
CREATE TABLE IF NOT EXISTS stemlab_rt.results (
    ns text NOT NULL, id text NOT NULL, body text NOT NULL, expires_at timestamptz NOT NULL,
    PRIMARY KEY (ns, id)
);
CREATE TABLE IF NOT EXISTS stemlab_rt.groups (
    ns text NOT NULL, id text NOT NULL, expected integer NOT NULL,
    claimed boolean NOT NULL DEFAULT false, PRIMARY KEY (ns, id)
);
CREATE TABLE IF NOT EXISTS stemlab_rt.group_members (
    ns text NOT NULL, group_id text NOT NULL, task_id text NOT NULL,
    PRIMARY KEY (ns, group_id, task_id)
);
CREATE TABLE IF NOT EXISTS stemlab_rt.workers (
    ns text NOT NULL, id text NOT NULL, info text NOT NULL, expires_at timestamptz NOT NULL,
    PRIMARY KEY (ns, id)
);

-- name: set
INSERT INTO stemlab_rt.results (ns, id, body, expires_at)
VALUES (%(ns)s, %(id)s, %(body)s, now() + make_interval(secs => %(ttl)s))
ON CONFLICT (ns, id) DO UPDATE SET body = excluded.body, expires_at = excluded.expires_at;

-- name: notify
SELECT pg_notify('stemlab_results', %(ns)s || ' ' || %(id)s);

-- name: get
SELECT body FROM stemlab_rt.results WHERE ns = %(ns)s AND id = %(id)s AND expires_at > now();

-- name: expire
DELETE FROM stemlab_rt.results WHERE ns = %(ns)s AND expires_at <= now();

-- name: listen
LISTEN stemlab_results;

-- name: group_reset
DELETE FROM stemlab_rt.group_members WHERE ns = %(ns)s AND group_id = %(id)s;

-- name: group_init
INSERT INTO stemlab_rt.groups (ns, id, expected, claimed) VALUES (%(ns)s, %(id)s, %(expected)s, false)
ON CONFLICT (ns, id) DO UPDATE SET expected = excluded.expected, claimed = false;

-- name: group_done
INSERT INTO stemlab_rt.group_members (ns, group_id, task_id)
SELECT %(ns)s, %(id)s, %(task_id)s
WHERE EXISTS (SELECT 1 FROM stemlab_rt.groups WHERE ns = %(ns)s AND id = %(id)s)
ON CONFLICT DO NOTHING;

-- name: group_get
SELECT g.expected, g.claimed,
       (SELECT count(*) FROM stemlab_rt.group_members m WHERE m.ns = g.ns AND m.group_id = g.id)
FROM stemlab_rt.groups g WHERE g.ns = %(ns)s AND g.id = %(id)s;

-- name: chord_claim
UPDATE stemlab_rt.groups SET claimed = true
WHERE ns = %(ns)s AND id = %(id)s AND NOT claimed
  AND expected <= (SELECT count(*) FROM stemlab_rt.group_members m
                   WHERE m.ns = %(ns)s AND m.group_id = %(id)s)
RETURNING id;

-- name: heartbeat
INSERT INTO stemlab_rt.workers (ns, id, info, expires_at)
VALUES (%(ns)s, %(id)s, %(info)s, now() + make_interval(secs => %(ttl)s))
ON CONFLICT (ns, id) DO UPDATE SET info = excluded.info, expires_at = excluded.expires_at;

-- name: workers
SELECT id, info FROM stemlab_rt.workers WHERE ns = %(ns)s AND expires_at > now() ORDER BY id;

-- name: forget_worker
DELETE FROM stemlab_rt.workers WHERE ns = %(ns)s AND id = %(id)s;

-- name: clear_results
DELETE FROM stemlab_rt.results WHERE ns = %(ns)s;

-- name: clear_groups
DELETE FROM stemlab_rt.groups WHERE ns = %(ns)s;

-- name: clear_members
DELETE FROM stemlab_rt.group_members WHERE ns = %(ns)s;

-- name: clear_workers
DELETE FROM stemlab_rt.workers WHERE ns = %(ns)s;
