-- Invite codes for auth.registration = "invite" (pica/store/invites.py): only the code's SHA-256 is kept.
CREATE TABLE invites (
    code_hash TEXT PRIMARY KEY,
    uses_left INTEGER NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
