-- Push notifications (pica/store/devices.py, docs/push.md). A device is a push target registered by one session; a
-- session's end (logout, revocation, expiry) ends its devices: they are never pushed to and are deleted when met.
CREATE TABLE push_devices (
    device_id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    session_id TEXT NOT NULL,
    platform TEXT NOT NULL,
    token TEXT NOT NULL,
    p256dh TEXT NOT NULL DEFAULT '',
    auth TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
-- One row per token: the same token registered again (another session, another user) moves to the new registration.
CREATE UNIQUE INDEX push_devices_token ON push_devices (platform, token);
CREATE INDEX push_devices_by_user ON push_devices (user_id);
-- A user's notification level per conversation (no row: "all", not muted). mute_until: ms since the epoch.
CREATE TABLE notification_settings (
    user_id BIGINT NOT NULL,
    conversation_id TEXT NOT NULL,
    level TEXT NOT NULL,
    mute_until BIGINT,
    PRIMARY KEY (user_id, conversation_id)
);
-- privacy: pushes carry no sender, conversation name or text (no row: off).
CREATE TABLE push_settings (
    user_id BIGINT PRIMARY KEY,
    privacy BOOLEAN NOT NULL DEFAULT false
);
