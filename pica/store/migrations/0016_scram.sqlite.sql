-- SCRAM credentials of the XMPP gateway (pica/store/scram.py, docs/protocol.md 31.3): per user and mechanism, the
-- salt, iteration count, StoredKey and ServerKey of RFC 5802 (base64), derived from the password at a PLAIN login.
-- password_tag is the SHA-256 of the users.password_hash they were derived under: a changed password makes them
-- stale (refused) until the next PLAIN login derives them again.
CREATE TABLE scram_keys (
    user_id      INTEGER NOT NULL,
    mechanism    TEXT    NOT NULL,
    salt         TEXT    NOT NULL,
    iterations   INTEGER NOT NULL,
    stored_key   TEXT    NOT NULL,
    server_key   TEXT    NOT NULL,
    password_tag TEXT    NOT NULL,
    PRIMARY KEY (user_id, mechanism)
) WITHOUT ROWID;
