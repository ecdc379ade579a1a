-- No-op for PostgreSQL. SQLite's 0002 adds groups, roles and mutes, contacts, blocks, hidden messages, message state
-- and the search index. PostgreSQL support came later: its 0001 created the whole model as of SQLite 0003 at once.
-- This file keeps both dialects on one sequence of versions; the statement below does nothing (a file of comments
-- alone is not a query a driver accepts).
SELECT 1;
