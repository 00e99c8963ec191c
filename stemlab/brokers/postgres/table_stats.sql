-- tables: queue_messages, queue_broadcasts, queue_dead_letters, queue_subscriptions, pg_class, pg_namespace, pg_stat_user_tables
-- table_stats.sql: size and tuple statistics of the broker's tables (queue_messages,
-- queue_dead_letters, queue_subscriptions, queue_broadcasts) in the current schema.
-- name: table_stats
SELECT c.relname,
       pg_total_relation_size(c.oid) AS total_bytes,
       coalesce(s.n_live_tup, 0) AS live_tuples,
       coalesce(s.n_dead_tup, 0) AS dead_tuples,
       s.last_autovacuum,
       s.last_vacuum
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
 WHERE n.nspname = current_schema()
   AND c.relname IN ('queue_messages', 'queue_dead_letters', 'queue_subscriptions',
                     'queue_broadcasts')
 ORDER BY c.relname
