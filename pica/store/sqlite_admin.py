"""SQL for administration: listing users and groups, banning. Used by the ``pica user`` / ``pica group`` commands
(which open the store directly, with or without a running server) and by the server's ban sweep."""

from __future__ import annotations

import sqlite3
from typing import Any, Final

from pica.errors import UserNotFound
from pica.store.base import GroupRecord, UserRecord
from pica.store.sqlite_groups import _GROUP_COLUMNS, _group_row

USER_COLUMNS: Final = "user_id, username, password_hash, created_at, banned"


def user_row(row: tuple[Any, ...]) -> UserRecord:
    user_id, username, password_hash, created_at, banned = row
    return UserRecord(int(user_id), str(username), str(password_hash), int(created_at), bool(banned))


def list_users(conn: sqlite3.Connection, limit: int, after_id: int, banned_only: bool) -> list[UserRecord]:
    # "banned = 1" (not "banned != 0") so that the banned-only listing uses the partial index users_banned.
    where = "user_id > ? AND banned = 1" if banned_only else "user_id > ?"
    rows = conn.execute(
        f"SELECT {USER_COLUMNS} FROM users WHERE {where} ORDER BY user_id LIMIT ?", (after_id, limit)
    ).fetchall()
    return [user_row(row) for row in rows]


def set_banned(conn: sqlite3.Connection, user_id: int, banned: bool) -> None:
    cur = conn.execute("UPDATE users SET banned = ? WHERE user_id = ?", (int(banned), user_id))
    if cur.rowcount == 0:
        raise UserNotFound(f"user {user_id} does not exist")


def list_all_groups(conn: sqlite3.Connection, limit: int, after_id: int) -> list[GroupRecord]:
    rows = conn.execute(
        f"SELECT {_GROUP_COLUMNS} FROM groups g WHERE g.group_id > ? ORDER BY g.group_id LIMIT ?", (after_id, limit)
    ).fetchall()
    return [_group_row(row) for row in rows]
