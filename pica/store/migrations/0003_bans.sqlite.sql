-- Accounts an administrator banned (`pica user ban`): they cannot log in, and their tokens are refused.
ALTER TABLE users ADD COLUMN banned INTEGER NOT NULL DEFAULT 0;
-- The server polls for banned users to close their open connections; a partial index keeps that poll cheap
-- however many users there are (it holds only the banned ones).
CREATE INDEX users_banned ON users (user_id) WHERE banned = 1;
