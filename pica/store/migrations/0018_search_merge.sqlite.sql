-- FTS5 merges its segments inside the transaction that writes them, a work quantum at a time: about 64 pages per
-- level after every 64 leaf pages written, which held one indexing transaction in 25 for 15-25 ms at 5,000 msg/s,
-- and every send waiting on the writer with it. The writer now merges a few pages after each part of the search
-- backlog it indexes (pica/store/search.py, flush_backlog_part; sqlite.search_merge_pages), so FTS5's own
-- automatic merging is off. A level that still reaches 'crisismerge' segments (16) is merged whole, as before.
INSERT INTO messages_fts (messages_fts, rank) VALUES ('automerge', 0);
