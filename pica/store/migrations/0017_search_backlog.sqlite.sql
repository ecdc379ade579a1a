-- Messages committed and not yet in the search index (pica/store/search.py, "The search backlog"). FTS5 writes a
-- segment per transaction, and merging the segments of hundreds of small group commits a second held sends for
-- tens of milliseconds; so a message's token document waits here, written with the message in its transaction,
-- and the writer moves the rows into messages_fts in bulk (sqlite.search_delay_ms), or at once before a search.
-- A row outlives a crash, so nothing acked is left out of the index.
CREATE TABLE search_backlog (
    conversation_id TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    text            TEXT    NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
