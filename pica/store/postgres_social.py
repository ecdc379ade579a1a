"""SQL for accounts, administration, contacts, blocks, per-user settings and presence on PostgreSQL; the rules are
those of :mod:`pica.store.sqlite_social` and :mod:`pica.store.sqlite_admin`."""

from __future__ import annotations

from typing import Any, Final

from pica.errors import BadRequest, Forbidden, NotFound, UserNotFound
from pica.store.base import ContactRecord, PresenceRecord, UserRecord

USER_COLUMNS: Final = "user_id, username, password_hash, created_at, banned"

# Accepted contacts and 1:1 peers of $1.
_PEERS: Final = (
    "SELECT peer_id AS uid FROM contacts WHERE user_id = $1 AND state = 'accepted'"
    " UNION SELECT m2.user_id FROM members m1"
    " JOIN conversations c ON c.conversation_id = m1.conversation_id AND c.kind = 'direct'"
    " JOIN members m2 ON m2.conversation_id = m1.conversation_id AND m2.user_id <> m1.user_id"
    " WHERE m1.user_id = $1"
)


def user_row(row: Any) -> UserRecord:
    return UserRecord(int(row[0]), str(row[1]), str(row[2]), int(row[3]), bool(row[4]))


# ------------------------------------------------------------------------------------------------ accounts, admin


_USER_BY_NAME: Final = f"SELECT {USER_COLUMNS} FROM users WHERE username = $1"
_USER_BY_ID: Final = f"SELECT {USER_COLUMNS} FROM users WHERE user_id = $1"


async def get_user_by_name(conn: Any, username: str) -> UserRecord | None:
    row = await conn.fetchrow(_USER_BY_NAME, username)
    return None if row is None else user_row(row)


async def get_user(conn: Any, user_id: int) -> UserRecord | None:
    row = await conn.fetchrow(_USER_BY_ID, user_id)
    return None if row is None else user_row(row)


async def list_users(conn: Any, limit: int, after_id: int, banned_only: bool) -> list[UserRecord]:
    # "AND banned" so that the banned-only listing uses the partial index users_banned.
    where = "user_id > $1 AND banned" if banned_only else "user_id > $1"
    rows = await conn.fetch(f"SELECT {USER_COLUMNS} FROM users WHERE {where} ORDER BY user_id LIMIT $2",
                            after_id, limit)
    return [user_row(row) for row in rows]


async def set_banned(conn: Any, user_id: int, banned: bool) -> None:
    status = await conn.execute("UPDATE users SET banned = $1 WHERE user_id = $2", banned, user_id)
    if status == "UPDATE 0":
        raise UserNotFound(f"user {user_id} does not exist")


# ------------------------------------------------------------------------------------------------ contacts, blocks


async def _require_user(conn: Any, user_id: int) -> None:
    if await conn.fetchval("SELECT 1 FROM users WHERE user_id = $1", user_id) is None:
        raise UserNotFound(f"user {user_id} does not exist")


async def _state(conn: Any, user_id: int, peer_id: int) -> str:
    state = await conn.fetchval("SELECT state FROM contacts WHERE user_id = $1 AND peer_id = $2", user_id, peer_id)
    return "none" if state is None else str(state)


async def _set_pair(conn: Any, user_id: int, peer_id: int, mine: str, theirs: str, ts: int) -> None:
    await conn.execute(
        "INSERT INTO contacts (user_id, peer_id, state, updated_at) VALUES ($1, $2, $3, $5), ($2, $1, $4, $5)"
        " ON CONFLICT (user_id, peer_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
        user_id, peer_id, mine, theirs, ts,
    )


async def _drop_pair(conn: Any, user_id: int, peer_id: int) -> None:
    await conn.execute(
        "DELETE FROM contacts WHERE (user_id = $1 AND peer_id = $2) OR (user_id = $2 AND peer_id = $1)",
        user_id, peer_id,
    )


async def _lock_pair(conn: Any, user_id: int, peer_id: int) -> None:
    """Serialize changes to one pair's relation (two nodes answering a request at once): a transaction-scoped
    advisory lock on the unordered pair, since the rows may not exist yet."""
    low, high = min(user_id, peer_id), max(user_id, peer_id)
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('pica:contact:' || $1 || ':' || $2, 0))",
                       str(low), str(high))


async def contact_request(conn: Any, user_id: int, peer_id: int, ts: int) -> str:
    if user_id == peer_id:
        raise BadRequest("you cannot befriend yourself")
    await _require_user(conn, peer_id)
    if await conn.fetchval("SELECT 1 FROM blocks WHERE user_id = $1 AND blocked_id = $2", peer_id, user_id):
        raise Forbidden("this user does not accept requests from you")
    await _lock_pair(conn, user_id, peer_id)
    state = await _state(conn, user_id, peer_id)
    if state in ("accepted", "outgoing"):
        return state
    if state == "incoming":  # they asked first: asking back accepts
        await _set_pair(conn, user_id, peer_id, "accepted", "accepted", ts)
        return "accepted"
    await _set_pair(conn, user_id, peer_id, "outgoing", "incoming", ts)
    return "outgoing"


async def contact_respond(conn: Any, user_id: int, peer_id: int, accept: bool, ts: int) -> str:
    await _lock_pair(conn, user_id, peer_id)
    if await _state(conn, user_id, peer_id) != "incoming":
        raise NotFound("no pending request from this user")
    if accept:
        await _set_pair(conn, user_id, peer_id, "accepted", "accepted", ts)
        return "accepted"
    await _drop_pair(conn, user_id, peer_id)
    return "none"


async def contact_remove(conn: Any, user_id: int, peer_id: int) -> None:
    await _drop_pair(conn, user_id, peer_id)


async def list_contacts(conn: Any, user_id: int) -> list[ContactRecord]:
    rows = await conn.fetch(
        "SELECT c.peer_id, u.username, c.state, c.updated_at FROM contacts c JOIN users u ON u.user_id = c.peer_id"
        " WHERE c.user_id = $1 ORDER BY u.username",
        user_id,
    )
    return [ContactRecord(r[0], r[1], r[2], r[3]) for r in rows]


async def set_blocked(conn: Any, user_id: int, peer_id: int, blocked: bool, ts: int) -> None:
    if user_id == peer_id:
        raise BadRequest("you cannot block yourself")
    await _require_user(conn, peer_id)
    if blocked:
        await _lock_pair(conn, user_id, peer_id)
        await conn.execute(
            "INSERT INTO blocks (user_id, blocked_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            user_id, peer_id, ts,
        )
        await _drop_pair(conn, user_id, peer_id)
    else:
        await conn.execute("DELETE FROM blocks WHERE user_id = $1 AND blocked_id = $2", user_id, peer_id)


async def list_blocked(conn: Any, user_id: int) -> list[int]:
    rows = await conn.fetch("SELECT blocked_id FROM blocks WHERE user_id = $1 ORDER BY blocked_id", user_id)
    return [int(r[0]) for r in rows]


async def set_only_contacts(conn: Any, user_id: int, only_contacts: bool) -> None:
    await conn.execute("UPDATE users SET only_contacts = $1 WHERE user_id = $2", only_contacts, user_id)


async def get_only_contacts(conn: Any, user_id: int) -> bool:
    return bool(await conn.fetchval("SELECT only_contacts FROM users WHERE user_id = $1", user_id))


# ------------------------------------------------------------------------------------------------ presence


async def presence_audience(conn: Any, user_id: int) -> list[int]:
    """Who may see ``user_id``: their contacts and 1:1 peers, except those they blocked."""
    rows = await conn.fetch(
        f"SELECT uid FROM ({_PEERS}) p WHERE uid NOT IN (SELECT blocked_id FROM blocks WHERE user_id = $1)"
        " ORDER BY uid",
        user_id,
    )
    return [int(r[0]) for r in rows]


async def presence_of(conn: Any, viewer: int, user_ids: list[int]) -> list[PresenceRecord]:
    """Relations are symmetric, so the users the viewer may see are the viewer's peers who did not block them."""
    visible = {int(r[0]) for r in await conn.fetch(
        f"SELECT uid FROM ({_PEERS}) p WHERE uid NOT IN (SELECT user_id FROM blocks WHERE blocked_id = $1)",
        viewer,
    )}
    visible.add(viewer)
    wanted = [u for u in dict.fromkeys(user_ids) if u in visible]
    if not wanted:
        return []
    seen = {int(r[0]): int(r[1]) for r in await conn.fetch(
        "SELECT user_id, last_seen FROM users WHERE user_id = ANY($1::bigint[])", wanted
    )}
    return [PresenceRecord(u, seen[u]) for u in wanted if u in seen]


async def set_last_seen(conn: Any, user_id: int, ts: int) -> None:
    await conn.execute("UPDATE users SET last_seen = $1 WHERE user_id = $2", ts, user_id)
