-- Nothing to do on PostgreSQL: its GIN indexes are not segments merged inside a writing transaction. The version
-- exists so that both dialects share one sequence.
SELECT 1;
