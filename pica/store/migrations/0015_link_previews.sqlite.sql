-- Link previews (pica/store/previews.py, docs/protocol.md section 30): what a fetch of a URL gave, reused for
-- previews.cache_ttl seconds by every message naming it. preview: the JSON of the preview's fields ('{}': the fetch
-- gave nothing to show, remembered too, so a dead link is not fetched again for every message).
CREATE TABLE link_previews (
    url TEXT PRIMARY KEY,
    fetched_at INTEGER NOT NULL,
    preview TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX link_previews_by_age ON link_previews (fetched_at);
