"""SQL for groups on PostgreSQL: creation, membership changes with role checks, and reads. The rules (roles, notices,
the timeline floor of new members) are those of :mod:`pica.store.sqlite_groups`; every change runs in one
transaction that first locks the group's conversation row, the lock message appends take for their seq, so a change
and the messages around it are ordered the same way on every node.
"""

from __future__ import annotations

from typing import Any, Final

from pica.errors import BadRequest, GroupNotFound, UserNotFound
from pica.protocol.ids import group_conversation_id
from pica.store import group_rules as rules
from pica.store import messages, sql_postgres
from pica.store.base import GroupAction, GroupChange, GroupRecord, MemberRecord

GROUP_COLUMNS: Final = (
    "g.group_id, g.conversation_id, g.name, g.owner_id, g.muted_all, g.dissolved, g.created_at,"
    " (SELECT count(*) FROM members x WHERE x.conversation_id = g.conversation_id), g.members_version"
)


def group_row(row: Any) -> GroupRecord:
    return GroupRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], int(row[7]), row[8])


async def _check_users_exist(conn: Any, user_ids: list[int]) -> None:
    found = await conn.fetchval("SELECT count(*) FROM users WHERE user_id = ANY($1::bigint[])", user_ids)
    if found != len(user_ids):
        raise UserNotFound("some of these users do not exist")


async def create_group(conn: Any, owner: int, name: str, members: list[int], ts: int, max_members: int) -> GroupChange:
    name = rules.check_name(name)
    everyone = list(dict.fromkeys([owner, *members]))
    if len(everyone) > max_members:
        raise BadRequest(f"a group has at most {max_members} members")
    await _check_users_exist(conn, everyone)
    row = await conn.fetchrow(
        "INSERT INTO groups (name, owner_id, created_at) VALUES ($1, $2, $3) RETURNING group_id, conversation_id",
        name, owner, ts,
    )
    group_id, conversation_id = row["group_id"], row["conversation_id"]
    await conn.execute(
        "INSERT INTO conversations (conversation_id, kind, last_seq, last_ts, created_at)"
        " VALUES ($1, 'group', 0, $2, $2)",
        conversation_id, ts,
    )
    await conn.execute(
        "INSERT INTO members (conversation_id, user_id, role)"
        " SELECT $1, u, CASE WHEN u = $2 THEN 'owner' ELSE 'member' END FROM unnest($3::bigint[]) AS u",
        conversation_id, owner, everyone,
    )
    notice = await sql_postgres.run(conn, messages.append_notice(conversation_id, owner,
                                 {"event": "created", "by": owner, "name": name, **rules.listed(everyone)}, ts))
    group = await _load(conn, group_id)
    return GroupChange(group, notice, added=tuple(everyone), removed=())


async def _load(conn: Any, group_id: int) -> GroupRecord:
    row = await conn.fetchrow(f"SELECT {GROUP_COLUMNS} FROM groups g WHERE g.group_id = $1", group_id)
    if row is None:
        raise GroupNotFound()
    return group_row(row)


async def _role(conn: Any, conversation_id: str, user_id: int) -> str | None:
    role = await conn.fetchval(
        "SELECT role FROM members WHERE conversation_id = $1 AND user_id = $2", conversation_id, user_id
    )
    return None if role is None else str(role)


async def _targets(conn: Any, conversation_id: str, user_ids: tuple[int, ...]) -> dict[int, str]:
    rows = await conn.fetch(
        "SELECT user_id, role FROM members WHERE conversation_id = $1 AND user_id = ANY($2::bigint[])",
        conversation_id, list(user_ids),
    )
    found = {int(r["user_id"]): str(r["role"]) for r in rows}
    roles = {}
    for user_id in user_ids:
        if user_id not in found:
            raise BadRequest(f"user {user_id} is not a member of this group")
        roles[user_id] = found[user_id]
    return roles


async def group_action(conn: Any, action: GroupAction) -> GroupChange:
    """One change, in the caller's transaction."""
    conversation_id = group_conversation_id(action.group_id)
    await conn.execute("SELECT 1 FROM conversations WHERE conversation_id = $1 FOR UPDATE", conversation_id)
    group = await _load(conn, action.group_id)
    actor_role = rules.acting_role(await _role(conn, conversation_id, action.actor), group.dissolved)
    kind = action.kind
    added: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()

    if kind == "add":
        existing = {r[0] for r in await conn.fetch("SELECT user_id FROM members WHERE conversation_id = $1",
                                                   conversation_id)}
        added, event = rules.plan_add(action.actor, actor_role, action.user_ids, existing, action.max_members)
        await _check_users_exist(conn, list(added))
        await conn.execute(
            "INSERT INTO members (conversation_id, user_id, joined_seq, delivered_seq, read_seq)"
            " SELECT $1, u, c.last_seq, c.last_seq, c.last_seq FROM unnest($2::bigint[]) AS u"
            " JOIN conversations c ON c.conversation_id = $1",
            conversation_id, list(added),
        )
    elif kind in ("remove", "leave"):
        targets = (action.actor,) if kind == "leave" else action.user_ids
        removed, event = rules.plan_leave(kind, action.actor, actor_role,
                                          await _targets(conn, conversation_id, targets))
    elif kind == "role":
        rules.check_role_request(actor_role, action.role)
        roles = await _targets(conn, conversation_id, action.user_ids)
        event = rules.plan_role(action.actor, action.role, roles)
        await conn.execute("UPDATE members SET role = $1 WHERE conversation_id = $2 AND user_id = ANY($3::bigint[])",
                           action.role, conversation_id, list(roles))
    elif kind == "transfer":
        rules.check_transfer_request(actor_role, action.user_ids)
        (target,) = await _targets(conn, conversation_id, action.user_ids)
        event = rules.plan_transfer(action.actor, target)
        await conn.execute("UPDATE members SET role = 'admin' WHERE conversation_id = $1 AND user_id = $2",
                           conversation_id, action.actor)
        await conn.execute(
            "UPDATE members SET role = 'owner', muted = false WHERE conversation_id = $1 AND user_id = $2",
            conversation_id, target,
        )
        await conn.execute("UPDATE groups SET owner_id = $1 WHERE group_id = $2", target, group.group_id)
    elif kind == "rename":
        name, event = rules.plan_rename(action.actor, actor_role, action.name)
        await conn.execute("UPDATE groups SET name = $1 WHERE group_id = $2", name, group.group_id)
    elif kind == "mute":
        rules.require_rank(actor_role, "admin", "mute members")
        roles = await _targets(conn, conversation_id, action.user_ids)
        event = rules.plan_mute(action.actor, actor_role, roles, action.flag)
        await conn.execute("UPDATE members SET muted = $1 WHERE conversation_id = $2 AND user_id = ANY($3::bigint[])",
                           action.flag, conversation_id, list(roles))
    elif kind == "mute_all":
        event = rules.plan_mute_all(action.actor, actor_role, action.flag)
        await conn.execute("UPDATE groups SET muted_all = $1 WHERE group_id = $2", action.flag, group.group_id)
    elif kind == "dissolve":
        event = rules.plan_dissolve(action.actor, actor_role)
        await conn.execute("UPDATE groups SET dissolved = true WHERE group_id = $1", group.group_id)
    else:
        raise BadRequest(f"unknown group action {kind!r}")

    # The notice goes in before the removed leave, so that they see it; after the added join.
    notice = await sql_postgres.run(conn, messages.append_notice(conversation_id, action.actor, event, action.ts))
    if removed:
        await conn.execute("DELETE FROM members WHERE conversation_id = $1 AND user_id = ANY($2::bigint[])",
                           conversation_id, list(removed))
    if added or removed:
        await conn.execute("UPDATE groups SET members_version = members_version + 1 WHERE group_id = $1",
                           group.group_id)
    return GroupChange(await _load(conn, group.group_id), notice, added=added, removed=removed)


async def get_group(conn: Any, user_id: int, group_id: int) -> GroupRecord:
    row = await conn.fetchrow(
        f"SELECT {GROUP_COLUMNS} FROM groups g JOIN members m ON m.conversation_id = g.conversation_id"
        " WHERE g.group_id = $1 AND m.user_id = $2",
        group_id, user_id,
    )
    if row is None:
        raise GroupNotFound()
    return group_row(row)


async def list_groups(conn: Any, user_id: int) -> list[GroupRecord]:
    rows = await conn.fetch(
        f"SELECT {GROUP_COLUMNS} FROM groups g JOIN members m ON m.conversation_id = g.conversation_id"
        " WHERE m.user_id = $1 ORDER BY g.group_id",
        user_id,
    )
    return [group_row(r) for r in rows]


async def group_members(conn: Any, user_id: int, group_id: int) -> list[MemberRecord]:
    group = await get_group(conn, user_id, group_id)
    rows = await conn.fetch(
        "SELECT m.user_id, m.role, m.muted, m.joined_seq, m.delivered_seq, m.read_seq, u.username FROM members m"
        " JOIN users u ON u.user_id = m.user_id WHERE m.conversation_id = $1 ORDER BY m.user_id",
        group.conversation_id,
    )
    return [MemberRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]


async def members_with_version(conn: Any, conversation_id: str) -> tuple[int, dict[int, int]]:
    version = await conn.fetchval("SELECT members_version FROM groups WHERE conversation_id = $1", conversation_id)
    rows = await conn.fetch("SELECT user_id, joined_seq FROM members WHERE conversation_id = $1", conversation_id)
    return (int(version) if version is not None else 0), {int(r[0]): int(r[1]) for r in rows}


async def list_all_groups(conn: Any, limit: int, after_id: int) -> list[GroupRecord]:
    rows = await conn.fetch(
        f"SELECT {GROUP_COLUMNS} FROM groups g WHERE g.group_id > $1 ORDER BY g.group_id LIMIT $2", after_id, limit
    )
    return [group_row(r) for r in rows]
