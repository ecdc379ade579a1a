-- Administration (pica/store/admin.py): the admin role, the audit log, users' reports of messages.
-- admin: 1 for an administrator (`pica user create --admin`, `pica user admin NAME`), who may call /v1/admin/*.
ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;

-- One row per administrative action, written in the same transaction as the change it records.
-- actor_id: the administrator's user id, 0 for the `pica` command line (actor = 'cli').
-- target: what was acted on, 'user:<id>', 'group:<id>', 'message:<conversation_id>:<seq>', 'report:<id>'.
CREATE TABLE audit_log (
    audit_id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    actor_id INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT NOT NULL,
    address TEXT NOT NULL
);

-- A user's report of a message they can see; state 'open' until an administrator resolves it.
-- sender and body: the message as the reporter saw it, kept even if it is edited or removed later.
CREATE TABLE reports (
    report_id INTEGER PRIMARY KEY AUTOINCREMENT,
    reporter INTEGER NOT NULL,
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sender INTEGER NOT NULL,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'open',
    action TEXT NOT NULL DEFAULT '',
    resolved_by INTEGER NOT NULL DEFAULT 0,
    resolved_at INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
-- One report per reporter and message: a repeat answers the first.
CREATE UNIQUE INDEX reports_once ON reports (reporter, conversation_id, seq);
CREATE INDEX reports_open ON reports (report_id) WHERE state = 'open';
