"""SQLite's text for the statements of :mod:`pica.store.writes`, and the driver step that runs them.

Reads over a whole batch bind their keys as one JSON array of rows and join ``json_each`` to an index, so a batch of
any size is one statement. Writes run as one ``executemany``. Bodies arrive as the exact JSON bytes the server
encoded; ``CAST(? AS TEXT)`` keeps them TEXT, as every release has stored them.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Final, TypeVar

import msgspec

from pica.store.txn import Dialect, Read, Statement, Step, Txn, drive

T = TypeVar("T")
_json_encode: Final = msgspec.json.Encoder().encode

STATEMENTS: Final[Dialect] = {
    # The writer thread holds the database's write lock for the whole transaction: reading is locking.
    "lock_conversations": Statement(
        "SELECT c.conversation_id, c.last_seq FROM json_each(?1) j"
        " JOIN conversations c ON c.conversation_id = j.value"
    ),
    "find_originals": Statement(
        "SELECT m.sender, m.client_msg_id, m.conversation_id, m.seq, m.ts FROM json_each(?1) j"
        " JOIN messages m ON m.sender = j.value ->> 0 AND m.client_msg_id = j.value ->> 1",
        rows=True,
    ),
    "recipient_facts": Statement(
        "SELECT u.user_id, j.value ->> 1,"
        " EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = u.user_id AND b.blocked_id = j.value ->> 1),"
        " u.only_contacts AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.user_id = u.user_id"
        " AND c.peer_id = j.value ->> 1 AND c.state = 'accepted')"
        " FROM json_each(?1) j JOIN users u ON u.user_id = j.value ->> 0",
        rows=True,
    ),
    "group_senders": Statement(
        "SELECT m.conversation_id, m.user_id, m.role, m.muted, g.muted_all, g.dissolved, g.members_version"
        " FROM json_each(?1) j"
        " JOIN members m ON m.conversation_id = j.value ->> 0 AND m.user_id = j.value ->> 1"
        " JOIN groups g ON g.conversation_id = m.conversation_id",
        rows=True,
    ),
    "create_direct_conversations": Statement(
        "INSERT INTO conversations (conversation_id, kind, last_seq, last_ts, created_at)"
        " VALUES (?1, 'direct', 0, ?2, ?2) ON CONFLICT DO NOTHING"
    ),
    "create_self_conversations": Statement(
        "INSERT INTO conversations (conversation_id, kind, last_seq, last_ts, created_at)"
        " VALUES (?1, 'self', 0, ?2, ?2) ON CONFLICT DO NOTHING"
    ),
    "advance_conversations": Statement(
        "UPDATE conversations SET last_seq = ?2, last_ts = ?3 WHERE conversation_id = ?1"
    ),
    "insert_messages": Statement(
        "INSERT INTO messages (conversation_id, seq, sender, client_msg_id, ts, body)"
        " VALUES (?1, ?2, ?3, ?4, ?5, CAST(?6 AS TEXT))",
        pick=(0, 1, 2, 3, 4, 5),
    ),
    "index_search": Statement("INSERT INTO messages_fts (text, conversation_id, seq) VALUES (?1, ?2, ?3)"),
    "unindex_search": Statement("DELETE FROM messages_fts WHERE conversation_id = ?1 AND seq = ?2"),
    "insert_members": Statement(
        "INSERT INTO members (conversation_id, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING"
    ),
    # Sending marks the conversation read (and received) up to the sender's own message.
    "mark_sender_read": Statement(
        "UPDATE members SET read_seq = max(read_seq, ?3), delivered_seq = max(delivered_seq, ?3)"
        " WHERE conversation_id = ?1 AND user_id = ?2"
    ),
    "find_original_message": Statement(
        "SELECT conversation_id, seq, sender, client_msg_id, ts, body FROM messages"
        " WHERE sender = ?1 AND client_msg_id = ?2"
    ),
    "member_state": Statement(
        "SELECT m.joined_seq, g.dissolved FROM members m LEFT JOIN groups g ON g.conversation_id = m.conversation_id"
        " WHERE m.conversation_id = ?1 AND m.user_id = ?2"
    ),
    "member_range": Statement(
        "SELECT m.joined_seq, c.last_seq FROM members m JOIN conversations c ON c.conversation_id = m.conversation_id"
        " WHERE m.conversation_id = ?1 AND m.user_id = ?2"
    ),
    "message_for_event": Statement(
        "SELECT sender, ts, state, body FROM messages WHERE conversation_id = ?1 AND seq = ?2"
    ),
    "change_message": Statement(
        "UPDATE messages SET state = ?3, body = CAST(?4 AS TEXT) WHERE conversation_id = ?1 AND seq = ?2",
        pick=(0, 1, 2, 3),
    ),
    "insert_hidden": Statement(
        "INSERT INTO hidden (user_id, conversation_id, seq) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING"
    ),
}


def _bind(statement: Statement, args: tuple[Any, ...]) -> tuple[Any, ...]:
    picked = statement.select(args)
    if statement.rows:
        return (_json_encode(list(zip(*picked, strict=True))).decode(),)
    return tuple(_json_encode(a).decode() if isinstance(a, list) else a for a in picked)


def run_step(conn: sqlite3.Connection, step: Step) -> Any:
    """Answer one step of a transaction on ``conn``: rows for a read, rows changed for a write."""
    statement = STATEMENTS[step.statement]
    if isinstance(step, Read):
        if statement.sql is None:
            return []
        return conn.execute(statement.sql, _bind(statement, step.args)).fetchall()
    if statement.sql is None or not step.rows:
        return 0
    return conn.executemany(statement.sql, zip(*statement.select(step.columns), strict=True)).rowcount


def run(conn: sqlite3.Connection, txn: Txn[T]) -> T:
    """Run a transaction's steps on ``conn`` (already inside BEGIN) and return its result."""
    return drive(txn, lambda step: run_step(conn, step))
