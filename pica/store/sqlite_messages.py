"""SQL for messages, cursors, search and the conversation list. Plain functions of a connection: the writer thread
and the reader pool of :mod:`pica.store.sqlite` call them; they never touch the event loop.

Write operations raise domain errors (PicaError) only before their first write (the group-commit fast path relies
on it). Messages hidden for a user, and recalled ones, are read as tombstones so that seqs stay gap-free for every
reader.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from pica.errors import (
    BadRequest,
    ConversationNotFound,
    Forbidden,
    MessageNotFound,
    UserNotFound,
)
from pica.protocol.ids import direct_peer
from pica.store.base import (
    AppendResult,
    ConversationSummary,
    DirectAppend,
    EventAppend,
    GroupAppend,
    MemberRecord,
    MessageRecord,
    Page,
)
from pica.store.event_rules import Target, plan_event

_json_decode_body: Final = msgspec.json.Decoder(dict[str, Any]).decode
_json_encode: Final = msgspec.json.Encoder().encode

DELETED_BODY: Final = {"deleted": True}
RECALLED_BODY_JSON: Final = '{"recalled":true}'
BLOCKED_MESSAGE: Final = "this user does not accept messages from you"
NOT_A_MEMBER_MESSAGE: Final = "you cannot send to this group"

# Columns of a message as seen by one reader (the first placeholder of a query using it is that reader's id).
_VISIBLE = (
    "m.conversation_id, m.seq, m.sender, m.client_msg_id, m.ts, m.body,"
    " EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = ? AND h.conversation_id = m.conversation_id"
    " AND h.seq = m.seq)"
)


def message_row(row: tuple[Any, ...]) -> MessageRecord:
    body = DELETED_BODY if len(row) > 6 and row[6] else _json_decode_body(row[5])
    return MessageRecord(row[0], row[1], row[2], row[3], row[4], dict(body))


# --------------------------------------------------------------------------------------------------------- writes


def _dedup(conn: sqlite3.Connection, sender: int, client_msg_id: str) -> AppendResult | None:
    row = conn.execute(
        "SELECT conversation_id, seq, ts FROM messages WHERE sender = ? AND client_msg_id = ?",
        (sender, client_msg_id),
    ).fetchone()
    return None if row is None else AppendResult(row[0], row[1], row[2], duplicate=True)


_FTS_INSERT: Final = "INSERT INTO messages_fts (text, conversation_id, seq) VALUES (?, ?, ?)"
# Sending marks the conversation read (and received) up to the sender's own message; max() makes the order in which
# deferred rows are applied irrelevant.
_SENDER_READ: Final = (
    "UPDATE members SET read_seq = max(read_seq, ?), delivered_seq = max(delivered_seq, ?)"
    " WHERE conversation_id = ? AND user_id = ?"
)


@dataclass(slots=True)
class Deferred:
    """Secondary rows of the messages appended in one group commit (search index, sender's read cursor), written
    with one executemany each just before the batch's COMMIT instead of one statement per message. The writer flushes
    before any operation other than an append, so nothing ever reads them unwritten. Off while a batch is replayed
    operation by operation (a rolled-back operation must not leave rows behind)."""

    enabled: bool = False
    fts: list[tuple[str, str, int]] = field(default_factory=list)
    read: list[tuple[int, int, str, int]] = field(default_factory=list)

    def flush(self, conn: sqlite3.Connection) -> None:
        if self.fts:
            conn.executemany(_FTS_INSERT, self.fts)
            self.fts.clear()
        if self.read:
            conn.executemany(_SENDER_READ, self.read)
            self.read.clear()

    def clear(self) -> None:
        self.fts.clear()
        self.read.clear()


def _insert(
    conn: sqlite3.Connection, conversation_id: str, seq: int, sender: int, client_msg_id: str, ts: int,
    body: str, search_text: str, deferred: Deferred | None = None,
) -> None:
    conn.execute(
        "INSERT INTO messages (conversation_id, seq, sender, client_msg_id, ts, body) VALUES (?, ?, ?, ?, ?, ?)",
        (conversation_id, seq, sender, client_msg_id, ts, body),
    )
    if deferred is not None and deferred.enabled:
        if search_text:
            deferred.fts.append((search_text, conversation_id, seq))
        deferred.read.append((seq, seq, conversation_id, sender))
        return
    if search_text:
        conn.execute(_FTS_INSERT, (search_text, conversation_id, seq))
    conn.execute(_SENDER_READ, (seq, seq, conversation_id, sender))


def _next_seq(conn: sqlite3.Connection, conversation_id: str, ts: int) -> int:
    row = conn.execute(
        "UPDATE conversations SET last_seq = last_seq + 1, last_ts = ? WHERE conversation_id = ? RETURNING last_seq",
        (ts, conversation_id),
    ).fetchone()
    if row is None:
        raise ConversationNotFound()
    return int(row[0])


def append_direct(conn: sqlite3.Connection, request: DirectAppend, deferred: Deferred | None = None) -> AppendResult:
    existing = _dedup(conn, request.sender, request.client_msg_id)
    if existing is not None:
        return existing
    # One statement for "does the recipient exist, and will they take a message from the sender?"
    recipient = conn.execute(
        "SELECT u.only_contacts,"
        " EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = u.user_id AND b.blocked_id = ?2),"
        " u.only_contacts AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.user_id = u.user_id"
        " AND c.peer_id = ?2 AND c.state = 'accepted')"
        " FROM users u WHERE u.user_id = ?1",
        (request.recipient, request.sender),
    ).fetchone()
    if recipient is None:
        raise UserNotFound(f"user {request.recipient} does not exist")
    if request.sender != request.recipient and (recipient[1] or recipient[2]):
        raise Forbidden(BLOCKED_MESSAGE)
    (seq,) = conn.execute(
        "INSERT INTO conversations (conversation_id, kind, last_seq, last_ts, created_at)"
        " VALUES (?, 'direct', 1, ?, ?)"
        " ON CONFLICT (conversation_id) DO UPDATE SET last_seq = last_seq + 1, last_ts = excluded.last_ts"
        " RETURNING last_seq",
        (request.conversation_id, request.ts, request.ts),
    ).fetchone()
    if seq == 1:
        conn.executemany(
            "INSERT OR IGNORE INTO members (conversation_id, user_id) VALUES (?, ?)",
            [(request.conversation_id, request.sender), (request.conversation_id, request.recipient)],
        )
    _insert(conn, request.conversation_id, seq, request.sender, request.client_msg_id, request.ts,
            request.body_json.decode(), request.search_text, deferred)
    return AppendResult(request.conversation_id, seq, request.ts, duplicate=False)


def append_group(conn: sqlite3.Connection, request: GroupAppend, deferred: Deferred | None = None) -> AppendResult:
    existing = _dedup(conn, request.sender, request.client_msg_id)
    if existing is not None:
        return existing
    row = conn.execute(
        "SELECT m.role, m.muted, g.muted_all, g.dissolved, g.members_version FROM members m"
        " JOIN groups g ON g.conversation_id = m.conversation_id"
        " WHERE m.conversation_id = ? AND m.user_id = ?",
        (request.conversation_id, request.sender),
    ).fetchone()
    if row is None:  # not a member, or no such group: one answer for both, so that group ids cannot be probed
        raise Forbidden(NOT_A_MEMBER_MESSAGE)
    role, muted, muted_all, dissolved, version = row
    if dissolved:
        raise Forbidden("the group was dissolved")
    if muted or (muted_all and role == "member"):
        raise Forbidden("you are muted in this group")
    seq = _next_seq(conn, request.conversation_id, request.ts)
    _insert(conn, request.conversation_id, seq, request.sender, request.client_msg_id, request.ts,
            request.body_json.decode(), request.search_text, deferred)
    return AppendResult(request.conversation_id, seq, request.ts, duplicate=False, members_version=version)


def append_notice(
    conn: sqlite3.Connection, conversation_id: str, actor: int, event: dict[str, Any], ts: int
) -> MessageRecord:
    """A system notice ({"system": {...}}) in a conversation's timeline; its id is server-made (``~`` prefix)."""
    seq = _next_seq(conn, conversation_id, ts)
    body = {"system": event}
    client_msg_id = f"~n:{conversation_id}:{seq}"
    _insert(conn, conversation_id, seq, actor, client_msg_id, ts, _json_encode(body).decode(), "")
    return MessageRecord(conversation_id, seq, actor, client_msg_id, ts, body)


def append_event(conn: sqlite3.Connection, request: EventAppend) -> tuple[AppendResult, MessageRecord]:
    member = conn.execute(
        "SELECT m.joined_seq, g.dissolved FROM members m LEFT JOIN groups g ON g.conversation_id = m.conversation_id"
        " WHERE m.conversation_id = ? AND m.user_id = ?",
        (request.conversation_id, request.user_id),
    ).fetchone()
    if member is None:
        raise ConversationNotFound()
    existing = _dedup(conn, request.user_id, request.client_msg_id)
    if existing is not None:
        row = conn.execute(
            "SELECT conversation_id, seq, sender, client_msg_id, ts, body FROM messages"
            " WHERE conversation_id = ? AND seq = ?",
            (existing.conversation_id, existing.seq),
        ).fetchone()
        return existing, message_row(row)
    target = conn.execute(
        "SELECT sender, ts, state, body FROM messages WHERE conversation_id = ? AND seq = ?",
        (request.conversation_id, request.target_seq),
    ).fetchone()
    plan = plan_event(request, joined_seq=member[0], dissolved=bool(member[1]),
                      target=None if target is None else Target(target[0], target[1], target[2],
                                                                _json_decode_body(target[3])))
    new_state, search_text, event = plan.state, plan.search_text, plan.event
    new_body = RECALLED_BODY_JSON if plan.body is None else _json_encode(plan.body).decode()
    conn.execute(
        "UPDATE messages SET state = ?, body = ? WHERE conversation_id = ? AND seq = ?",
        (new_state, new_body, request.conversation_id, request.target_seq),
    )
    conn.execute(
        "DELETE FROM messages_fts WHERE conversation_id = ? AND seq = ?",
        (request.conversation_id, request.target_seq),
    )
    if search_text:
        conn.execute(
            "INSERT INTO messages_fts (text, conversation_id, seq) VALUES (?, ?, ?)",
            (search_text, request.conversation_id, request.target_seq),
        )
    seq = _next_seq(conn, request.conversation_id, request.ts)
    _insert(conn, request.conversation_id, seq, request.user_id, request.client_msg_id, request.ts,
            _json_encode(event).decode(), "")
    record = MessageRecord(request.conversation_id, seq, request.user_id, request.client_msg_id, request.ts, event)
    return AppendResult(request.conversation_id, seq, request.ts, duplicate=False), record


def mark_delivered(conn: sqlite3.Connection, user_id: int, conversation_id: str, seq: int) -> int | None:
    row = conn.execute(
        "UPDATE members SET delivered_seq = min(?, c.last_seq) FROM conversations c"
        " WHERE c.conversation_id = members.conversation_id AND members.conversation_id = ?"
        " AND members.user_id = ? AND members.delivered_seq < min(?, c.last_seq)"
        " RETURNING members.delivered_seq",
        (seq, conversation_id, user_id, seq),
    ).fetchone()
    return None if row is None else int(row[0])


def mark_read(conn: sqlite3.Connection, user_id: int, conversation_id: str, seq: int) -> int | None:
    if conn.execute(
        "SELECT 1 FROM members WHERE conversation_id = ? AND user_id = ?", (conversation_id, user_id)
    ).fetchone() is None:
        raise ConversationNotFound()
    row = conn.execute(
        "UPDATE members SET read_seq = min(?, c.last_seq), delivered_seq = max(delivered_seq, min(?, c.last_seq))"
        " FROM conversations c WHERE c.conversation_id = members.conversation_id"
        " AND members.conversation_id = ? AND members.user_id = ? AND members.read_seq < min(?, c.last_seq)"
        " RETURNING members.read_seq",
        (seq, seq, conversation_id, user_id, seq),
    ).fetchone()
    return None if row is None else int(row[0])


def hide_message(conn: sqlite3.Connection, user_id: int, conversation_id: str, seq: int, ts: int) -> MessageRecord:
    """Hide one message for the user and record the fact in the user's own timeline (``u:<id>``), so that every
    device of theirs learns it live or by sync. Idempotent."""
    row = conn.execute(
        "SELECT m.joined_seq, c.last_seq FROM members m JOIN conversations c ON c.conversation_id = m.conversation_id"
        " WHERE m.conversation_id = ? AND m.user_id = ?",
        (conversation_id, user_id),
    ).fetchone()
    if row is None:
        raise ConversationNotFound()
    if not row[0] < seq <= row[1]:
        raise MessageNotFound()
    own = f"u:{user_id}"
    client_msg_id = f"~d:{conversation_id}:{seq}"
    existing = _dedup(conn, user_id, client_msg_id)
    event = {"system": {"event": "deleted", "conversation_id": conversation_id, "seq": seq}}
    if existing is not None:
        return MessageRecord(own, existing.seq, user_id, client_msg_id, existing.ts, event)
    conn.execute("INSERT OR IGNORE INTO hidden (user_id, conversation_id, seq) VALUES (?, ?, ?)",
                 (user_id, conversation_id, seq))
    conn.execute(
        "INSERT OR IGNORE INTO conversations (conversation_id, kind, last_seq, last_ts, created_at)"
        " VALUES (?, 'self', 0, ?, ?)",
        (own, ts, ts),
    )
    conn.execute("INSERT OR IGNORE INTO members (conversation_id, user_id) VALUES (?, ?)", (own, user_id))
    own_seq = _next_seq(conn, own, ts)
    _insert(conn, own, own_seq, user_id, client_msg_id, ts, _json_encode(event).decode(), "")
    return MessageRecord(own, own_seq, user_id, client_msg_id, ts, event)


# --------------------------------------------------------------------------------------------------------- reads


def history(
    conn: sqlite3.Connection, user_id: int, conversation_id: str, after: int | None, before: int | None, limit: int
) -> Page:
    row = conn.execute(
        "SELECT joined_seq FROM members WHERE conversation_id = ? AND user_id = ?", (conversation_id, user_id)
    ).fetchone()
    if row is None:
        raise ConversationNotFound()
    floor = max(row[0], after or 0)
    if before is None and after is not None:
        rows = conn.execute(
            f"SELECT {_VISIBLE} FROM messages m WHERE m.conversation_id = ? AND m.seq > ? ORDER BY m.seq LIMIT ?",
            (user_id, conversation_id, floor, limit + 1),
        ).fetchall()
        return Page([message_row(r) for r in rows[:limit]], len(rows) > limit)
    ceiling = before if before is not None else 2**62
    rows = conn.execute(
        f"SELECT {_VISIBLE} FROM messages m WHERE m.conversation_id = ? AND m.seq > ? AND m.seq < ?"
        " ORDER BY m.seq DESC LIMIT ?",
        (user_id, conversation_id, floor, ceiling, limit + 1),
    ).fetchall()
    return Page([message_row(r) for r in reversed(rows[:limit])], len(rows) > limit)


def sync(conn: sqlite3.Connection, user_id: int, cursors: Mapping[str, int], limit: int) -> Page:
    pending = []
    for conversation_id, joined, last_seq in conn.execute(
        "SELECT m.conversation_id, m.joined_seq, c.last_seq FROM members m"
        " JOIN conversations c ON c.conversation_id = m.conversation_id"
        " WHERE m.user_id = ? ORDER BY m.conversation_id",
        (user_id,),
    ):
        start = max(joined, cursors.get(conversation_id, 0))
        if last_seq > start:
            pending.append((conversation_id, start))
    messages: list[MessageRecord] = []
    for index, (conversation_id, start) in enumerate(pending):
        room = limit - len(messages)
        rows = conn.execute(
            f"SELECT {_VISIBLE} FROM messages m WHERE m.conversation_id = ? AND m.seq > ? ORDER BY m.seq LIMIT ?",
            (user_id, conversation_id, start, room + 1),
        ).fetchall()
        messages.extend(message_row(r) for r in rows[:room])
        if len(rows) > room or (len(messages) == limit and index < len(pending) - 1):
            return Page(messages, True)
    return Page(messages, False)


def member_cursors(conn: sqlite3.Connection, user_id: int, conversation_id: str) -> list[MemberRecord]:
    rows = conn.execute(
        "SELECT user_id, role, muted, joined_seq, delivered_seq, read_seq FROM members"
        " WHERE conversation_id = ? ORDER BY user_id",
        (conversation_id,),
    ).fetchall()
    if not any(r[0] == user_id for r in rows):
        raise ConversationNotFound()
    return [MemberRecord(r[0], r[1], bool(r[2]), r[3], r[4], r[5]) for r in rows]


def list_conversations(
    conn: sqlite3.Connection, user_id: int, limit: int, before_ts: int | None, before_id: str = ""
) -> list[ConversationSummary]:
    rows = conn.execute(
        "SELECT c.conversation_id, c.kind, c.last_seq, c.last_ts, m.delivered_seq, m.read_seq,"
        " coalesce(g.name, ''), coalesce(g.group_id, 0)"
        " FROM members m JOIN conversations c ON c.conversation_id = m.conversation_id"
        " LEFT JOIN groups g ON g.conversation_id = c.conversation_id"
        " WHERE m.user_id = ? AND c.kind != 'self'"
        " AND (c.last_ts < ? OR (c.last_ts = ? AND c.conversation_id > ?))"
        " ORDER BY c.last_ts DESC, c.conversation_id LIMIT ?",
        # Without before_id, nothing at before_ts itself qualifies (no id sorts after U+10FFFF).
        (user_id, *((before_ts, before_ts, before_id or "\U0010ffff") if before_ts is not None else (2**62, 0, "")),
         limit),
    ).fetchall()
    result = []
    for conversation_id, kind, last_seq, last_ts, delivered, read, name, group_id in rows:
        last = conn.execute(
            f"SELECT {_VISIBLE} FROM messages m WHERE m.conversation_id = ? AND m.seq = ?",
            (user_id, conversation_id, last_seq),
        ).fetchone()
        peer_id = peer_delivered = peer_read = 0
        if kind == "direct":
            peer_id = direct_peer(conversation_id, user_id) or 0
            peer = conn.execute(
                "SELECT delivered_seq, read_seq FROM members WHERE conversation_id = ? AND user_id = ?",
                (conversation_id, peer_id),
            ).fetchone()
            if peer is not None:
                peer_delivered, peer_read = peer
            name = (conn.execute("SELECT username FROM users WHERE user_id = ?", (peer_id,)).fetchone() or ("",))[0]
        result.append(
            ConversationSummary(
                conversation_id, kind, last_seq, last_ts, delivered, read, name, peer_id, peer_delivered, peer_read,
                group_id, message_row(last) if last else None,
            )
        )
    return result


def fts_query(text: str) -> str:
    """Every word required, each quoted: user input never reaches FTS5's query syntax. NUL ends a string inside
    FTS5's query parser ("unterminated string"), so it separates words like a space."""
    words = text.replace("\x00", " ").split()
    if not words or len(text) > 200 or len(words) > 12:
        raise BadRequest("a search is 1-12 words, at most 200 characters")
    return " ".join('"' + word.replace('"', '""') + '"' for word in words)


def search(
    conn: sqlite3.Connection, user_id: int, query: str, conversation_id: str | None, limit: int
) -> list[MessageRecord]:
    rows = conn.execute(
        f"SELECT {_VISIBLE} FROM messages_fts f"
        " JOIN members mem ON mem.conversation_id = f.conversation_id AND mem.user_id = ?"
        " JOIN messages m ON m.conversation_id = f.conversation_id AND m.seq = f.seq"
        " WHERE messages_fts MATCH ? AND f.seq > mem.joined_seq AND m.state != 'recalled'"
        " AND (? IS NULL OR f.conversation_id = ?)"
        " AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = mem.user_id"
        " AND h.conversation_id = f.conversation_id AND h.seq = f.seq)"
        " ORDER BY m.ts DESC, m.seq DESC LIMIT ?",
        (user_id, user_id, fts_query(query), conversation_id, conversation_id, limit),
    ).fetchall()
    return [message_row(r) for r in rows]
