-- tables: stem_messages, stem_dead_letters, stem_broadcasts, stem_subscribers,
--         stem_broadcast_deliveries (created when missing; shared by every namespace)
-- Every row carries `ns`, the broker's namespace; every query filters on it.
-- name: schema

-- One row per queued message, from publish until ack / dead-letter / purge.
-- `avail_at` is the instant the row becomes claimable: its ready time, its
-- `not_before`, or the expiry of its current lease. Ordering by
-- (priority DESC, avail_at, seq) is "highest priority first, FIFO by the moment
-- the message became ready"; `seq` is the monotonic tie-break (AUTOINCREMENT:
-- never reused, so a receipt can never match a later message).
CREATE TABLE IF NOT EXISTS stem_messages (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    ns          TEXT    NOT NULL,
    queue       TEXT    NOT NULL,
    priority    INTEGER NOT NULL,
    avail_at    REAL    NOT NULL,
    vt          REAL,                        -- envelope.visibility_timeout, NULL = broker default
    lease_token INTEGER,                     -- fencing token of the current lease, NULL = not leased
    consumer    TEXT,                        -- consumer name holding the lease
    handed      INTEGER NOT NULL DEFAULT 0,  -- 0: in the consumer's prefetch buffer, 1: delivered
    deliveries  INTEGER NOT NULL DEFAULT 0,  -- times handed to an application so far
    payload     TEXT    NOT NULL             -- Envelope JSON (or garbage, dead-lettered on claim)
);
CREATE INDEX IF NOT EXISTS stem_messages_claim
    ON stem_messages (ns, queue, priority DESC, avail_at, seq);
CREATE INDEX IF NOT EXISTS stem_messages_held
    ON stem_messages (ns, consumer) WHERE consumer IS NOT NULL;

CREATE TABLE IF NOT EXISTS stem_dead_letters (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    ns       TEXT    NOT NULL,
    queue    TEXT    NOT NULL,
    task_id  TEXT    NOT NULL,
    reason   TEXT,
    meta     TEXT    NOT NULL,
    dead_at  INTEGER NOT NULL,               -- epoch microseconds (exact round trip)
    payload  TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS stem_dead_letters_queue ON stem_dead_letters (ns, queue, id);
CREATE INDEX IF NOT EXISTS stem_dead_letters_task ON stem_dead_letters (ns, queue, task_id);

-- Broadcast: one row per broadcast, read by every subscriber past its cursor,
-- pruned once every subscriber of the namespace has passed it.
CREATE TABLE IF NOT EXISTS stem_broadcasts (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    ns         TEXT NOT NULL,
    channel    TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS stem_broadcasts_ns ON stem_broadcasts (ns, seq);

CREATE TABLE IF NOT EXISTS stem_subscribers (
    id        TEXT    PRIMARY KEY,           -- one per Consumer object
    ns        TEXT    NOT NULL,
    consumer  TEXT    NOT NULL,
    channels  TEXT    NOT NULL,              -- JSON list, informational
    cursor    INTEGER NOT NULL,              -- last stem_broadcasts.seq passed
    host      TEXT    NOT NULL,
    pid       INTEGER NOT NULL,
    seen_at   REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS stem_subscribers_ns ON stem_subscribers (ns, cursor);

-- Broadcast copies handed to a subscriber and not yet settled (ack releases them).
CREATE TABLE IF NOT EXISTS stem_broadcast_deliveries (
    token      INTEGER PRIMARY KEY AUTOINCREMENT,
    ns         TEXT NOT NULL,
    subscriber TEXT NOT NULL,
    channel    TEXT NOT NULL,
    payload    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS stem_broadcast_deliveries_sub
    ON stem_broadcast_deliveries (ns, subscriber);
