"""SQL for groups: creation, membership changes with role checks, and reads. Every change appends a system notice
to the group's timeline in the same transaction, so members see changes in seq order, live and through sync.

Timeline rule: a member sees messages with seq > joined_seq. A new member's joined_seq is the seq just before the
notice that adds them (they see their own "added" notice and what follows). A removed member sees the notice of
their removal live, then loses the membership row: no more sends, sync, history, search or member lists.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Final

from pica.errors import BadRequest, GroupNotFound, UserNotFound
from pica.store import group_rules as rules
from pica.store import messages, sql_sqlite
from pica.store.base import GroupAction, GroupChange, GroupRecord, MemberRecord

_GROUP_COLUMNS: Final = (
    "g.group_id, g.conversation_id, g.name, g.owner_id, g.muted_all, g.dissolved, g.created_at,"
    " (SELECT count(*) FROM members x WHERE x.conversation_id = g.conversation_id), g.members_version"
)


def _group_row(row: tuple[Any, ...]) -> GroupRecord:
    return GroupRecord(row[0], row[1], row[2], row[3], bool(row[4]), bool(row[5]), row[6], row[7], row[8])


def _check_users_exist(conn: sqlite3.Connection, user_ids: list[int]) -> None:
    (found,) = conn.execute(
        "SELECT count(*) FROM users WHERE user_id IN (SELECT value FROM json_each(?))", (json.dumps(user_ids),)
    ).fetchone()
    if found != len(user_ids):
        raise UserNotFound("some of these users do not exist")


def create_group(
    conn: sqlite3.Connection, owner: int, name: str, members: list[int], ts: int, max_members: int
) -> GroupChange:
    name = rules.check_name(name)
    everyone = list(dict.fromkeys([owner, *members]))
    if len(everyone) > max_members:
        raise BadRequest(f"a group has at most {max_members} members")
    _check_users_exist(conn, everyone)
    cur = conn.execute(
        "INSERT INTO groups (conversation_id, name, owner_id, created_at) VALUES ('', ?, ?, ?)", (name, owner, ts)
    )
    group_id = int(cur.lastrowid or 0)
    conversation_id = f"g:{group_id}"
    conn.execute("UPDATE groups SET conversation_id = ?, members_version = 1 WHERE group_id = ?",
                 (conversation_id, group_id))
    conn.execute(
        "INSERT INTO conversations (conversation_id, kind, last_seq, last_ts, created_at) VALUES (?, 'group', 0, ?, ?)",
        (conversation_id, ts, ts),
    )
    conn.executemany(
        "INSERT INTO members (conversation_id, user_id, role) VALUES (?, ?, ?)",
        [(conversation_id, uid, "owner" if uid == owner else "member") for uid in everyone],
    )
    notice = sql_sqlite.run(conn, messages.append_notice(conversation_id, owner,
                           {"event": "created", "by": owner, "name": name, **rules.listed(everyone)}, ts))
    group = _load(conn, group_id)
    return GroupChange(group, notice, added=tuple(everyone), removed=())


def _load(conn: sqlite3.Connection, group_id: int) -> GroupRecord:
    row = conn.execute(f"SELECT {_GROUP_COLUMNS} FROM groups g WHERE g.group_id = ?", (group_id,)).fetchone()
    if row is None:
        raise GroupNotFound()
    return _group_row(row)


def _role(conn: sqlite3.Connection, conversation_id: str, user_id: int) -> str | None:
    row = conn.execute(
        "SELECT role FROM members WHERE conversation_id = ? AND user_id = ?", (conversation_id, user_id)
    ).fetchone()
    return None if row is None else str(row[0])


def _targets(conn: sqlite3.Connection, conversation_id: str, user_ids: tuple[int, ...]) -> dict[int, str]:
    roles = {}
    for user_id in user_ids:
        role = _role(conn, conversation_id, user_id)
        if role is None:
            raise BadRequest(f"user {user_id} is not a member of this group")
        roles[user_id] = role
    return roles


def group_action(conn: sqlite3.Connection, action: GroupAction) -> GroupChange:
    group = _load(conn, action.group_id)
    conversation_id = group.conversation_id
    actor_role = rules.acting_role(_role(conn, conversation_id, action.actor), group.dissolved)
    kind = action.kind
    added: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()

    if kind == "add":
        existing = {r[0] for r in conn.execute("SELECT user_id FROM members WHERE conversation_id = ?",
                                               (conversation_id,))}
        added, event = rules.plan_add(action.actor, actor_role, action.user_ids, existing, action.max_members)
        _check_users_exist(conn, list(added))
        (last_seq,) = conn.execute("SELECT last_seq FROM conversations WHERE conversation_id = ?",
                                   (conversation_id,)).fetchone()
        conn.executemany(
            "INSERT INTO members (conversation_id, user_id, joined_seq, delivered_seq, read_seq)"
            " VALUES (?, ?, ?, ?, ?)",
            [(conversation_id, u, last_seq, last_seq, last_seq) for u in added],
        )
    elif kind in ("remove", "leave"):
        targets = (action.actor,) if kind == "leave" else action.user_ids
        removed, event = rules.plan_leave(kind, action.actor, actor_role, _targets(conn, conversation_id, targets))
    elif kind == "role":
        rules.check_role_request(actor_role, action.role)
        roles = _targets(conn, conversation_id, action.user_ids)
        event = rules.plan_role(action.actor, action.role, roles)
        conn.executemany("UPDATE members SET role = ? WHERE conversation_id = ? AND user_id = ?",
                         [(action.role, conversation_id, u) for u in roles])
    elif kind == "transfer":
        rules.check_transfer_request(actor_role, action.user_ids)
        (target,) = _targets(conn, conversation_id, action.user_ids)
        event = rules.plan_transfer(action.actor, target)
        conn.execute("UPDATE members SET role = 'admin' WHERE conversation_id = ? AND user_id = ?",
                     (conversation_id, action.actor))
        conn.execute("UPDATE members SET role = 'owner', muted = 0 WHERE conversation_id = ? AND user_id = ?",
                     (conversation_id, target))
        conn.execute("UPDATE groups SET owner_id = ? WHERE group_id = ?", (target, group.group_id))
    elif kind == "rename":
        name, event = rules.plan_rename(action.actor, actor_role, action.name)
        conn.execute("UPDATE groups SET name = ? WHERE group_id = ?", (name, group.group_id))
    elif kind == "mute":
        rules.require_rank(actor_role, "admin", "mute members")
        roles = _targets(conn, conversation_id, action.user_ids)
        event = rules.plan_mute(action.actor, actor_role, roles, action.flag)
        conn.executemany("UPDATE members SET muted = ? WHERE conversation_id = ? AND user_id = ?",
                         [(int(action.flag), conversation_id, u) for u in roles])
    elif kind == "mute_all":
        event = rules.plan_mute_all(action.actor, actor_role, action.flag)
        conn.execute("UPDATE groups SET muted_all = ? WHERE group_id = ?", (int(action.flag), group.group_id))
    elif kind == "dissolve":
        event = rules.plan_dissolve(action.actor, actor_role)
        conn.execute("UPDATE groups SET dissolved = 1 WHERE group_id = ?", (group.group_id,))
    else:
        raise BadRequest(f"unknown group action {kind!r}")

    # The notice goes in before the removed leave, so that they see it; after the added join.
    notice = sql_sqlite.run(conn, messages.append_notice(conversation_id, action.actor, event, action.ts))
    if removed:
        conn.executemany("DELETE FROM members WHERE conversation_id = ? AND user_id = ?",
                         [(conversation_id, u) for u in removed])
    if added or removed:
        conn.execute("UPDATE groups SET members_version = members_version + 1 WHERE group_id = ?",
                     (group.group_id,))
    return GroupChange(_load(conn, group.group_id), notice, added=added, removed=removed)


def get_group(conn: sqlite3.Connection, user_id: int, group_id: int) -> GroupRecord:
    row = conn.execute(
        f"SELECT {_GROUP_COLUMNS} FROM groups g JOIN members m ON m.conversation_id = g.conversation_id"
        " WHERE g.group_id = ? AND m.user_id = ?",
        (group_id, user_id),
    ).fetchone()
    if row is None:
        raise GroupNotFound()
    return _group_row(row)


def list_groups(conn: sqlite3.Connection, user_id: int) -> list[GroupRecord]:
    rows = conn.execute(
        f"SELECT {_GROUP_COLUMNS} FROM groups g JOIN members m ON m.conversation_id = g.conversation_id"
        " WHERE m.user_id = ? ORDER BY g.group_id",
        (user_id,),
    ).fetchall()
    return [_group_row(r) for r in rows]


def group_members(conn: sqlite3.Connection, user_id: int, group_id: int) -> list[MemberRecord]:
    group = get_group(conn, user_id, group_id)
    rows = conn.execute(
        "SELECT m.user_id, m.role, m.muted, m.joined_seq, m.delivered_seq, m.read_seq, u.username FROM members m"
        " JOIN users u ON u.user_id = m.user_id WHERE m.conversation_id = ? ORDER BY m.user_id",
        (group.conversation_id,),
    ).fetchall()
    return [MemberRecord(r[0], r[1], bool(r[2]), r[3], r[4], r[5], r[6]) for r in rows]


def members_with_version(conn: sqlite3.Connection, conversation_id: str) -> tuple[int, dict[int, int]]:
    row = conn.execute("SELECT members_version FROM groups WHERE conversation_id = ?", (conversation_id,)).fetchone()
    members = dict(conn.execute("SELECT user_id, joined_seq FROM members WHERE conversation_id = ?",
                                (conversation_id,)).fetchall())
    return (int(row[0]) if row else 0), members
