-- Groups, roles and mutes; contacts and blocks; per-user settings; message state for recall/edit; search.
ALTER TABLE users ADD COLUMN only_contacts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;

CREATE TABLE groups (
    group_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT    NOT NULL UNIQUE,
    name            TEXT    NOT NULL,
    owner_id        INTEGER NOT NULL,
    muted_all       INTEGER NOT NULL DEFAULT 0,
    dissolved       INTEGER NOT NULL DEFAULT 0,
    members_version INTEGER NOT NULL DEFAULT 0,  -- bumped by every membership change (fan-out cache key)
    created_at      INTEGER NOT NULL
);

-- role: owner | admin | member (1:1 members are plain members). muted: this member may not send.
ALTER TABLE members ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
ALTER TABLE members ADD COLUMN muted INTEGER NOT NULL DEFAULT 0;

-- One row per direction: (a, b, 'outgoing') and (b, a, 'incoming') for a request; both 'accepted' once accepted.
CREATE TABLE contacts (
    user_id    INTEGER NOT NULL,
    peer_id    INTEGER NOT NULL,
    state      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, peer_id)
) WITHOUT ROWID;

CREATE TABLE blocks (
    user_id    INTEGER NOT NULL,
    blocked_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
) WITHOUT ROWID;
CREATE INDEX blocks_by_blocked ON blocks (blocked_id, user_id);

-- Messages hidden for one user ("delete for me"); they read as tombstones, so seqs stay gap-free.
CREATE TABLE hidden (
    user_id         INTEGER NOT NULL,
    conversation_id TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id, seq)
) WITHOUT ROWID;

-- state: '' normal, 'recalled', 'edited'; the event that changed it is its own message later in the seq.
ALTER TABLE messages ADD COLUMN state TEXT NOT NULL DEFAULT '';

-- Full-text search over message text (FTS5, external rows keyed by conversation and seq).
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    text,
    conversation_id UNINDEXED,
    seq UNINDEXED,
    tokenize = 'unicode61 remove_diacritics 2'
);
