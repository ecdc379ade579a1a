-- Replies, threads and mentions (pica/store/annotations.py, docs/protocol.md section 28). Reactions need no table:
-- they live in the target message's body, changed in place by the reaction event's transaction.

-- A reply (seq) quoting message target_seq of the same conversation: a recall of the target finds its quotes here.
CREATE TABLE replies (
    conversation_id TEXT COLLATE "C" NOT NULL,
    target_seq BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, target_seq, seq)
);

-- Messages of the thread under group message root_seq (they are ordinary messages of the conversation too).
CREATE TABLE thread_messages (
    conversation_id TEXT COLLATE "C" NOT NULL,
    root_seq BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    sender BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, root_seq, seq)
);

-- A thread's participants (the root's author and everyone who wrote in it) and their read cursor in it.
CREATE TABLE thread_members (
    conversation_id TEXT COLLATE "C" NOT NULL,
    root_seq BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    read_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, root_seq, user_id)
);

-- Who message seq mentions: a user id, or 0 for @all. sender: the message's author (never counted for themself).
CREATE TABLE mentions (
    conversation_id TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    sender BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq, user_id)
);
CREATE INDEX mentions_by_user ON mentions (user_id, conversation_id, seq);
