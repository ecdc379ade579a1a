"""Account lifecycle: deleting an account, reading what a data export needs, finding recent deletions. Transactions
written once for both dialects (see :mod:`pica.store.txn`), each statement's text for SQLite and PostgreSQL side by
side.

The deletion policy (docs/protocol.md, "Deleting an account"): the user row stays as a tombstone, so that the id in
other people's timelines still resolves, to "a deleted user"; what is personal goes (username, password hash,
settings, contacts, blocks both ways, hidden-message marks, cursors, invitations, the user's own ``u:`` timeline);
messages the user sent stay where they were sent; every group is left through the group rules, each change with its
notice, as if the user had acted.
"""

from __future__ import annotations

from typing import Final

from pica.errors import UserNotFound
from pica.store import group_rules as rules
from pica.store import groups, messages, sessions
from pica.store.base import GroupChange, MessageRecord
from pica.store.txn import Dialect, Read, Statement, Txn, Write

DELETED_NAME_PREFIX: Final = "~deleted:"
"""The username a tombstone keeps (the column is unique and required): a name the username rules can never produce,
so the deleted user's name is free for anyone to register, and this one can be neither registered nor logged in
with. Reads show a deleted user's name as empty (social.user_row)."""


def delete_account(user_id: int, ts: int) -> Txn[list[GroupChange]]:
    """One transaction. Everything that can refuse (the user must exist and not be deleted already) is read before
    the first write, as the SQLite writer requires; the group rules applied below cannot refuse a member leaving on
    their own behalf."""
    if not (yield Read("live_user", (user_id,))):
        raise UserNotFound(f"user {user_id} does not exist")
    memberships = yield Read("group_memberships", (user_id,))
    conversations = sorted(str(r[1]) for r in memberships)
    changes: list[GroupChange] = []
    if conversations:
        # The same lock every append and group change of these groups takes, in one global order (no deadlock).
        yield Read("lock_conversations", (conversations,))
        everyone = yield Read("members_of_conversations", (conversations,))
        for group_id, conversation_id, role, dissolved in memberships:
            others = {int(r[1]): (str(r[2]), int(r[3])) for r in everyone if r[0] == conversation_id
                      and int(r[1]) != user_id}
            changes += yield from _leave_group(user_id, int(group_id), str(conversation_id), str(role),
                                               bool(dissolved), others, ts)
    yield from sessions.revoke_user_sessions(user_id, ts, "account_deleted", None)  # every node closes its sockets
    own = f"u:{user_id}"
    yield Write("delete_own_messages", ([own],))
    yield Write("delete_own_conversation", ([own],))
    for statement in ("delete_user_memberships", "delete_user_contacts", "delete_user_blocks",
                      "delete_user_hidden", "delete_user_invites"):
        yield Write(statement, ([user_id],))
    yield Write("tombstone_user", ([user_id], [f"{DELETED_NAME_PREFIX}{user_id}"], [ts]))
    return changes


def _leave_group(user_id: int, group_id: int, conversation_id: str, role: str, dissolved: bool,
                 others: dict[int, tuple[str, int]], ts: int) -> Txn[list[GroupChange]]:
    """The deleted user leaves one group: an owner first hands it to ``group_rules.successor`` (``owner_changed``)
    or, alone, dissolves it (``dissolved``); then ``member_left``. A dissolved group is read-only (no notice may be
    appended), so the membership just ends there."""
    notices: list[tuple[MessageRecord, tuple[int, ...]]] = []
    if dissolved:
        yield from groups.remove_members(group_id, conversation_id, (user_id,))
        return []
    if role == "owner":
        heir = rules.successor(others)
        if heir is None:
            yield Write("dissolve_group", ([group_id],))
            event = rules.plan_dissolve(user_id, role)
            notices.append(((yield from messages.append_notice(conversation_id, user_id, event, ts)), (user_id,)))
            yield from groups.remove_members(group_id, conversation_id, (user_id,))
            group = yield from groups.load_group(group_id)
            return [GroupChange(group, notice, (), removed) for notice, removed in notices]
        yield from groups.transfer_writes(group_id, conversation_id, user_id, heir)
        event = rules.plan_transfer(user_id, heir)
        notices.append(((yield from messages.append_notice(conversation_id, user_id, event, ts)), ()))
        role = "admin"
    removed, event = rules.plan_leave("leave", user_id, role, {user_id: role})
    notices.append(((yield from messages.append_notice(conversation_id, user_id, event, ts)), removed))
    yield from groups.remove_members(group_id, conversation_id, removed)
    group = yield from groups.load_group(group_id)
    return [GroupChange(group, notice, (), removed) for notice, removed in notices]


def sent_messages(user_id: int, after_client_msg_id: str, limit: int) -> Txn[list[MessageRecord]]:
    rows = yield Read("sent_messages", (user_id, after_client_msg_id, limit))
    return [messages.message_row(row) for row in rows]


# --------------------------------------------------------------------------------------------------------- SQL


def _sqlite_deletes() -> dict[str, Statement]:
    return {
        "delete_own_messages": Statement("DELETE FROM messages WHERE conversation_id = ?1"),
        "delete_own_conversation": Statement("DELETE FROM conversations WHERE conversation_id = ?1"),
        "delete_user_memberships": Statement("DELETE FROM members WHERE user_id = ?1"),
        "delete_user_contacts": Statement("DELETE FROM contacts WHERE user_id = ?1 OR peer_id = ?1"),
        "delete_user_blocks": Statement("DELETE FROM blocks WHERE user_id = ?1 OR blocked_id = ?1"),
        "delete_user_hidden": Statement("DELETE FROM hidden WHERE user_id = ?1"),
        "delete_user_invites": Statement("DELETE FROM group_invites WHERE user_id = ?1 OR inviter = ?1"),
    }


def _postgres_deletes() -> dict[str, Statement]:
    """The SQLite text with the key bound as an array (a write step takes columns)."""
    result = {}
    for name, statement in _sqlite_deletes().items():
        assert statement.sql is not None
        array = "$1::text[]" if "conversation_id" in statement.sql else "$1::bigint[]"
        result[name] = Statement(statement.sql.replace("= ?1", f"= ANY({array})"))
    return result


_USER_MEMBERSHIPS: Final = (
    "SELECT g.group_id, g.conversation_id, m.role, g.dissolved FROM members m"
    " JOIN groups g ON g.conversation_id = m.conversation_id WHERE m.user_id = ?1 ORDER BY g.conversation_id"
)
_SENT: Final = (
    "SELECT conversation_id, seq, sender, client_msg_id, ts, body FROM messages"
    " WHERE sender = ?1 AND client_msg_id > ?2 ORDER BY client_msg_id LIMIT ?3"
)
_TOMBSTONE: Final = (
    "username = {name}, password_hash = '', only_contacts = {false}, last_seen = 0, group_add = 'everyone',"
    " presence = 'everyone', deleted_at = {ts}"
)


def _rows(sql: str) -> str:
    return sql.replace("?", "$")


SQLITE: Final[Dialect] = {
    "live_user": Statement("SELECT 1 FROM users WHERE user_id = ?1 AND deleted_at = 0"),
    "group_memberships": Statement(_USER_MEMBERSHIPS),
    "members_of_conversations": Statement(
        "SELECT conversation_id, user_id, role, joined_seq FROM members"
        " WHERE conversation_id IN (SELECT value FROM json_each(?1))"
    ),
    **_sqlite_deletes(),
    "tombstone_user": Statement(
        f"UPDATE users SET {_TOMBSTONE.format(name='?2', false='0', ts='?3')} WHERE user_id = ?1"
    ),
    "sent_messages": Statement(_SENT),
}

POSTGRES: Final[Dialect] = {
    "live_user": Statement(_rows(SQLITE["live_user"].sql or "")),
    "group_memberships": Statement(_rows(_USER_MEMBERSHIPS)),
    "members_of_conversations": Statement(
        "SELECT conversation_id, user_id, role, joined_seq FROM members WHERE conversation_id = ANY($1::text[])"
    ),
    **_postgres_deletes(),
    "tombstone_user": Statement(
        f"UPDATE users u SET {_TOMBSTONE.format(name='k.name', false='false', ts='k.ts')}"
        " FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS k(user_id, name, ts) WHERE u.user_id = k.user_id"
    ),
    "sent_messages": Statement(_rows(_SENT)),
}
