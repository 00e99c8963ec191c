-- tables: queue_messages, queue_broadcasts, queue_dead_letters, queue_subscriptions, pg_stat_user_tables
-- vacuum_candidates.sql: which of the broker's tables (queue_messages, queue_broadcasts,
-- queue_dead_letters, queue_subscriptions) in the current schema carry more dead
-- tuples than the threshold, so the sweep can VACUUM them even where autovacuum is off.
-- name: vacuum_candidates
SELECT s.relname
  FROM pg_stat_user_tables s
 WHERE s.schemaname = current_schema()
   AND s.relname IN ('queue_messages', 'queue_broadcasts', 'queue_dead_letters',
                     'queue_subscriptions')
   AND s.n_dead_tup > %(threshold)s
 ORDER BY s.n_dead_tup DESC
