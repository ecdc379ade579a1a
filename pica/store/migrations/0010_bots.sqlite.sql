-- Bot accounts (pica/store/bots.py): a user row with a bots row beside it. The bot signs in with an API key, of which
-- only the SHA-256 is kept; the key's session (a row of sessions, never expiring) is what rotation and revocation
-- end, so the revocation sweep closes a rotated key's sockets like a logged-out session's. webhook_url '' : the bot
-- receives over a socket; else message.created deliveries signed with webhook_secret (whsec_).
CREATE TABLE bots (
    user_id INTEGER PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    session_id TEXT NOT NULL,
    webhook_url TEXT NOT NULL DEFAULT '',
    webhook_secret TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    key_created_at INTEGER NOT NULL
);
