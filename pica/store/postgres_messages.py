"""PostgreSQL SQL for cursors and the message reads (history, sync, the conversation list, search). Plain coroutines
of an asyncpg connection. The message writes themselves are in :mod:`pica.store.messages`, shared with SQLite.

Messages hidden for a user, and recalled ones, read as tombstones so that seqs stay gap-free for every reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pica.errors import ConversationNotFound
from pica.protocol.ids import direct_peer
from pica.store import postgres_search as fts
from pica.store.base import ConversationSummary, MemberRecord, MessageRecord, Page
from pica.store.messages import message_row

# A message as seen by one reader ($1 is that reader's user id): hidden for them reads as a tombstone.
_VISIBLE: Final = (
    "m.conversation_id, m.seq, m.sender, m.client_msg_id, m.ts, m.body,"
    " EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = $1 AND h.conversation_id = m.conversation_id"
    " AND h.seq = m.seq) AS hidden"
)
_MESSAGE: Final = "m.conversation_id, m.seq, m.sender, m.client_msg_id, m.ts, m.body"


# --------------------------------------------------------------------------------------------------------- writes


async def mark_delivered(conn: Any, user_id: int, conversation_id: str, seq: int) -> int | None:
    value = await conn.fetchval(
        "UPDATE members m SET delivered_seq = least($3::bigint, c.last_seq) FROM conversations c"
        " WHERE c.conversation_id = m.conversation_id AND m.conversation_id = $1 AND m.user_id = $2"
        " AND m.delivered_seq < least($3::bigint, c.last_seq)"
        " RETURNING m.delivered_seq",
        conversation_id, user_id, seq,
    )
    return None if value is None else int(value)


async def mark_read(conn: Any, user_id: int, conversation_id: str, seq: int) -> int | None:
    row = await conn.fetchrow(
        "WITH moved AS (UPDATE members m SET read_seq = least($3::bigint, c.last_seq),"
        " delivered_seq = greatest(m.delivered_seq, least($3::bigint, c.last_seq))"
        " FROM conversations c WHERE c.conversation_id = m.conversation_id"
        " AND m.conversation_id = $1 AND m.user_id = $2 AND m.read_seq < least($3::bigint, c.last_seq)"
        " RETURNING m.read_seq)"
        " SELECT EXISTS (SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = $2) AS member,"
        " (SELECT read_seq FROM moved) AS read_seq",
        conversation_id, user_id, seq,
    )
    if not row["member"]:
        raise ConversationNotFound()
    return None if row["read_seq"] is None else int(row["read_seq"])


# --------------------------------------------------------------------------------------------------------- reads


async def history(
    conn: Any, user_id: int, conversation_id: str, after: int | None, before: int | None, limit: int
) -> Page:
    joined = await conn.fetchval(
        "SELECT joined_seq FROM members WHERE conversation_id = $1 AND user_id = $2", conversation_id, user_id
    )
    if joined is None:
        raise ConversationNotFound()
    floor = max(int(joined), after or 0)
    if before is None and after is not None:
        rows = await conn.fetch(
            f"SELECT {_VISIBLE} FROM messages m WHERE m.conversation_id = $2 AND m.seq > $3 ORDER BY m.seq LIMIT $4",
            user_id, conversation_id, floor, limit + 1,
        )
        return Page([message_row(r) for r in rows[:limit]], len(rows) > limit)
    ceiling = before if before is not None else 2**62
    rows = await conn.fetch(
        f"SELECT {_VISIBLE} FROM messages m WHERE m.conversation_id = $2 AND m.seq > $3 AND m.seq < $4"
        " ORDER BY m.seq DESC LIMIT $5",
        user_id, conversation_id, floor, ceiling, limit + 1,
    )
    return Page([message_row(r) for r in reversed(rows[:limit])], len(rows) > limit)


# Conversations with messages after max(joined_seq, cursor), each read from there, ordered by (conversation, seq):
# one statement instead of one per conversation.
_SYNC: Final = (
    "WITH cursors AS (SELECT * FROM unnest($2::text[], $3::bigint[]) AS x(conversation_id, seq)),"
    " pending AS (SELECT m.conversation_id, greatest(m.joined_seq, coalesce(k.seq, 0)) AS start"
    " FROM members m JOIN conversations c ON c.conversation_id = m.conversation_id"
    " LEFT JOIN cursors k ON k.conversation_id = m.conversation_id"
    " WHERE m.user_id = $1 AND c.last_seq > greatest(m.joined_seq, coalesce(k.seq, 0)))"
    " SELECT v.* FROM pending p CROSS JOIN LATERAL"
    f" (SELECT {_VISIBLE} FROM messages m WHERE m.conversation_id = p.conversation_id AND m.seq > p.start"
    " ORDER BY m.seq LIMIT $4) v"
    " ORDER BY v.conversation_id, v.seq LIMIT $4"
)


async def sync(conn: Any, user_id: int, cursors: Mapping[str, int], limit: int) -> Page:
    rows = await conn.fetch(_SYNC, user_id, list(cursors), list(cursors.values()), limit + 1)
    return Page([message_row(r) for r in rows[:limit]], len(rows) > limit)


async def member_cursors(conn: Any, user_id: int, conversation_id: str) -> list[MemberRecord]:
    rows = await conn.fetch(
        "SELECT user_id, role, muted, joined_seq, delivered_seq, read_seq FROM members"
        " WHERE conversation_id = $1 ORDER BY user_id",
        conversation_id,
    )
    if not any(r[0] == user_id for r in rows):
        raise ConversationNotFound()
    return [MemberRecord(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


_CONVERSATIONS: Final = (
    "SELECT c.conversation_id, c.kind, c.last_seq, c.last_ts, me.delivered_seq, me.read_seq,"
    " coalesce(g.name, '') AS name, coalesce(g.group_id, 0) AS group_id, m.sender, m.client_msg_id, m.ts, m.body,"
    " EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = $1 AND h.conversation_id = m.conversation_id"
    " AND h.seq = m.seq) AS hidden"
    " FROM members me JOIN conversations c ON c.conversation_id = me.conversation_id"
    " LEFT JOIN groups g ON g.conversation_id = c.conversation_id"
    " LEFT JOIN messages m ON m.conversation_id = c.conversation_id AND m.seq = c.last_seq"
    " WHERE me.user_id = $1 AND c.kind <> 'self'"
    # Without before_id, nothing at before_ts itself qualifies.
    " AND ($2::bigint IS NULL OR c.last_ts < $2 OR (c.last_ts = $2 AND $3 <> '' AND c.conversation_id > $3))"
    " ORDER BY c.last_ts DESC, c.conversation_id LIMIT $4"
)
_PEERS: Final = (
    "SELECT p.conversation_id, m.delivered_seq, m.read_seq, u.username"
    " FROM unnest($1::text[], $2::bigint[]) AS p(conversation_id, user_id)"
    " LEFT JOIN members m ON m.conversation_id = p.conversation_id AND m.user_id = p.user_id"
    " LEFT JOIN users u ON u.user_id = p.user_id"
)


async def list_conversations(
    conn: Any, user_id: int, limit: int, before_ts: int | None, before_id: str = ""
) -> list[ConversationSummary]:
    rows = await conn.fetch(_CONVERSATIONS, user_id, before_ts, before_id, limit)
    peer_ids = {r["conversation_id"]: direct_peer(r["conversation_id"], user_id) or 0
                for r in rows if r["kind"] == "direct"}
    peers = {
        p["conversation_id"]: p
        for p in await conn.fetch(_PEERS, list(peer_ids), list(peer_ids.values()))
    } if peer_ids else {}
    result = []
    for r in rows:
        conversation_id = r["conversation_id"]
        name = r["name"]
        peer_id = peer_delivered = peer_read = 0
        if r["kind"] == "direct":
            peer_id = peer_ids[conversation_id]
            peer = peers.get(conversation_id)
            if peer is not None:
                peer_delivered, peer_read = peer["delivered_seq"] or 0, peer["read_seq"] or 0
                name = peer["username"] or ""
            else:
                name = ""
        last = None
        if r["sender"] is not None:
            last = message_row((conversation_id, r["last_seq"], r["sender"], r["client_msg_id"], r["ts"], r["body"],
                                r["hidden"]))
        result.append(
            ConversationSummary(
                conversation_id, r["kind"], r["last_seq"], r["last_ts"], r["delivered_seq"], r["read_seq"], name,
                peer_id, peer_delivered, peer_read, r["group_id"], last,
            )
        )
    return result


_SEARCH: Final = (
    f"SELECT {_MESSAGE} FROM messages m"
    " JOIN members mem ON mem.conversation_id = m.conversation_id AND mem.user_id = $1"
    " WHERE m.search @@ $2::text::tsquery AND m.seq > mem.joined_seq AND m.state <> 'recalled'"
    " AND ($3::text IS NULL OR m.conversation_id = $3)"
    " AND NOT EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = $1"
    " AND h.conversation_id = m.conversation_id AND h.seq = m.seq)"
    " ORDER BY m.ts DESC, m.seq DESC LIMIT $4"
)


async def search(conn: Any, user_id: int, query: str, conversation_id: str | None, limit: int) -> list[MessageRecord]:
    terms = fts.tsquery_literal(query)
    if terms is None:  # no word holds a token: nothing can match
        return []
    rows = await conn.fetch(_SEARCH, user_id, terms, conversation_id, limit)
    return [message_row(r) for r in rows]
