"""Group transactions (create, change, read), written once for both dialects (see :mod:`pica.store.txn`).

The rules are in :mod:`pica.store.group_rules`; here is the order of reads and writes, and each statement's text for
SQLite and PostgreSQL side by side. Every change appends a system notice to the group's timeline in the same
transaction, so members see changes in seq order, live and through sync.

Timeline rule: a member sees messages with seq > joined_seq. A new member's joined_seq is the seq just before the
notice that adds them (they see their own "added" notice and what follows). A removed member sees the notice of
their removal live, then loses the membership row: no more sends, sync, history, search or member lists.

Locking: a change reads the group's conversation row with ``lock_conversations`` before anything else (``FOR
UPDATE`` on PostgreSQL), the lock every append to that timeline takes for its seq, so a change and the messages
around it are ordered the same way on every node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from pica.errors import BadRequest, GroupNotFound
from pica.protocol.ids import group_conversation_id
from pica.store import group_rules as rules
from pica.store import messages
from pica.store.base import GroupAction, GroupChange, GroupRecord, MemberRecord
from pica.store.txn import Dialect, Read, Statement, Txn, Write


def _group(row: Sequence[Any]) -> GroupRecord:
    return GroupRecord(row[0], row[1], row[2], row[3], bool(row[4]), bool(row[5]), row[6], int(row[7]), row[8])


def _load(group_id: int) -> Txn[GroupRecord]:
    rows = yield Read("group_by_id", (group_id,))
    if not rows:
        raise GroupNotFound()
    return _group(rows[0])


def _check_users(user_ids: Sequence[int]) -> Txn[None]:
    rows = yield Read("group_users_found", (list(user_ids),))
    rules.check_users_found(len(user_ids), rows[0][0])


def _member_roles(conversation_id: str, user_ids: Sequence[int]) -> Txn[dict[int, str]]:
    rows = yield Read("group_member_roles", (conversation_id, list(user_ids)))
    return rules.member_roles(user_ids, {int(row[0]): str(row[1]) for row in rows})


def _insert_members(conversation_id: str, user_ids: Sequence[int], roles: Sequence[str], seq: int) -> Write:
    """Members who see the timeline after ``seq`` (and have received and read it up to there)."""
    n = len(user_ids)
    return Write("insert_group_members", ([conversation_id] * n, list(user_ids), list(roles), [seq] * n))


# --------------------------------------------------------------------------------------------------------- changes


def create_group(owner: int, name: str, members: list[int], ts: int, max_members: int) -> Txn[GroupChange]:
    name, everyone, event = rules.plan_create(owner, name, members, max_members)
    yield from _check_users(everyone)
    # PostgreSQL derives conversation_id from the identity column; SQLite's AUTOINCREMENT id is known only now.
    group_id = int((yield Read("insert_group", (name, owner, ts)))[0][0])
    conversation_id = group_conversation_id(group_id)
    yield Write("name_group_conversation", ([group_id], [conversation_id]))
    yield Write("create_group_conversation", ([conversation_id], [ts]))
    yield _insert_members(conversation_id, everyone, ["owner" if u == owner else "member" for u in everyone], 0)
    notice = yield from messages.append_notice(conversation_id, owner, event, ts)
    group = yield from _load(group_id)
    return GroupChange(group, notice, added=everyone, removed=())


def group_action(action: GroupAction) -> Txn[GroupChange]:
    """One change: the conversation row first (see the module's locking note), the rules, the writes, the notice."""
    conversation_id = group_conversation_id(action.group_id)
    locked = yield Read("lock_conversations", ([conversation_id],))
    group = yield from _load(action.group_id)
    group_id = group.group_id
    actor = yield Read("group_member_roles", (conversation_id, [action.actor]))
    actor_role = rules.acting_role(str(actor[0][1]) if actor else None, group.dissolved)
    kind = action.kind
    added: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()

    if kind == "add":
        existing = {int(row[0]) for row in (yield Read("group_member_ids", (conversation_id,)))}
        added, event = rules.plan_add(action.actor, actor_role, action.user_ids, existing, action.max_members)
        yield from _check_users(added)
        last_seq = locked[0][1]
        yield _insert_members(conversation_id, added, ["member"] * len(added), last_seq)
    elif kind in ("remove", "leave"):
        targets = [action.actor] if kind == "leave" else list(action.user_ids)
        removed, event = rules.plan_leave(kind, action.actor, actor_role,
                                          (yield from _member_roles(conversation_id, targets)))
    elif kind == "role":
        rules.check_role_request(actor_role, action.role)
        roles = yield from _member_roles(conversation_id, action.user_ids)
        event = rules.plan_role(action.actor, action.role, roles)
        yield Write("set_member_roles", ([conversation_id] * len(roles), list(roles), [action.role] * len(roles)))
    elif kind == "transfer":
        rules.check_transfer_request(actor_role, action.user_ids)
        (target,) = yield from _member_roles(conversation_id, action.user_ids)
        event = rules.plan_transfer(action.actor, target)
        yield Write("set_member_roles", ([conversation_id] * 2, [action.actor, target], ["admin", "owner"]))
        yield Write("set_member_muted", ([conversation_id], [target], [False]))
        yield Write("set_group_owner", ([group_id], [target]))
    elif kind == "rename":
        name, event = rules.plan_rename(action.actor, actor_role, action.name)
        yield Write("rename_group", ([group_id], [name]))
    elif kind == "mute":
        rules.require_rank(actor_role, "admin", "mute members")
        roles = yield from _member_roles(conversation_id, action.user_ids)
        event = rules.plan_mute(action.actor, actor_role, roles, action.flag)
        yield Write("set_member_muted", ([conversation_id] * len(roles), list(roles), [action.flag] * len(roles)))
    elif kind == "mute_all":
        event = rules.plan_mute_all(action.actor, actor_role, action.flag)
        yield Write("set_group_muted_all", ([group_id], [action.flag]))
    elif kind == "dissolve":
        event = rules.plan_dissolve(action.actor, actor_role)
        yield Write("dissolve_group", ([group_id],))
    else:
        raise BadRequest(f"unknown group action {kind!r}")

    # The notice goes in before the removed leave, so that they see it; after the added join.
    notice = yield from messages.append_notice(conversation_id, action.actor, event, action.ts)
    if removed:
        yield Write("delete_group_members", ([conversation_id] * len(removed), list(removed)))
    if added or removed:
        yield Write("bump_members_version", ([group_id],))
    return GroupChange((yield from _load(group_id)), notice, added=added, removed=removed)


# --------------------------------------------------------------------------------------------------------- reads


def get_group(user_id: int, group_id: int) -> Txn[GroupRecord]:
    """A group its member asks about; a non-member gets GroupNotFound (ids cannot be probed)."""
    rows = yield Read("group_of_member", (group_id, user_id))
    if not rows:
        raise GroupNotFound()
    return _group(rows[0])


def list_groups(user_id: int) -> Txn[list[GroupRecord]]:
    return [_group(row) for row in (yield Read("groups_of_member", (user_id,)))]


def group_members(user_id: int, group_id: int) -> Txn[list[MemberRecord]]:
    """Run with ``snapshot``: the group and its member rows at one point in time."""
    group = yield from get_group(user_id, group_id)
    rows = yield Read("group_member_list", (group.conversation_id,))
    return [MemberRecord(r[0], r[1], bool(r[2]), r[3], r[4], r[5], r[6]) for r in rows]


def members_with_version(conversation_id: str) -> Txn[tuple[int, dict[int, int]]]:
    """The fan-out of a group: its members' version and each member's timeline floor (joined_seq). Run with
    ``snapshot``: the version must be that of the members read."""
    version = yield Read("group_members_version", (conversation_id,))
    rows = yield Read("group_member_floors", (conversation_id,))
    return (int(version[0][0]) if version else 0), {int(r[0]): int(r[1]) for r in rows}


def list_all_groups(limit: int, after_id: int) -> Txn[list[GroupRecord]]:
    """Every group (dissolved ones too), for administration: keyset paging by group_id."""
    return [_group(row) for row in (yield Read("groups_page", (after_id, limit)))]


# --------------------------------------------------------------------------------------------------------- SQL
# The same text in both dialects where it can be (only the placeholders differ); PostgreSQL writes take one array per
# column and ``unnest``, as everywhere. ``insert_group`` is a Read: it answers the new group_id (RETURNING).

_COLUMNS: Final = (
    "g.group_id, g.conversation_id, g.name, g.owner_id, g.muted_all, g.dissolved, g.created_at,"
    " (SELECT count(*) FROM members x WHERE x.conversation_id = g.conversation_id), g.members_version"
)
_MEMBER_COLUMNS: Final = "m.user_id, m.role, m.muted, m.joined_seq, m.delivered_seq, m.read_seq, u.username"

SQLITE: Final[Dialect] = {
    "group_users_found": Statement("SELECT count(*) FROM users WHERE user_id IN (SELECT value FROM json_each(?1))"),
    # The conversation id is set once the id is known (name_group_conversation); members_version starts at 1.
    "insert_group": Statement(
        "INSERT INTO groups (conversation_id, name, owner_id, created_at, members_version)"
        " VALUES ('', ?1, ?2, ?3, 1) RETURNING group_id"
    ),
    "name_group_conversation": Statement("UPDATE groups SET conversation_id = ?2 WHERE group_id = ?1"),
    "create_group_conversation": Statement(
        "INSERT INTO conversations (conversation_id, kind, last_seq, last_ts, created_at)"
        " VALUES (?1, 'group', 0, ?2, ?2)"
    ),
    "insert_group_members": Statement(
        "INSERT INTO members (conversation_id, user_id, role, joined_seq, delivered_seq, read_seq)"
        " VALUES (?1, ?2, ?3, ?4, ?4, ?4)"
    ),
    "group_member_roles": Statement(
        "SELECT m.user_id, m.role FROM json_each(?2) j JOIN members m ON m.conversation_id = ?1 AND m.user_id = j.value"
    ),
    "group_member_ids": Statement("SELECT user_id FROM members WHERE conversation_id = ?1"),
    "set_member_roles": Statement("UPDATE members SET role = ?3 WHERE conversation_id = ?1 AND user_id = ?2"),
    "set_member_muted": Statement("UPDATE members SET muted = ?3 WHERE conversation_id = ?1 AND user_id = ?2"),
    "delete_group_members": Statement("DELETE FROM members WHERE conversation_id = ?1 AND user_id = ?2"),
    "set_group_owner": Statement("UPDATE groups SET owner_id = ?2 WHERE group_id = ?1"),
    "rename_group": Statement("UPDATE groups SET name = ?2 WHERE group_id = ?1"),
    "set_group_muted_all": Statement("UPDATE groups SET muted_all = ?2 WHERE group_id = ?1"),
    "dissolve_group": Statement("UPDATE groups SET dissolved = 1 WHERE group_id = ?1"),
    "bump_members_version": Statement("UPDATE groups SET members_version = members_version + 1 WHERE group_id = ?1"),
    "group_by_id": Statement(f"SELECT {_COLUMNS} FROM groups g WHERE g.group_id = ?1"),
    "group_of_member": Statement(
        f"SELECT {_COLUMNS} FROM groups g JOIN members m ON m.conversation_id = g.conversation_id"
        " WHERE g.group_id = ?1 AND m.user_id = ?2"
    ),
    "groups_of_member": Statement(
        f"SELECT {_COLUMNS} FROM groups g JOIN members m ON m.conversation_id = g.conversation_id"
        " WHERE m.user_id = ?1 ORDER BY g.group_id"
    ),
    "group_member_list": Statement(
        f"SELECT {_MEMBER_COLUMNS} FROM members m JOIN users u ON u.user_id = m.user_id"
        " WHERE m.conversation_id = ?1 ORDER BY m.user_id"
    ),
    "group_members_version": Statement("SELECT members_version FROM groups WHERE conversation_id = ?1"),
    "group_member_floors": Statement("SELECT user_id, joined_seq FROM members WHERE conversation_id = ?1"),
    "groups_page": Statement(f"SELECT {_COLUMNS} FROM groups g WHERE g.group_id > ?1 ORDER BY g.group_id LIMIT ?2"),
}

POSTGRES: Final[Dialect] = {
    "group_users_found": Statement("SELECT count(*) FROM users WHERE user_id = ANY($1::bigint[])"),
    # conversation_id is GENERATED ALWAYS AS ('g:' || group_id): nothing to name afterwards.
    "insert_group": Statement("INSERT INTO groups (name, owner_id, created_at) VALUES ($1, $2, $3) RETURNING group_id"),
    "name_group_conversation": Statement(None),
    "create_group_conversation": Statement(
        "INSERT INTO conversations (conversation_id, kind, last_seq, last_ts, created_at)"
        " SELECT k.conversation_id, 'group', 0, k.ts, k.ts"
        " FROM unnest($1::text[], $2::bigint[]) AS k(conversation_id, ts)"
    ),
    "insert_group_members": Statement(
        "INSERT INTO members (conversation_id, user_id, role, joined_seq, delivered_seq, read_seq)"
        " SELECT k.c, k.u, k.r, k.s, k.s, k.s FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[])"
        " AS k(c, u, r, s)"
    ),
    "group_member_roles": Statement(
        "SELECT user_id, role FROM members WHERE conversation_id = $1 AND user_id = ANY($2::bigint[])"
    ),
    "group_member_ids": Statement("SELECT user_id FROM members WHERE conversation_id = $1"),
    "set_member_roles": Statement(
        "UPDATE members m SET role = k.role FROM unnest($1::text[], $2::bigint[], $3::text[])"
        " AS k(conversation_id, user_id, role) WHERE m.conversation_id = k.conversation_id AND m.user_id = k.user_id"
    ),
    "set_member_muted": Statement(
        "UPDATE members m SET muted = k.muted FROM unnest($1::text[], $2::bigint[], $3::boolean[])"
        " AS k(conversation_id, user_id, muted) WHERE m.conversation_id = k.conversation_id AND m.user_id = k.user_id"
    ),
    "delete_group_members": Statement(
        "DELETE FROM members m USING unnest($1::text[], $2::bigint[]) AS k(conversation_id, user_id)"
        " WHERE m.conversation_id = k.conversation_id AND m.user_id = k.user_id"
    ),
    "set_group_owner": Statement(
        "UPDATE groups g SET owner_id = k.owner_id FROM unnest($1::bigint[], $2::bigint[]) AS k(group_id, owner_id)"
        " WHERE g.group_id = k.group_id"
    ),
    "rename_group": Statement(
        "UPDATE groups g SET name = k.name FROM unnest($1::bigint[], $2::text[]) AS k(group_id, name)"
        " WHERE g.group_id = k.group_id"
    ),
    "set_group_muted_all": Statement(
        "UPDATE groups g SET muted_all = k.muted_all FROM unnest($1::bigint[], $2::boolean[]) AS k(group_id, muted_all)"
        " WHERE g.group_id = k.group_id"
    ),
    "dissolve_group": Statement("UPDATE groups SET dissolved = true WHERE group_id = ANY($1::bigint[])"),
    "bump_members_version": Statement(
        "UPDATE groups SET members_version = members_version + 1 WHERE group_id = ANY($1::bigint[])"
    ),
    "group_by_id": Statement(f"SELECT {_COLUMNS} FROM groups g WHERE g.group_id = $1"),
    "group_of_member": Statement(
        f"SELECT {_COLUMNS} FROM groups g JOIN members m ON m.conversation_id = g.conversation_id"
        " WHERE g.group_id = $1 AND m.user_id = $2"
    ),
    "groups_of_member": Statement(
        f"SELECT {_COLUMNS} FROM groups g JOIN members m ON m.conversation_id = g.conversation_id"
        " WHERE m.user_id = $1 ORDER BY g.group_id"
    ),
    "group_member_list": Statement(
        f"SELECT {_MEMBER_COLUMNS} FROM members m JOIN users u ON u.user_id = m.user_id"
        " WHERE m.conversation_id = $1 ORDER BY m.user_id"
    ),
    "group_members_version": Statement("SELECT members_version FROM groups WHERE conversation_id = $1"),
    "group_member_floors": Statement("SELECT user_id, joined_seq FROM members WHERE conversation_id = $1"),
    "groups_page": Statement(f"SELECT {_COLUMNS} FROM groups g WHERE g.group_id > $1 ORDER BY g.group_id LIMIT $2"),
}
