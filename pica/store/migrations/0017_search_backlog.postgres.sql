-- Nothing to do on PostgreSQL: a message's tsvector is written in the message's own row (GIN indexes have no
-- per-transaction segments to merge). The version exists so that both dialects share one sequence.
SELECT 1;
