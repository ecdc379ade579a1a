-- Uploaded files (pica/store/media.py). The bytes live in the blob storage under their sha256 (one copy per content,
-- whoever uploaded it); a row is one upload: its owner, its name and what the server found it to be.
CREATE TABLE files (
    file_id TEXT PRIMARY KEY,
    owner BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX files_by_owner ON files (owner, created_at);
CREATE INDEX files_by_sha256 ON files (sha256);
-- A message that references a file, written in the message's transaction: who may download it (the members who can
-- see that message). A recall deletes its rows.
CREATE TABLE file_refs (
    file_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (file_id, conversation_id, seq)
);
CREATE INDEX file_refs_by_message ON file_refs (conversation_id, seq);
-- Resumable uploads (the tus protocol) not finished yet; the bytes so far are in the node's upload directory, and
-- received is how many of them are durable (a crash may leave more in the file: they are cut off).
CREATE TABLE uploads (
    upload_id TEXT PRIMARY KEY,
    owner BIGINT NOT NULL,
    length BIGINT NOT NULL,
    received BIGINT NOT NULL DEFAULT 0,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    touched_at INTEGER NOT NULL
);
CREATE INDEX uploads_by_owner ON uploads (owner);
-- One row per stored content (the bytes under blob key sha256). last_put is written before every upload puts its
-- bytes, so the sweep never deletes content that an upload is writing (it waits media.unreferenced_grace).
CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    last_put BIGINT NOT NULL
);
