"""SQLite SQL for cursors, search, the conversation list and the other message reads. Plain functions of a
connection: the writer thread and the reader pool of :mod:`pica.store.sqlite` call them; they never touch the event
loop. The message writes themselves are in :mod:`pica.store.messages`, shared with PostgreSQL.

Write operations raise domain errors (PicaError) only before their first write (the group-commit fast path relies
on it). Messages hidden for a user, and recalled ones, are read as tombstones so that seqs stay gap-free for every
reader.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from pica.errors import BadRequest, ConversationNotFound
from pica.protocol.ids import direct_peer
from pica.store.base import ConversationSummary, MemberRecord, MessageRecord, Page
from pica.store.messages import message_row

# Columns of a message as seen by one reader (the first placeholder of a query using it is that reader's id).
_VISIBLE = (
    "m.conversation_id, m.seq, m.sender, m.client_msg_id, m.ts, m.body,"
    " EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = ? AND h.conversation_id = m.conversation_id"
    " AND h.seq = m.seq)"
)


# --------------------------------------------------------------------------------------------------------- writes


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
