"""PostgreSQL's text for the statements of :mod:`pica.store.writes`, and the driver that runs a transaction.

Batch reads and writes take one array per column and ``unnest`` them: one round trip per step however many rows.
``lock_conversations`` takes the conversations' row locks in id order (``ORDER BY ... FOR UPDATE`` locks rows as
they come out of the sort), the order every writer uses. Search values are ``tsvector`` literals
(:mod:`pica.store.postgres_search`) kept in the message row, so the separate index steps are empty here.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

from pica.store.txn import Dialect, Read, Statement, Txn

T = TypeVar("T")

STATEMENTS: Final[Dialect] = {
    "lock_conversations": Statement(
        "SELECT conversation_id, last_seq FROM conversations WHERE conversation_id = ANY($1::text[])"
        " ORDER BY conversation_id FOR UPDATE"
    ),
    "find_originals": Statement(
        "SELECT m.sender, m.client_msg_id, m.conversation_id, m.seq, m.ts"
        " FROM unnest($1::bigint[], $2::text[]) AS k(sender, client_msg_id)"
        " JOIN messages m ON m.sender = k.sender AND m.client_msg_id = k.client_msg_id"
    ),
    "recipient_facts": Statement(
        "SELECT u.user_id, k.sender,"
        " EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = u.user_id AND b.blocked_id = k.sender),"
        " u.only_contacts AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.user_id = u.user_id"
        " AND c.peer_id = k.sender AND c.state = 'accepted')"
        " FROM unnest($1::bigint[], $2::bigint[]) AS k(recipient, sender) JOIN users u ON u.user_id = k.recipient"
    ),
    "group_senders": Statement(
        "SELECT m.conversation_id, m.user_id, m.role, m.muted, g.muted_all, g.dissolved, g.members_version"
        " FROM unnest($1::text[], $2::bigint[]) AS k(conversation_id, user_id)"
        " JOIN members m ON m.conversation_id = k.conversation_id AND m.user_id = k.user_id"
        " JOIN groups g ON g.conversation_id = m.conversation_id"
    ),
    # In id order, as the locks are taken: two nodes creating the same conversations wait for each other in order.
    "create_direct_conversations": Statement(
        "INSERT INTO conversations (conversation_id, kind, last_seq, last_ts, created_at)"
        " SELECT k.conversation_id, 'direct', 0, k.ts, k.ts FROM unnest($1::text[], $2::bigint[])"
        " AS k(conversation_id, ts) ORDER BY k.conversation_id ON CONFLICT DO NOTHING"
    ),
    "create_self_conversations": Statement(
        "INSERT INTO conversations (conversation_id, kind, last_seq, last_ts, created_at)"
        " SELECT k.conversation_id, 'self', 0, k.ts, k.ts FROM unnest($1::text[], $2::bigint[])"
        " AS k(conversation_id, ts) ON CONFLICT DO NOTHING"
    ),
    "advance_conversations": Statement(
        "UPDATE conversations c SET last_seq = k.seq, last_ts = k.ts"
        " FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS k(conversation_id, seq, ts)"
        " WHERE c.conversation_id = k.conversation_id"
    ),
    # A client id committed meanwhile by another transaction is skipped (ON CONFLICT waits for that transaction);
    # the batch sees fewer rows inserted than planned and runs again.
    "insert_messages": Statement(
        "INSERT INTO messages (conversation_id, seq, sender, client_msg_id, ts, body, search)"
        " SELECT k.c, k.s, k.u, k.m, k.t, k.b, k.f::tsvector"
        " FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::bytea[], $7::text[])"
        " AS k(c, s, u, m, t, b, f) ON CONFLICT (sender, client_msg_id) DO NOTHING"
    ),
    "index_search": Statement(None),
    "unindex_search": Statement(None),
    "insert_members": Statement(
        "INSERT INTO members (conversation_id, user_id) SELECT * FROM unnest($1::text[], $2::bigint[])"
        " ON CONFLICT DO NOTHING"
    ),
    "mark_sender_read": Statement(
        "UPDATE members m SET read_seq = greatest(m.read_seq, k.seq), delivered_seq = greatest(m.delivered_seq, k.seq)"
        " FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS k(conversation_id, user_id, seq)"
        " WHERE m.conversation_id = k.conversation_id AND m.user_id = k.user_id"
    ),
    "find_original_message": Statement(
        "SELECT conversation_id, seq, sender, client_msg_id, ts, body FROM messages"
        " WHERE sender = $1 AND client_msg_id = $2"
    ),
    "member_state": Statement(
        "SELECT m.joined_seq, g.dissolved FROM members m LEFT JOIN groups g ON g.conversation_id = m.conversation_id"
        " WHERE m.conversation_id = $1 AND m.user_id = $2"
    ),
    "member_range": Statement(
        "SELECT m.joined_seq, c.last_seq FROM members m JOIN conversations c ON c.conversation_id = m.conversation_id"
        " WHERE m.conversation_id = $1 AND m.user_id = $2"
    ),
    "message_for_event": Statement(
        "SELECT sender, ts, state, body FROM messages WHERE conversation_id = $1 AND seq = $2"
    ),
    "change_message": Statement(
        "UPDATE messages m SET state = k.state, body = k.body, search = k.search::tsvector"
        " FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[], $5::text[])"
        " AS k(conversation_id, seq, state, body, search)"
        " WHERE m.conversation_id = k.conversation_id AND m.seq = k.seq"
    ),
    "insert_hidden": Statement(
        "INSERT INTO hidden (user_id, conversation_id, seq)"
        " SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[]) ON CONFLICT DO NOTHING"
    ),
}


def _changed(status: str) -> int:
    """Rows changed, from a command tag such as ``INSERT 0 5`` or ``UPDATE 3``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


async def run(conn: Any, txn: Txn[T]) -> T:
    """Run a transaction's steps on an asyncpg connection (already inside BEGIN) and return its result."""
    answer: Any = None
    try:
        while True:
            step = txn.send(answer)
            statement = STATEMENTS[step.statement]
            if isinstance(step, Read):
                answer = [] if statement.sql is None else await conn.fetch(statement.sql, *statement.select(step.args))
            elif statement.sql is None or not step.rows:
                answer = 0
            else:
                answer = _changed(await conn.execute(statement.sql, *statement.select(step.columns)))
    except StopIteration as stop:
        result: T = stop.value
        return result
