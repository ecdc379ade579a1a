-- Replies, threads and mentions (pica/store/annotations.py, docs/protocol.md section 28). Reactions need no table:
-- they live in the target message's body, changed in place by the reaction event's transaction.

-- A reply (seq) quoting message target_seq of the same conversation: a recall of the target finds its quotes here.
CREATE TABLE replies (
    conversation_id TEXT NOT NULL,
    target_seq INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, target_seq, seq)
) WITHOUT ROWID;

-- Messages of the thread under group message root_seq (they are ordinary messages of the conversation too).
CREATE TABLE thread_messages (
    conversation_id TEXT NOT NULL,
    root_seq INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    sender INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, root_seq, seq)
) WITHOUT ROWID;

-- A thread's participants (the root's author and everyone who wrote in it) and their read cursor in it.
CREATE TABLE thread_members (
    conversation_id TEXT NOT NULL,
    root_seq INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    read_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, root_seq, user_id)
) WITHOUT ROWID;

-- Who message seq mentions: a user id, or 0 for @all. sender: the message's author (never counted for themself).
CREATE TABLE mentions (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    sender INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq, user_id)
) WITHOUT ROWID;
CREATE INDEX mentions_by_user ON mentions (user_id, conversation_id, seq);
