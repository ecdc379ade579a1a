"""Accounts, administration of users, contacts, blocks, settings and presence: transactions written once for both
dialects (see :mod:`pica.store.txn`), each statement's text for SQLite and PostgreSQL side by side.

Locking: changes to one pair's relation (a request, an answer, a block) take ``lock_pair`` before reading the pair's
state. On PostgreSQL that is a transaction-scoped advisory lock on the unordered pair (the contact rows may not exist
yet), so two nodes answering requests between the same two people apply one after the other; SQLite's single writer
holds the database lock already.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from pica.errors import BadRequest, Forbidden, NotFound, UsernameTaken, UserNotFound
from pica.store.base import (
    PRIVACY_LEVELS,
    ContactRecord,
    PresenceAudience,
    PresenceRecord,
    UserRecord,
    UserSettings,
    Viewer,
)
from pica.store.txn import Dialect, Read, Statement, Txn, Write


def user_row(row: Sequence[Any]) -> UserRecord:
    """A user from (user_id, username, password_hash, created_at, banned, deleted_at). A deleted account reads with
    no username: its row keeps a placeholder only because the column is unique and required."""
    deleted = bool(row[5])
    return UserRecord(int(row[0]), "" if deleted else str(row[1]), str(row[2]), int(row[3]), bool(row[4]), deleted)


# --------------------------------------------------------------------------------------------------------- accounts


def create_user(username: str, password_hash: str, now_ms: int) -> Txn[int]:
    """A new account's id; a taken username (compared byte for byte) is refused. The insert answers rows (its
    RETURNING), so it is a read step: none when the name was taken, and then nothing was written."""
    rows = yield Read("insert_user", (username, password_hash, now_ms))
    if not rows:
        raise UsernameTaken(f"username {username!r} is taken")
    return int(rows[0][0])


def create_users(usernames: Sequence[str], password_hash: str, now_ms: int) -> Txn[list[int | None]]:
    """Many accounts sharing one password hash, in one transaction (a bulk import, a benchmark's seed): each new
    account's id, in order, or None for a name already taken (nothing is written for it, and the rest go on, so that
    the batch needs no rollback)."""
    ids: list[int | None] = []
    for username in usernames:
        rows = yield Read("insert_user", (username, password_hash, now_ms))
        ids.append(int(rows[0][0]) if rows else None)
    return ids


def get_user_by_name(username: str) -> Txn[UserRecord | None]:
    rows = yield Read("user_by_name", (username,))
    return user_row(rows[0]) if rows else None


def get_user(user_id: int) -> Txn[UserRecord | None]:
    rows = yield Read("user_by_id", (user_id,))
    return user_row(rows[0]) if rows else None


def list_users(limit: int, after_id: int, banned_only: bool) -> Txn[list[UserRecord]]:
    rows = yield Read("list_banned_users" if banned_only else "list_users", (after_id, limit))
    return [user_row(row) for row in rows]


def set_banned(user_id: int, banned: bool) -> Txn[None]:
    changed = yield Write("set_banned", ([user_id], [banned]))
    if changed == 0:  # no such user: nothing was written
        raise UserNotFound(f"user {user_id} does not exist")


# --------------------------------------------------------------------------------------------------------- contacts


def _peer(peer_id: int, user_id: int) -> Txn[bool]:
    """Whether ``peer_id`` blocked ``user_id``; UserNotFound when there is no such peer."""
    rows = yield Read("peer_blocks", (peer_id, user_id))
    if not rows:
        raise UserNotFound(f"user {peer_id} does not exist")
    return bool(rows[0][0])


def _lock_pair(user_id: int, peer_id: int) -> Txn[None]:
    yield Read("lock_pair", (min(user_id, peer_id), max(user_id, peer_id)))


def _state(user_id: int, peer_id: int) -> Txn[str]:
    rows = yield Read("contact_state", (user_id, peer_id))
    return str(rows[0][0]) if rows else "none"


def _set_pair(user_id: int, peer_id: int, mine: str, theirs: str, ts: int) -> Write:
    return Write("set_contacts", ([user_id, peer_id], [peer_id, user_id], [mine, theirs], [ts, ts]))


def _drop_pair(user_id: int, peer_id: int) -> Write:
    return Write("drop_contacts", ([user_id, peer_id], [peer_id, user_id]))


def contact_request(user_id: int, peer_id: int, ts: int) -> Txn[str]:
    if user_id == peer_id:
        raise BadRequest("you cannot befriend yourself")
    if (yield from _peer(peer_id, user_id)):
        raise Forbidden("this user does not accept requests from you")
    yield from _lock_pair(user_id, peer_id)
    state = yield from _state(user_id, peer_id)
    if state in ("accepted", "outgoing"):
        return state
    if state == "incoming":  # they asked first: asking back accepts
        yield _set_pair(user_id, peer_id, "accepted", "accepted", ts)
        return "accepted"
    yield _set_pair(user_id, peer_id, "outgoing", "incoming", ts)
    return "outgoing"


def contact_respond(user_id: int, peer_id: int, accept: bool, ts: int) -> Txn[str]:
    yield from _lock_pair(user_id, peer_id)
    if (yield from _state(user_id, peer_id)) != "incoming":
        raise NotFound("no pending request from this user")
    if accept:
        yield _set_pair(user_id, peer_id, "accepted", "accepted", ts)
        return "accepted"
    yield _drop_pair(user_id, peer_id)
    return "none"


def contact_remove(user_id: int, peer_id: int) -> Txn[None]:
    yield _drop_pair(user_id, peer_id)


def list_contacts(user_id: int) -> Txn[list[ContactRecord]]:
    rows = yield Read("list_contacts", (user_id,))
    return [ContactRecord(int(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]


# --------------------------------------------------------------------------------------------------------- blocks


def set_blocked(user_id: int, peer_id: int, blocked: bool, ts: int) -> Txn[None]:
    if user_id == peer_id:
        raise BadRequest("you cannot block yourself")
    yield from _peer(peer_id, user_id)
    if blocked:
        yield from _lock_pair(user_id, peer_id)
        yield Write("insert_block", ([user_id], [peer_id], [ts]))
        yield _drop_pair(user_id, peer_id)
    else:
        yield Write("delete_block", ([user_id], [peer_id]))


def list_blocked(user_id: int) -> Txn[list[int]]:
    rows = yield Read("list_blocked", (user_id,))
    return [int(r[0]) for r in rows]


# --------------------------------------------------------------------------------------------------------- settings


def set_only_contacts(user_id: int, only_contacts: bool) -> Txn[None]:
    yield Write("set_only_contacts", ([user_id], [only_contacts]))


def get_only_contacts(user_id: int) -> Txn[bool]:
    return (yield from get_settings(user_id)).only_contacts


def get_settings(user_id: int) -> Txn[UserSettings]:
    rows = yield Read("user_settings", (user_id,))
    return UserSettings(bool(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else UserSettings()


def set_privacy(user_id: int, group_add: str | None, presence: str | None) -> Txn[None]:
    for name, value in (("group_add", group_add), ("presence", presence)):
        if value is not None and value not in PRIVACY_LEVELS:
            raise BadRequest(f"'{name}' must be one of {', '.join(PRIVACY_LEVELS)}")
    if group_add is not None:
        yield Write("set_group_add", ([user_id], [group_add]))
    if presence is not None:
        yield Write("set_presence", ([user_id], [presence]))


# --------------------------------------------------------------------------------------------------------- presence


def presence_audience(user_id: int) -> Txn[PresenceAudience]:
    """Who is related to ``user_id``: their contacts and 1:1 peers, except those they blocked; and their setting.
    Two reads: the backend runs this in one snapshot."""
    rows = yield Read("presence_audience", (user_id,))
    settings = yield from get_settings(user_id)
    return PresenceAudience(settings.presence, tuple(Viewer(int(r[0]), bool(r[1])) for r in rows))


def presence_audiences(user_ids: Sequence[int]) -> Txn[dict[int, PresenceAudience]]:
    """:func:`presence_audience` of each of these users (every one a key, in first-asked order), in two set-based
    reads whatever their number: the viewers of them all, then the settings of them all. The announcements of a
    burst of connects by distinct users share it; two statements per user cost twice the CPU per user on SQLite.

    The viewers' statement neither sorts nor groups (a viewer who is both a contact and a 1:1 peer comes twice):
    its rows stream, so a reader can stop after a bound (:meth:`pica.store.sqlite.SqliteStore.presence_audiences`
    does on the event loop), and merging a few rows per user here cost less than SQLite's sort of them all."""
    wanted = list(dict.fromkeys(user_ids))
    if not wanted:
        return {}
    found: dict[int, dict[int, bool]] = {}
    for owner, uid, contact in (yield Read("presence_audiences", (wanted,))):
        seen = found.get(owner)
        if seen is None:
            found[owner] = seen = {}
        seen[uid] = bool(contact) or seen.get(uid, False)
    settings = {int(r[0]): str(r[1]) for r in (yield Read("presence_settings", (wanted,)))}
    default = UserSettings().presence  # an unknown user reads as one with the default settings, as get_settings
    return {u: PresenceAudience(settings.get(u, default),
                                tuple(Viewer(int(v), c) for v, c in sorted(found[u].items())) if u in found else ())
            for u in wanted}


def presence_of(viewer: int, user_ids: list[int]) -> Txn[list[PresenceRecord]]:
    """Relations are symmetric, so the users related to the viewer are the viewer's peers who did not block them.
    Two reads: the backend runs this in one snapshot."""
    related = {int(r[0]): bool(r[1]) for r in (yield Read("presence_visible", (viewer,)))}
    related[viewer] = False
    wanted = [u for u in dict.fromkeys(user_ids) if u in related]
    if not wanted:
        return []
    seen = {int(r[0]): (int(r[1]), str(r[2])) for r in (yield Read("last_seen", (wanted,)))}
    return [PresenceRecord(u, seen[u][0], seen[u][1], related[u]) for u in wanted if u in seen]


def set_last_seen(seen: Mapping[int, int]) -> Txn[None]:
    yield Write("set_last_seen", (list(seen), list(seen.values())))


# --------------------------------------------------------------------------------------------------------- SQL
# Usernames compare byte for byte in both: SQLite's default BINARY collation, PostgreSQL's column COLLATE "C" (which
# also orders contact lists by bytes). Booleans are 0/1 on SQLite, bool on PostgreSQL: the transactions take bool().

_USER_COLUMNS: Final = "user_id, username, password_hash, created_at, banned, deleted_at"

# Whether the user ?1 and uid are accepted contacts (contact rows come in pairs, so one direction is enough).
_SQLITE_IS_CONTACT: Final = (
    "EXISTS (SELECT 1 FROM contacts k WHERE k.user_id = ?1 AND k.peer_id = uid AND k.state = 'accepted')"
)
_POSTGRES_IS_CONTACT: Final = _SQLITE_IS_CONTACT.replace("?1", "$1")

# Accepted contacts and 1:1 peers of the first parameter.
_SQLITE_PEERS: Final = (
    "SELECT peer_id AS uid FROM contacts WHERE user_id = ?1 AND state = 'accepted'"
    " UNION SELECT m2.user_id FROM members m1"
    " JOIN conversations c ON c.conversation_id = m1.conversation_id AND c.kind = 'direct'"
    " JOIN members m2 ON m2.conversation_id = m1.conversation_id AND m2.user_id != m1.user_id"
    " WHERE m1.user_id = ?1"
)
_POSTGRES_PEERS: Final = _SQLITE_PEERS.replace("?1", "$1")

# The viewers of presence_audience for a whole set of users ({users}: a condition on a user id column), as (owner,
# viewer, contact), unsorted, a viewer who is both a contact and a 1:1 peer twice. Each user's peers come from the
# indexes keyed by user (contacts' primary key, members_by_user) and each block is one primary-key probe, so the
# batch costs one statement, not one per user.
_AUDIENCES: Final = (
    "SELECT k.user_id, k.peer_id, 1 FROM contacts k WHERE k.user_id {users} AND k.state = 'accepted'"
    " AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = k.user_id AND b.blocked_id = k.peer_id)"
    " UNION ALL SELECT m1.user_id, m2.user_id, 0 FROM members m1"
    " JOIN conversations c ON c.conversation_id = m1.conversation_id AND c.kind = 'direct'"
    " JOIN members m2 ON m2.conversation_id = m1.conversation_id AND m2.user_id != m1.user_id"
    " WHERE m1.user_id {users}"
    " AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = m1.user_id AND b.blocked_id = m2.user_id)"
)

SQLITE: Final[Dialect] = {
    "insert_user": Statement(
        "INSERT INTO users (username, password_hash, created_at) VALUES (?1, ?2, ?3)"
        " ON CONFLICT (username) DO NOTHING RETURNING user_id"
    ),
    "user_by_name": Statement(f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?1"),
    "user_by_id": Statement(f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = ?1"),
    "list_users": Statement(f"SELECT {_USER_COLUMNS} FROM users WHERE user_id > ?1 ORDER BY user_id LIMIT ?2"),
    # "banned = 1" (not "banned != 0") so that the listing uses the partial index users_banned.
    "list_banned_users": Statement(
        f"SELECT {_USER_COLUMNS} FROM users WHERE user_id > ?1 AND banned = 1 ORDER BY user_id LIMIT ?2"
    ),
    "set_banned": Statement("UPDATE users SET banned = ?2 WHERE user_id = ?1"),
    "peer_blocks": Statement(
        "SELECT EXISTS (SELECT 1 FROM blocks WHERE user_id = ?1 AND blocked_id = ?2) FROM users"
        " WHERE user_id = ?1 AND deleted_at = 0"
    ),
    "lock_pair": Statement(None),  # the writer thread holds the database's write lock
    "contact_state": Statement("SELECT state FROM contacts WHERE user_id = ?1 AND peer_id = ?2"),
    "set_contacts": Statement(
        "INSERT INTO contacts (user_id, peer_id, state, updated_at) VALUES (?1, ?2, ?3, ?4)"
        " ON CONFLICT (user_id, peer_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
    ),
    "drop_contacts": Statement("DELETE FROM contacts WHERE user_id = ?1 AND peer_id = ?2"),
    "list_contacts": Statement(
        "SELECT c.peer_id, u.username, c.state, c.updated_at FROM contacts c JOIN users u ON u.user_id = c.peer_id"
        " WHERE c.user_id = ?1 ORDER BY u.username"
    ),
    "insert_block": Statement(
        "INSERT INTO blocks (user_id, blocked_id, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING"
    ),
    "delete_block": Statement("DELETE FROM blocks WHERE user_id = ?1 AND blocked_id = ?2"),
    "list_blocked": Statement("SELECT blocked_id FROM blocks WHERE user_id = ?1 ORDER BY blocked_id"),
    "set_only_contacts": Statement("UPDATE users SET only_contacts = ?2 WHERE user_id = ?1"),
    "user_settings": Statement("SELECT only_contacts, group_add, presence FROM users WHERE user_id = ?1"),
    "set_group_add": Statement("UPDATE users SET group_add = ?2 WHERE user_id = ?1"),
    "set_presence": Statement("UPDATE users SET presence = ?2 WHERE user_id = ?1"),
    "presence_audience": Statement(
        f"SELECT uid, {_SQLITE_IS_CONTACT} FROM ({_SQLITE_PEERS})"
        " WHERE uid NOT IN (SELECT blocked_id FROM blocks WHERE user_id = ?1) ORDER BY uid"
    ),
    "presence_audiences": Statement(_AUDIENCES.format(users="IN (SELECT value FROM json_each(?1))")),
    "presence_settings": Statement(
        "SELECT u.user_id, u.presence FROM json_each(?1) j JOIN users u ON u.user_id = j.value"
    ),
    "presence_visible": Statement(
        f"SELECT uid, {_SQLITE_IS_CONTACT} FROM ({_SQLITE_PEERS})"
        " WHERE uid NOT IN (SELECT user_id FROM blocks WHERE blocked_id = ?1)"
    ),
    "last_seen": Statement(
        "SELECT u.user_id, u.last_seen, u.presence FROM json_each(?1) j JOIN users u ON u.user_id = j.value"
    ),
    # Not on a tombstone: the deleted account's sockets closing must not write a last seen back.
    "set_last_seen": Statement("UPDATE users SET last_seen = ?2 WHERE user_id = ?1 AND deleted_at = 0"),
}

POSTGRES: Final[Dialect] = {
    # ON CONFLICT waits for a concurrent insert of the same name, then inserts nothing if that one committed.
    "insert_user": Statement(
        "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (username) DO NOTHING RETURNING user_id"
    ),
    "user_by_name": Statement(f"SELECT {_USER_COLUMNS} FROM users WHERE username = $1"),
    "user_by_id": Statement(f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = $1"),
    "list_users": Statement(f"SELECT {_USER_COLUMNS} FROM users WHERE user_id > $1 ORDER BY user_id LIMIT $2"),
    # "AND banned" so that the listing uses the partial index users_banned.
    "list_banned_users": Statement(
        f"SELECT {_USER_COLUMNS} FROM users WHERE user_id > $1 AND banned ORDER BY user_id LIMIT $2"
    ),
    "set_banned": Statement(
        "UPDATE users u SET banned = k.banned FROM unnest($1::bigint[], $2::boolean[]) AS k(user_id, banned)"
        " WHERE u.user_id = k.user_id"
    ),
    "peer_blocks": Statement(
        "SELECT EXISTS (SELECT 1 FROM blocks WHERE user_id = $1 AND blocked_id = $2) FROM users"
        " WHERE user_id = $1 AND deleted_at = 0"
    ),
    # Takes (low, high): the same key whichever of the two acts.
    "lock_pair": Statement(
        "SELECT pg_advisory_xact_lock(hashtextextended('pica:contact:' || $1::bigint::text || ':' || $2::bigint::text,"
        " 0))"
    ),
    "contact_state": Statement("SELECT state FROM contacts WHERE user_id = $1 AND peer_id = $2"),
    "set_contacts": Statement(
        "INSERT INTO contacts (user_id, peer_id, state, updated_at)"
        " SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[])"
        " ON CONFLICT (user_id, peer_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
    ),
    "drop_contacts": Statement(
        "DELETE FROM contacts c USING unnest($1::bigint[], $2::bigint[]) AS k(user_id, peer_id)"
        " WHERE c.user_id = k.user_id AND c.peer_id = k.peer_id"
    ),
    "list_contacts": Statement(
        "SELECT c.peer_id, u.username, c.state, c.updated_at FROM contacts c JOIN users u ON u.user_id = c.peer_id"
        " WHERE c.user_id = $1 ORDER BY u.username"
    ),
    "insert_block": Statement(
        "INSERT INTO blocks (user_id, blocked_id, created_at)"
        " SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) ON CONFLICT DO NOTHING"
    ),
    "delete_block": Statement(
        "DELETE FROM blocks b USING unnest($1::bigint[], $2::bigint[]) AS k(user_id, blocked_id)"
        " WHERE b.user_id = k.user_id AND b.blocked_id = k.blocked_id"
    ),
    "list_blocked": Statement("SELECT blocked_id FROM blocks WHERE user_id = $1 ORDER BY blocked_id"),
    "set_only_contacts": Statement(
        "UPDATE users u SET only_contacts = k.only_contacts"
        " FROM unnest($1::bigint[], $2::boolean[]) AS k(user_id, only_contacts) WHERE u.user_id = k.user_id"
    ),
    "user_settings": Statement("SELECT only_contacts, group_add, presence FROM users WHERE user_id = $1"),
    "set_group_add": Statement(
        "UPDATE users u SET group_add = k.v FROM unnest($1::bigint[], $2::text[]) AS k(user_id, v)"
        " WHERE u.user_id = k.user_id"
    ),
    "set_presence": Statement(
        "UPDATE users u SET presence = k.v FROM unnest($1::bigint[], $2::text[]) AS k(user_id, v)"
        " WHERE u.user_id = k.user_id"
    ),
    "presence_audience": Statement(
        f"SELECT uid, {_POSTGRES_IS_CONTACT} FROM ({_POSTGRES_PEERS}) p"
        " WHERE uid NOT IN (SELECT blocked_id FROM blocks WHERE user_id = $1) ORDER BY uid"
    ),
    "presence_audiences": Statement(_AUDIENCES.format(users="= ANY($1::bigint[])")),
    "presence_settings": Statement("SELECT user_id, presence FROM users WHERE user_id = ANY($1::bigint[])"),
    "presence_visible": Statement(
        f"SELECT uid, {_POSTGRES_IS_CONTACT} FROM ({_POSTGRES_PEERS}) p"
        " WHERE uid NOT IN (SELECT user_id FROM blocks WHERE blocked_id = $1)"
    ),
    "last_seen": Statement("SELECT user_id, last_seen, presence FROM users WHERE user_id = ANY($1::bigint[])"),
    "set_last_seen": Statement(
        "UPDATE users u SET last_seen = k.ts FROM unnest($1::bigint[], $2::bigint[]) AS k(user_id, ts)"
        " WHERE u.user_id = k.user_id AND u.deleted_at = 0"
    ),
}
