-- The durable job queue (pica/store/jobs.py): rows written in the same transaction as the message they follow.
-- state: queued (due at run_at), running (claimed; run_at is the lease's end), dead (out of attempts). Done: deleted.
CREATE TABLE jobs (
    job_id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    payload BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    run_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX jobs_due ON jobs (run_at, job_id) WHERE state <> 'dead';
-- Event-stream jobs run one at a time per conversation (target), oldest first: the claim looks for an older one.
CREATE INDEX jobs_chain ON jobs (target, job_id) WHERE kind = 'stream';
-- Webhook endpoints registered with `pica webhook add` (those of the TOML file are configuration, not rows).
CREATE TABLE webhook_endpoints (
    endpoint_id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
