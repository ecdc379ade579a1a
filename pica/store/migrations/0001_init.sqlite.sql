-- Accounts, conversations, memberships and the message log.
CREATE TABLE users (
    user_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

-- last_seq is the conversation's seq allocator: the next message takes last_seq + 1 in the same transaction.
CREATE TABLE conversations (
    conversation_id TEXT    PRIMARY KEY,
    kind            TEXT    NOT NULL,
    last_seq        INTEGER NOT NULL,
    last_ts         INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
) WITHOUT ROWID;

-- joined_seq: the member sees messages with seq > joined_seq. delivered_seq/read_seq: receipt cursors.
CREATE TABLE members (
    conversation_id TEXT    NOT NULL,
    user_id         INTEGER NOT NULL,
    joined_seq      INTEGER NOT NULL DEFAULT 0,
    delivered_seq   INTEGER NOT NULL DEFAULT 0,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members (user_id, conversation_id);

CREATE TABLE messages (
    conversation_id TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    sender          INTEGER NOT NULL,
    client_msg_id   TEXT    NOT NULL,
    ts              INTEGER NOT NULL,
    body            TEXT    NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
-- The idempotency key: one message per (sender, client_msg_id), forever.
CREATE UNIQUE INDEX messages_idempotency ON messages (sender, client_msg_id);
