-- tables: queue_messages, queue_broadcasts, queue_dead_letters, queue_subscriptions, queue_schema_version, queue_seq
-- schema.sql: creates the broker's schema {schema} and its objects, idempotently:
--   sequence queue_seq (ordering, row ids and lease tokens),
--   tables queue_schema_version, queue_messages, queue_dead_letters,
--   queue_subscriptions, queue_broadcasts (every row carries its namespace `ns`).
-- Run inside one transaction holding an advisory lock, so many processes may start at once.
-- name: schema
CREATE SCHEMA IF NOT EXISTS {schema};
SET LOCAL search_path = {schema};

CREATE SEQUENCE IF NOT EXISTS queue_seq;

CREATE TABLE IF NOT EXISTS queue_schema_version (
    version integer NOT NULL
);

-- One row per stored message. `available_at` is when the row can be claimed:
-- its due time while waiting, its lease expiry (locked_until) while leased.
-- `token` is the fencing token of the current or last delivery; NULL after a requeue.
CREATE TABLE IF NOT EXISTS queue_messages (
    id           bigint           PRIMARY KEY DEFAULT nextval('queue_seq'),
    ns           text             NOT NULL,
    queue        text             NOT NULL,
    priority     smallint         NOT NULL CHECK (priority BETWEEN 0 AND 9),
    available_at timestamptz      NOT NULL,
    seq          bigint           NOT NULL DEFAULT nextval('queue_seq'),
    token        bigint,
    consumer     text,
    deliveries   integer          NOT NULL DEFAULT 0,
    visibility   double precision,
    body         bytea            NOT NULL
) WITH (fillfactor = 90,
        autovacuum_vacuum_scale_factor = 0.0,
        autovacuum_vacuum_threshold = 2000,
        autovacuum_vacuum_insert_scale_factor = 0.0,
        autovacuum_vacuum_insert_threshold = 5000);
CREATE INDEX IF NOT EXISTS queue_messages_claim
    ON queue_messages (ns, queue, priority, available_at, seq);
CREATE INDEX IF NOT EXISTS queue_messages_holder
    ON queue_messages (ns, consumer) WHERE consumer IS NOT NULL;

CREATE TABLE IF NOT EXISTS queue_dead_letters (
    id      bigint      PRIMARY KEY DEFAULT nextval('queue_seq'),
    ns      text        NOT NULL,
    queue   text        NOT NULL,
    task_id text        NOT NULL,
    body    bytea       NOT NULL,
    reason  text,
    meta    text        NOT NULL DEFAULT '{{}}',
    dead_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS queue_dead_letters_age ON queue_dead_letters (ns, queue, dead_at, id);
CREATE INDEX IF NOT EXISTS queue_dead_letters_task ON queue_dead_letters (ns, queue, task_id);
CREATE INDEX IF NOT EXISTS queue_dead_letters_retention ON queue_dead_letters (ns, dead_at);

-- Who listens to which broadcast channel; `pid`/`backend_start` identify the
-- consumer's connection so a sweep can drop subscriptions of crashed consumers.
CREATE TABLE IF NOT EXISTS queue_subscriptions (
    ns            text        NOT NULL,
    consumer      text        NOT NULL,
    channel       text        NOT NULL,
    pid           integer,
    backend_start timestamptz,
    since         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ns, channel, consumer)
);

-- One row per (broadcast message, subscriber): fanned out at broadcast time,
-- marked taken when handed out, deleted when settled or past the retention.
CREATE TABLE IF NOT EXISTS queue_broadcasts (
    id         bigint      PRIMARY KEY DEFAULT nextval('queue_seq'),
    ns         text        NOT NULL,
    consumer   text        NOT NULL,
    channel    text        NOT NULL,
    body       bytea       NOT NULL,
    taken      boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS queue_broadcasts_inbox ON queue_broadcasts (ns, consumer, id);
CREATE INDEX IF NOT EXISTS queue_broadcasts_age ON queue_broadcasts (ns, created_at);

DELETE FROM queue_schema_version;
INSERT INTO queue_schema_version (version) VALUES (1);
