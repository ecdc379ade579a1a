-- Account lifecycle and privacy controls (pica/store/lifecycle.py, pica/store/social.py, pica/store/groups.py).
-- deleted_at: when the account was deleted (ms since the epoch), 0 while it exists. The row stays as a tombstone so
-- that the user id in other people's timelines still resolves (to "a deleted user").
ALTER TABLE users ADD COLUMN deleted_at BIGINT NOT NULL DEFAULT 0;
-- Who may add the user to a group, and who sees their presence: 'everyone', 'contacts' or 'nobody'.
ALTER TABLE users ADD COLUMN group_add TEXT NOT NULL DEFAULT 'everyone';
ALTER TABLE users ADD COLUMN presence TEXT NOT NULL DEFAULT 'everyone';

-- A group add the invitee did not consent to (their group_add setting): pending until they accept or decline.
CREATE TABLE group_invites (
    user_id    BIGINT NOT NULL,
    group_id   BIGINT NOT NULL,
    inviter    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, group_id)
);
CREATE INDEX group_invites_by_inviter ON group_invites (inviter);
