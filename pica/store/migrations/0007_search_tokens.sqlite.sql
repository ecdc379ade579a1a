-- Search in every language (pica/protocol/tokens.py): the FTS5 table now holds each message's token document,
-- which the ascii tokenizer splits on spaces only ('_' kept in tokens for the kind markers), and indexes
-- conversation_id too, so that a search narrows its match to the caller's conversations (pica/store/search.py).
-- The table is recreated empty and search_index records that it was built by no tokenizer yet: the store rebuilds
-- it in Python when it next opens (pica/store/search.py), as it does for any later tokenizer version.
DROP TABLE messages_fts;
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    text,
    conversation_id,
    seq UNINDEXED,
    tokenize = "ascii tokenchars '_'"
);
CREATE TABLE search_index (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO search_index (id, version) VALUES (1, 0);
