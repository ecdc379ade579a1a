"""SQL for contacts, blocks, per-user settings and who may see whose presence."""

from __future__ import annotations

import sqlite3

from pica.errors import BadRequest, Forbidden, NotFound, UserNotFound
from pica.store.base import ContactRecord, PresenceRecord

_PEERS = (
    # accepted contacts and 1:1 peers of ?1
    "SELECT peer_id AS uid FROM contacts WHERE user_id = ?1 AND state = 'accepted'"
    " UNION SELECT m2.user_id FROM members m1"
    " JOIN conversations c ON c.conversation_id = m1.conversation_id AND c.kind = 'direct'"
    " JOIN members m2 ON m2.conversation_id = m1.conversation_id AND m2.user_id != m1.user_id"
    " WHERE m1.user_id = ?1"
)


def _require_user(conn: sqlite3.Connection, user_id: int) -> None:
    if conn.execute("SELECT 1 FROM users WHERE user_id = ?", (user_id,)).fetchone() is None:
        raise UserNotFound(f"user {user_id} does not exist")


def _state(conn: sqlite3.Connection, user_id: int, peer_id: int) -> str:
    row = conn.execute("SELECT state FROM contacts WHERE user_id = ? AND peer_id = ?", (user_id, peer_id)).fetchone()
    return "none" if row is None else str(row[0])


def _set_pair(conn: sqlite3.Connection, user_id: int, peer_id: int, mine: str, theirs: str, ts: int) -> None:
    conn.executemany(
        "INSERT INTO contacts (user_id, peer_id, state, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (user_id, peer_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
        [(user_id, peer_id, mine, ts), (peer_id, user_id, theirs, ts)],
    )


def _drop_pair(conn: sqlite3.Connection, user_id: int, peer_id: int) -> None:
    conn.execute(
        "DELETE FROM contacts WHERE (user_id = ? AND peer_id = ?) OR (user_id = ? AND peer_id = ?)",
        (user_id, peer_id, peer_id, user_id),
    )


def contact_request(conn: sqlite3.Connection, user_id: int, peer_id: int, ts: int) -> str:
    if user_id == peer_id:
        raise BadRequest("you cannot befriend yourself")
    _require_user(conn, peer_id)
    if conn.execute("SELECT 1 FROM blocks WHERE user_id = ? AND blocked_id = ?", (peer_id, user_id)).fetchone():
        raise Forbidden("this user does not accept requests from you")
    state = _state(conn, user_id, peer_id)
    if state in ("accepted", "outgoing"):
        return state
    if state == "incoming":  # they asked first: asking back accepts
        _set_pair(conn, user_id, peer_id, "accepted", "accepted", ts)
        return "accepted"
    _set_pair(conn, user_id, peer_id, "outgoing", "incoming", ts)
    return "outgoing"


def contact_respond(conn: sqlite3.Connection, user_id: int, peer_id: int, accept: bool, ts: int) -> str:
    if _state(conn, user_id, peer_id) != "incoming":
        raise NotFound("no pending request from this user")
    if accept:
        _set_pair(conn, user_id, peer_id, "accepted", "accepted", ts)
        return "accepted"
    _drop_pair(conn, user_id, peer_id)
    return "none"


def contact_remove(conn: sqlite3.Connection, user_id: int, peer_id: int) -> None:
    _drop_pair(conn, user_id, peer_id)


def list_contacts(conn: sqlite3.Connection, user_id: int) -> list[ContactRecord]:
    rows = conn.execute(
        "SELECT c.peer_id, u.username, c.state, c.updated_at FROM contacts c JOIN users u ON u.user_id = c.peer_id"
        " WHERE c.user_id = ? ORDER BY u.username",
        (user_id,),
    ).fetchall()
    return [ContactRecord(*r) for r in rows]


def set_blocked(conn: sqlite3.Connection, user_id: int, peer_id: int, blocked: bool, ts: int) -> None:
    if user_id == peer_id:
        raise BadRequest("you cannot block yourself")
    _require_user(conn, peer_id)
    if blocked:
        conn.execute("INSERT OR IGNORE INTO blocks (user_id, blocked_id, created_at) VALUES (?, ?, ?)",
                     (user_id, peer_id, ts))
        _drop_pair(conn, user_id, peer_id)
    else:
        conn.execute("DELETE FROM blocks WHERE user_id = ? AND blocked_id = ?", (user_id, peer_id))


def list_blocked(conn: sqlite3.Connection, user_id: int) -> list[int]:
    return [r[0] for r in conn.execute(
        "SELECT blocked_id FROM blocks WHERE user_id = ? ORDER BY blocked_id", (user_id,))]


def set_only_contacts(conn: sqlite3.Connection, user_id: int, only_contacts: bool) -> None:
    conn.execute("UPDATE users SET only_contacts = ? WHERE user_id = ?", (int(only_contacts), user_id))


def get_only_contacts(conn: sqlite3.Connection, user_id: int) -> bool:
    row = conn.execute("SELECT only_contacts FROM users WHERE user_id = ?", (user_id,)).fetchone()
    return bool(row and row[0])


def presence_audience(conn: sqlite3.Connection, user_id: int) -> list[int]:
    """Who may see ``user_id``: their contacts and 1:1 peers, except those they blocked."""
    return [r[0] for r in conn.execute(
        f"SELECT uid FROM ({_PEERS}) WHERE uid NOT IN (SELECT blocked_id FROM blocks WHERE user_id = ?1)"
        " ORDER BY uid",
        (user_id,),
    )]


def presence_of(conn: sqlite3.Connection, viewer: int, user_ids: list[int]) -> list[PresenceRecord]:
    """Relations are symmetric, so the users the viewer may see are the viewer's peers who did not block them."""
    visible = {r[0] for r in conn.execute(
        f"SELECT uid FROM ({_PEERS}) WHERE uid NOT IN (SELECT user_id FROM blocks WHERE blocked_id = ?1)",
        (viewer,),
    )}
    visible.add(viewer)
    wanted = [u for u in dict.fromkeys(user_ids) if u in visible]
    result = []
    for user_id in wanted:
        row = conn.execute("SELECT last_seen FROM users WHERE user_id = ?", (user_id,)).fetchone()
        if row is not None:
            result.append(PresenceRecord(user_id, int(row[0])))
    return result


def set_last_seen(conn: sqlite3.Connection, user_id: int, ts: int) -> None:
    conn.execute("UPDATE users SET last_seen = ? WHERE user_id = ?", (ts, user_id))
