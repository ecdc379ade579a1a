-- Signed-in sessions (pica/store/sessions.py): one row per login, the family of its refresh tokens. Access tokens
-- name their session, so revoking the row refuses them from then on.
CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    rotated_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    address TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    revoked_at INTEGER,
    revoked_reason TEXT
) WITHOUT ROWID;
CREATE INDEX sessions_by_user ON sessions (user_id, last_used_at);
-- Rows long expired are forgotten by every node's sweeper now and then.
CREATE INDEX sessions_expiry ON sessions (expires_at);
-- What every node polls to close the sockets of revoked sessions: only revoked rows are indexed.
CREATE INDEX sessions_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
