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

from pica.errors import BadRequest, GroupNotFound, NotFound
from pica.protocol.ids import group_conversation_id, own_conversation_id
from pica.store import group_rules as rules
from pica.store import messages
from pica.store.base import GroupAction, GroupChange, GroupRecord, InvitationRecord, MemberRecord, MessageRecord
from pica.store.txn import Dialect, Read, Statement, Txn, Write


def _group(row: Sequence[Any]) -> GroupRecord:
    return GroupRecord(row[0], row[1], row[2], row[3], bool(row[4]), bool(row[5]), row[6], int(row[7]), row[8])


def load_group(group_id: int) -> Txn[GroupRecord]:
    rows = yield Read("group_by_id", (group_id,))
    if not rows:
        raise GroupNotFound()
    return _group(rows[0])


def _consent(actor: int, user_ids: Sequence[int]) -> Txn[dict[int, rules.Consent]]:
    """What the consent rule of group adds needs to know about each of ``user_ids`` (existing, undeleted users;
    the others are missing from the answer)."""
    rows = yield Read("group_add_consent", (actor, list(user_ids)))
    return {int(r[0]): rules.Consent(str(r[1]), bool(r[2]), bool(r[3])) for r in rows}


def _invite(group_id: int, user_ids: Sequence[int], inviter: int, ts: int) -> Write:
    """Pending invitations (a repeated one keeps its first inviter and time)."""
    n = len(user_ids)
    return Write("insert_group_invites", (list(user_ids), [group_id] * n, [inviter] * n, [ts] * n))


def _member_roles(conversation_id: str, user_ids: Sequence[int]) -> Txn[dict[int, str]]:
    rows = yield Read("group_member_roles", (conversation_id, list(user_ids)))
    return rules.member_roles(user_ids, {int(row[0]): str(row[1]) for row in rows})


def _insert_members(conversation_id: str, user_ids: Sequence[int], roles: Sequence[str], seq: int) -> Write:
    """Members who see the timeline after ``seq`` (and have received and read it up to there)."""
    n = len(user_ids)
    return Write("insert_group_members", ([conversation_id] * n, list(user_ids), list(roles), [seq] * n))


# --------------------------------------------------------------------------------------------------------- changes


def create_group(owner: int, name: str, members: list[int], ts: int, max_members: int) -> Txn[GroupChange]:
    """A new group; those named who do not consent to being added by the owner (their ``group_add``) are invited
    instead (GroupChange.invited)."""
    name, everyone = rules.plan_create(owner, name, members, max_members)
    plan = rules.plan_founders(owner, name, everyone, (yield from _consent(owner, everyone)))
    assert plan.event is not None
    # PostgreSQL derives conversation_id from the identity column; SQLite's AUTOINCREMENT id is known only now.
    group_id = int((yield Read("insert_group", (name, owner, ts)))[0][0])
    conversation_id = group_conversation_id(group_id)
    yield Write("name_group_conversation", ([group_id], [conversation_id]))
    yield Write("create_group_conversation", ([conversation_id], [ts]))
    yield _insert_members(conversation_id, plan.added, ["owner" if u == owner else "member" for u in plan.added], 0)
    yield _invite(group_id, plan.invitations, owner, ts)
    notice = yield from messages.append_notice(conversation_id, owner, plan.event, ts)
    group = yield from load_group(group_id)
    return GroupChange(group, notice, added=plan.added, removed=(), invited=plan.invited,
                       invitations=plan.invitations)


def group_action(action: GroupAction) -> Txn[GroupChange]:
    """One change: the conversation row first (see the module's locking note), the rules, the writes, the notice."""
    conversation_id = group_conversation_id(action.group_id)
    locked = yield Read("lock_conversations", ([conversation_id],))
    group = yield from load_group(action.group_id)
    group_id = group.group_id
    actor = yield Read("group_member_roles", (conversation_id, [action.actor]))
    actor_role = rules.acting_role(str(actor[0][1]) if actor else None, group.dissolved)
    kind = action.kind
    added: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()
    event: rules.Event | None

    if kind == "add":
        existing = {int(row[0]) for row in (yield Read("group_member_ids", (conversation_id,)))}
        wanted = [u for u in action.user_ids if u not in existing]
        plan = rules.plan_add(action.actor, actor_role, action.user_ids, existing, action.max_members,
                              (yield from _consent(action.actor, wanted)))
        added, event = plan.added, plan.event
        last_seq = locked[0][1]
        yield _insert_members(conversation_id, added, ["member"] * len(added), last_seq)
        yield _invite(group_id, plan.invitations, action.actor, action.ts)
        if event is None:  # everyone named was invited: nothing changed in the timeline
            return GroupChange(group, None, added=(), removed=(), invited=plan.invited,
                               invitations=plan.invitations)
        notice = yield from messages.append_notice(conversation_id, action.actor, event, action.ts)
        yield Write("bump_members_version", ([group_id],))
        return GroupChange((yield from load_group(group_id)), notice, added=added, removed=(), invited=plan.invited,
                           invitations=plan.invitations)
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
        yield from transfer_writes(group_id, conversation_id, action.actor, target)
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

    # The notice goes in before the removed leave, so that they see it.
    notice = yield from messages.append_notice(conversation_id, action.actor, event, action.ts)
    told: list[tuple[int, MessageRecord]] = []
    if removed:
        yield from remove_members(group_id, conversation_id, removed)
    if kind == "remove":
        # The group's timeline is closed to them from now on: a device offline now learns of the removal from their
        # own timeline, which it syncs. Own timelines locked in id order, after the group's, like every writer.
        told_event = rules.removed_notice(group_id, conversation_id, group.name, action.actor, notice.seq)
        for user_id in sorted(removed, key=own_conversation_id):
            told.append((user_id, (yield from messages.append_own_notice(user_id, action.actor, None, told_event,
                                                                         action.ts))))
    return GroupChange((yield from load_group(group_id)), notice, added=added, removed=removed, told=tuple(told))


def transfer_writes(group_id: int, conversation_id: str, owner: int, target: int) -> Txn[None]:
    """Ownership passes from ``owner`` (who becomes an admin) to ``target`` (unmuted)."""
    yield Write("set_member_roles", ([conversation_id] * 2, [owner, target], ["admin", "owner"]))
    yield Write("set_member_muted", ([conversation_id], [target], [False]))
    yield Write("set_group_owner", ([group_id], [target]))


def remove_members(group_id: int, conversation_id: str, user_ids: Sequence[int]) -> Txn[None]:
    """End memberships (after the notice of it, so that the removed see it) and bump the membership version."""
    yield Write("delete_group_members", ([conversation_id] * len(user_ids), list(user_ids)))
    yield Write("bump_members_version", ([group_id],))


# --------------------------------------------------------------------------------------------------------- invitations


def accept_invitation(user_id: int, group_id: int, ts: int, max_members: int) -> Txn[GroupChange]:
    """Join by an invitation, re-checked now (group_rules.check_invitation), under the group's conversation lock
    like any group change; the ``members_added`` notice names the invitee as ``by`` and the inviter as
    ``invited_by``."""
    conversation_id = group_conversation_id(group_id)
    locked = yield Read("lock_conversations", ([conversation_id],))
    invite = yield Read("group_invite", (user_id, group_id))
    if not invite or not locked:
        raise NotFound("no valid invitation to this group")
    inviter = int(invite[0][0])
    group = yield from load_group(group_id)
    roles = {int(r[0]): str(r[1]) for r in (yield Read("group_member_roles", (conversation_id, [inviter, user_id])))}
    rules.check_invitation(roles.get(inviter), group.dissolved, user_id in roles, group.member_count, max_members)
    yield Write("delete_group_invites", ([user_id], [group_id]))
    yield _insert_members(conversation_id, (user_id,), ("member",), locked[0][1])
    event = {"event": "members_added", "by": user_id, "invited_by": inviter, **rules.listed((user_id,))}
    notice = yield from messages.append_notice(conversation_id, user_id, event, ts)
    yield Write("bump_members_version", ([group_id],))
    return GroupChange((yield from load_group(group_id)), notice, added=(user_id,), removed=())


def decline_invitation(user_id: int, group_id: int) -> Txn[None]:
    if (yield Write("delete_group_invites", ([user_id], [group_id]))) == 0:  # nothing was written
        raise NotFound("no pending invitation to this group")


def list_invitations(user_id: int) -> Txn[list[InvitationRecord]]:
    rows = yield Read("valid_group_invites", (user_id,))
    return [InvitationRecord(int(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]


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

# An invitation is valid while its group is not dissolved, its inviter is still the group's owner or an admin and the
# invitee is not a member (group_rules.check_invitation says the same when one is accepted).
_VALID_INVITES: Final = (
    "SELECT i.group_id, g.name, i.inviter, i.created_at FROM group_invites i"
    " JOIN groups g ON g.group_id = i.group_id AND NOT g.dissolved"
    " JOIN members a ON a.conversation_id = g.conversation_id AND a.user_id = i.inviter"
    " AND a.role IN ('owner', 'admin')"
    " WHERE i.user_id = ?1"
    " AND NOT EXISTS (SELECT 1 FROM members x WHERE x.conversation_id = g.conversation_id AND x.user_id = ?1)"
    " ORDER BY i.group_id"
)

SQLITE: Final[Dialect] = {
    "group_add_consent": Statement(
        "SELECT u.user_id, u.group_add,"
        " EXISTS (SELECT 1 FROM contacts c WHERE c.user_id = u.user_id AND c.peer_id = ?1 AND c.state = 'accepted'),"
        " EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = u.user_id AND b.blocked_id = ?1)"
        " FROM users u WHERE u.user_id IN (SELECT value FROM json_each(?2)) AND u.deleted_at = 0"
    ),
    "insert_group_invites": Statement(
        "INSERT INTO group_invites (user_id, group_id, inviter, created_at) VALUES (?1, ?2, ?3, ?4)"
        " ON CONFLICT DO NOTHING"
    ),
    "group_invite": Statement("SELECT inviter FROM group_invites WHERE user_id = ?1 AND group_id = ?2"),
    "delete_group_invites": Statement("DELETE FROM group_invites WHERE user_id = ?1 AND group_id = ?2"),
    "valid_group_invites": Statement(_VALID_INVITES),
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
    "group_add_consent": Statement(
        "SELECT u.user_id, u.group_add,"
        " EXISTS (SELECT 1 FROM contacts c WHERE c.user_id = u.user_id AND c.peer_id = $1 AND c.state = 'accepted'),"
        " EXISTS (SELECT 1 FROM blocks b WHERE b.user_id = u.user_id AND b.blocked_id = $1)"
        " FROM users u WHERE u.user_id = ANY($2::bigint[]) AND u.deleted_at = 0"
    ),
    "insert_group_invites": Statement(
        "INSERT INTO group_invites (user_id, group_id, inviter, created_at)"
        " SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) ON CONFLICT DO NOTHING"
    ),
    "group_invite": Statement("SELECT inviter FROM group_invites WHERE user_id = $1 AND group_id = $2"),
    "delete_group_invites": Statement(
        "DELETE FROM group_invites i USING unnest($1::bigint[], $2::bigint[]) AS k(user_id, group_id)"
        " WHERE i.user_id = k.user_id AND i.group_id = k.group_id"
    ),
    "valid_group_invites": Statement(_VALID_INVITES.replace("?1", "$1")),
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
