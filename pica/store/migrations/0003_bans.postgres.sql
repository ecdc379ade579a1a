-- No-op for PostgreSQL. SQLite's 0003 adds users.banned and a partial index of the banned. PostgreSQL support came
-- later: its 0001 created the whole model as of SQLite 0003 at once, bans included. This file keeps both dialects on
-- one sequence of versions; the statement below does nothing (a file of comments alone is not a query a driver
-- accepts).
SELECT 1;
