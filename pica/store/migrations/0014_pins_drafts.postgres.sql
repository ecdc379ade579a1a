-- Pins and per-user conversation state (pica/store/pins.py, docs/protocol.md section 29).
-- A pinned message of a conversation: who pinned it and when. At most conversations.max_pins rows per conversation.
CREATE TABLE pins (
    conversation_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    pinned_by BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
-- One user's own state of one conversation, synced to their devices (no row: all defaults). draft '' : none;
-- pinned_at 0: not pinned to the top of the list, else when it was (the order among pinned ones). The mute is in
-- notification_settings (0011), which pushes already read.
CREATE TABLE conversation_prefs (
    user_id BIGINT NOT NULL,
    conversation_id TEXT NOT NULL,
    draft TEXT NOT NULL DEFAULT '',
    draft_ts BIGINT NOT NULL DEFAULT 0,
    pinned_at BIGINT NOT NULL DEFAULT 0,
    archived BOOLEAN NOT NULL DEFAULT false,
    marked_unread BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (user_id, conversation_id)
);
