-- Pins and per-user conversation state (pica/store/pins.py, docs/protocol.md section 29).
-- A pinned message of a conversation: who pinned it and when. At most conversations.max_pins rows per conversation.
CREATE TABLE pins (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    pinned_by INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
-- One user's own state of one conversation, synced to their devices (no row: all defaults). draft '' : none;
-- pinned_at 0: not pinned to the top of the list, else when it was (the order among pinned ones). The mute is in
-- notification_settings (0011), which pushes already read.
CREATE TABLE conversation_prefs (
    user_id INTEGER NOT NULL,
    conversation_id TEXT NOT NULL,
    draft TEXT NOT NULL DEFAULT '',
    draft_ts INTEGER NOT NULL DEFAULT 0,
    pinned_at INTEGER NOT NULL DEFAULT 0,
    archived INTEGER NOT NULL DEFAULT 0,
    marked_unread INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, conversation_id)
) WITHOUT ROWID;
