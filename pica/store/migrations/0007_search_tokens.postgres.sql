-- Search in every language (pica/protocol/tokens.py): messages.search keeps its type (a tsvector, now of the token
-- document's lexemes). search_index records that the values were built by no tokenizer yet: the store rebuilds them
-- in Python when it next opens (pica/store/search.py), as it does for any later tokenizer version.
CREATE TABLE search_index (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO search_index (id, version) VALUES (1, 0);
