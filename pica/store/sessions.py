"""Signed-in sessions: one row per login, the family of its refresh tokens (RFC 6819 5.2.2.3, OAuth 2.1 rotation).

A refresh token names its session and a *generation*; each refresh moves the session to the next generation, so
only the newest token works. An older one coming back means two parties hold the family (a thief and the owner,
in some order): the session is revoked, and the access tokens naming it are refused from then on. Transactions
written once for both dialects (see :mod:`pica.store.txn`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from pica.errors import UserNotFound
from pica.store.base import Refreshed, RefreshOutcome, RevokedSession, SessionRecord, SessionState
from pica.store.txn import Dialect, Read, Statement, Txn, Write


def refresh_decision(current: int, rotated_at: int, expires_at: int, revoked: bool, banned: bool,
                     presented: int, now_ms: int, grace_ms: int) -> RefreshOutcome | None:
    """What a refresh token of generation ``presented`` gets from its session; None: rotate. The generation just
    before the current one is accepted again within ``grace_ms`` of the rotation, for a client whose refresh
    answer was lost on the way (a retry must not log the user out); anything older is a reuse."""
    if revoked:
        return "revoked"
    if banned:
        return "banned"
    if expires_at <= now_ms:
        return "expired"
    if presented == current or (presented == current - 1 and now_ms - rotated_at < grace_ms):
        return None
    if presented < current:
        return "reused"
    return "unknown"  # a generation never issued: only a forged token could name it, and the MAC refused those


def _session_row(row: Sequence[Any]) -> SessionRecord:
    return SessionRecord(str(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]), str(row[5]), str(row[6]))


def create_sessions(sessions: Sequence[SessionRecord], max_live: int, forget_before: int) -> Txn[None]:
    """New sessions (one login's, or a bulk seed's); each statement runs once for all of them."""
    n = len(sessions)
    users = [s.user_id for s in sessions]
    yield Write("forget_user_sessions", (users, [forget_before] * n))
    yield Write("insert_session", ([s.session_id for s in sessions], users, [s.created_at for s in sessions],
                                   [s.expires_at for s in sessions], [s.address for s in sessions],
                                   [s.user_agent for s in sessions]))
    yield Write("revoke_beyond", (users, [max_live] * n, [s.created_at for s in sessions]))


def session_states(session_ids: Sequence[str]) -> Txn[dict[str, SessionState]]:
    """The state of each of these sessions that exists, in one read (a burst of connects asks for many at once)."""
    rows = yield Read("session_states", (list(session_ids),))
    return {str(session_id): SessionState(int(user_id), int(expires_at), revoked_at is not None, bool(banned))
            for session_id, user_id, expires_at, revoked_at, banned in rows}


def refresh_session(session_id: str, generation: int, now_ms: int, ttl_ms: int, grace_ms: int) -> Txn[Refreshed]:
    rows = yield Read("session_for_refresh", (session_id,))
    if not rows:
        return Refreshed("unknown")
    user_id, current, rotated_at, expires_at, revoked_at, banned = rows[0]
    user_id, current = int(user_id), int(current)
    refused = refresh_decision(current, int(rotated_at), int(expires_at), revoked_at is not None, bool(banned),
                               generation, now_ms, grace_ms)
    if refused == "reused":
        yield Write("revoke_session", ([session_id], [now_ms], ["refresh_reuse"]))
    if refused is not None:
        return Refreshed(refused, user_id)
    yield Write("rotate_session", ([session_id], [current + 1], [now_ms], [now_ms + ttl_ms]))
    return Refreshed("rotated", user_id, current + 1, now_ms + ttl_ms)


def list_sessions(user_id: int, now_ms: int) -> Txn[list[SessionRecord]]:
    rows = yield Read("list_sessions", (user_id, now_ms))
    return [_session_row(row) for row in rows]


def revoke_session(user_id: int, session_id: str, now_ms: int, reason: str) -> Txn[bool]:
    changed = yield Write("revoke_own_session", ([session_id], [user_id], [now_ms], [reason]))
    return bool(changed)


def revoke_user_sessions(user_id: int, now_ms: int, reason: str, keep: str | None) -> Txn[int]:
    changed: int = yield Write("revoke_user_sessions", ([user_id], [keep or ""], [now_ms], [reason]))
    return changed


def set_password(user_id: int, password_hash: str, now_ms: int, keep: str | None) -> Txn[int]:
    changed = yield Write("set_password", ([user_id], [password_hash]))
    if changed == 0:  # no such user: nothing was written
        raise UserNotFound(f"user {user_id} does not exist")
    return (yield from revoke_user_sessions(user_id, now_ms, "password_changed", keep))


def revoked_sessions(since_ms: int) -> Txn[list[RevokedSession]]:
    rows = yield Read("revoked_since", (since_ms,))
    return [RevokedSession(str(r[0]), int(r[1]), int(r[2]), str(r[3] or "")) for r in rows]


def forget_sessions(before_ms: int) -> Txn[int]:
    revoked = yield Write("forget_revoked_sessions", ([before_ms],))
    expired = yield Write("forget_expired_sessions", ([before_ms],))
    return int(revoked) + int(expired)


# --------------------------------------------------------------------------------------------------------- SQL

_LISTED: Final = "session_id, user_id, created_at, last_used_at, expires_at, address, user_agent"

SQLITE: Final[Dialect] = {
    "forget_user_sessions": Statement(
        "DELETE FROM sessions WHERE user_id = ?1 AND (revoked_at < ?2 OR expires_at < ?2)"
    ),
    "insert_session": Statement(
        "INSERT INTO sessions (session_id, user_id, generation, rotated_at, created_at, last_used_at, expires_at,"
        " address, user_agent) VALUES (?1, ?2, 0, ?3, ?3, ?3, ?4, ?5, ?6)"
    ),
    "revoke_beyond": Statement(
        "UPDATE sessions SET revoked_at = ?3, revoked_reason = 'too_many_sessions' WHERE session_id IN ("
        " SELECT session_id FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL"
        " ORDER BY last_used_at DESC LIMIT -1 OFFSET ?2)"
    ),
    "session_states": Statement(
        "SELECT s.session_id, s.user_id, s.expires_at, s.revoked_at, u.banned FROM sessions s"
        " JOIN users u USING (user_id) WHERE s.session_id IN (SELECT value FROM json_each(?1))"
    ),
    "session_for_refresh": Statement(
        "SELECT s.user_id, s.generation, s.rotated_at, s.expires_at, s.revoked_at, u.banned"
        " FROM sessions s JOIN users u USING (user_id) WHERE s.session_id = ?1"
    ),
    "rotate_session": Statement(
        "UPDATE sessions SET generation = ?2, rotated_at = ?3, last_used_at = ?3, expires_at = ?4"
        " WHERE session_id = ?1"
    ),
    "revoke_session": Statement(
        "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3 WHERE session_id = ?1 AND revoked_at IS NULL"
    ),
    "revoke_own_session": Statement(
        "UPDATE sessions SET revoked_at = ?3, revoked_reason = ?4"
        " WHERE session_id = ?1 AND user_id = ?2 AND revoked_at IS NULL"
    ),
    "revoke_user_sessions": Statement(
        "UPDATE sessions SET revoked_at = ?3, revoked_reason = ?4"
        " WHERE user_id = ?1 AND session_id != ?2 AND revoked_at IS NULL"
    ),
    "list_sessions": Statement(
        f"SELECT {_LISTED} FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2"
        " ORDER BY last_used_at DESC"
    ),
    "set_password": Statement("UPDATE users SET password_hash = ?2 WHERE user_id = ?1"),
    "revoked_since": Statement(
        "SELECT session_id, user_id, revoked_at, revoked_reason FROM sessions WHERE revoked_at >= ?1"
        " ORDER BY revoked_at"
    ),
    "forget_revoked_sessions": Statement("DELETE FROM sessions WHERE revoked_at < ?1"),
    "forget_expired_sessions": Statement("DELETE FROM sessions WHERE expires_at < ?1"),
}

POSTGRES: Final[Dialect] = {
    "forget_user_sessions": Statement(
        "DELETE FROM sessions s USING unnest($1::bigint[], $2::bigint[]) AS k(user_id, before)"
        " WHERE s.user_id = k.user_id AND (s.revoked_at < k.before OR s.expires_at < k.before)"
    ),
    "insert_session": Statement(
        "INSERT INTO sessions (session_id, user_id, generation, rotated_at, created_at, last_used_at, expires_at,"
        " address, user_agent)"
        " SELECT k.sid, k.uid, 0, k.now, k.now, k.now, k.exp, k.address, k.agent"
        " FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[])"
        " AS k(sid, uid, now, exp, address, agent)"
    ),
    # A LATERAL join, not "session_id IN (a subquery on k)": the planner ran that correlated subquery once for
    # every row of the table (a sequential scan per login: 140 ms at 50,000 sessions); this reads the user's
    # sessions by index and the ones to revoke by key.
    "revoke_beyond": Statement(
        "UPDATE sessions s SET revoked_at = k.now, revoked_reason = 'too_many_sessions'"
        " FROM unnest($1::bigint[], $2::int[], $3::bigint[]) AS k(user_id, keep, now)"
        " CROSS JOIN LATERAL (SELECT o.session_id FROM sessions o WHERE o.user_id = k.user_id"
        " AND o.revoked_at IS NULL ORDER BY o.last_used_at DESC OFFSET k.keep) AS x"
        " WHERE s.session_id = x.session_id"
    ),
    "session_states": Statement(
        "SELECT s.session_id, s.user_id, s.expires_at, s.revoked_at, u.banned FROM sessions s"
        " JOIN users u USING (user_id) WHERE s.session_id = ANY($1::text[])"
    ),
    # FOR UPDATE: two nodes refreshing one session at once are serialised; the second sees the new generation.
    "session_for_refresh": Statement(
        "SELECT s.user_id, s.generation, s.rotated_at, s.expires_at, s.revoked_at, u.banned"
        " FROM sessions s JOIN users u USING (user_id) WHERE s.session_id = $1 FOR UPDATE OF s"
    ),
    "rotate_session": Statement(
        "UPDATE sessions s SET generation = k.gen, rotated_at = k.now, last_used_at = k.now, expires_at = k.exp"
        " FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[]) AS k(sid, gen, now, exp)"
        " WHERE s.session_id = k.sid"
    ),
    "revoke_session": Statement(
        "UPDATE sessions s SET revoked_at = k.now, revoked_reason = k.reason"
        " FROM unnest($1::text[], $2::bigint[], $3::text[]) AS k(sid, now, reason)"
        " WHERE s.session_id = k.sid AND s.revoked_at IS NULL"
    ),
    "revoke_own_session": Statement(
        "UPDATE sessions s SET revoked_at = k.now, revoked_reason = k.reason"
        " FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[]) AS k(sid, uid, now, reason)"
        " WHERE s.session_id = k.sid AND s.user_id = k.uid AND s.revoked_at IS NULL"
    ),
    "revoke_user_sessions": Statement(
        "UPDATE sessions s SET revoked_at = k.now, revoked_reason = k.reason"
        " FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[]) AS k(uid, keep, now, reason)"
        " WHERE s.user_id = k.uid AND s.session_id != k.keep AND s.revoked_at IS NULL"
    ),
    "list_sessions": Statement(
        f"SELECT {_LISTED} FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2"
        " ORDER BY last_used_at DESC"
    ),
    "set_password": Statement(
        "UPDATE users u SET password_hash = k.hash FROM unnest($1::bigint[], $2::text[]) AS k(uid, hash)"
        " WHERE u.user_id = k.uid"
    ),
    "revoked_since": Statement(
        "SELECT session_id, user_id, revoked_at, revoked_reason FROM sessions WHERE revoked_at >= $1"
        " ORDER BY revoked_at"
    ),
    "forget_revoked_sessions": Statement(
        "DELETE FROM sessions s USING unnest($1::bigint[]) AS k(before) WHERE s.revoked_at < k.before"
    ),
    "forget_expired_sessions": Statement(
        "DELETE FROM sessions s USING unnest($1::bigint[]) AS k(before) WHERE s.expires_at < k.before"
    ),
}
