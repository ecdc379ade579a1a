"""Administration: the admin role, the audit log, users' reports of messages, moderation and the server's counts.
Transactions written once for both dialects (see :mod:`pica.store.txn`), each statement's text for SQLite and
PostgreSQL side by side.

Every administrative write is an existing transaction (a ban, a password reset, an account deletion, a group
action, a recall) run through :func:`audited`, which appends the audit row in the same transaction: an action
without its row, or a row without its action, cannot be committed. Refusals come from the wrapped transaction,
before its first write, so a refused action leaves no row either (the API logs it instead).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import msgspec

from pica.errors import Conflict, MessageNotFound, NotFound, UserNotFound
from pica.store import groups, messages, sessions, social
from pica.store.base import (
    AdminStats,
    AdminUser,
    AppendResult,
    AuditEntry,
    AuditRecord,
    EventAppend,
    GroupChange,
    GroupRecord,
    MemberRecord,
    MessageRecord,
    ReportRecord,
)
from pica.store.event_rules import plan_event
from pica.store.txn import Dialect, Read, Statement, Txn, Write

T = TypeVar("T")

_encode: Final = msgspec.json.Encoder().encode
_decode: Final = msgspec.json.Decoder(dict[str, Any]).decode

MODERATION_ID_PREFIX: Final = "~m:"
"""The server-made ``client_msg_id`` of a moderated recall's event, ``~m:<conversation_id>:<seq>``."""


def audited(make: Callable[[], Txn[T]], entry: AuditEntry) -> Txn[T]:
    """``make``'s transaction, then its audit row."""
    result = yield from make()
    yield _audit_row(entry)
    return result


def _audit_row(entry: AuditEntry) -> Write:
    return Write("insert_audit", ([entry.ts], [entry.actor_id], [entry.actor], [entry.action], [entry.target],
                                  [_encode(entry.details).decode()], [entry.address]))


# ---------------------------------------------------------------------------------------------------------- users


def is_admin(user_id: int) -> Txn[bool]:
    rows = yield Read("user_is_admin", (user_id,))
    return bool(rows and rows[0][0])


def admin_users(limit: int, after_id: int, query: str, banned: bool | None) -> Txn[list[AdminUser]]:
    # LIKE's own wildcards in the query are matched literally (ESCAPE '\'): a search for "a_b" is not a pattern.
    pattern = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    wanted = -1 if banned is None else int(banned)
    rows = yield Read("admin_users", (after_id, pattern, wanted, limit))
    return [AdminUser(social.user_row(row), bool(row[6])) for row in rows]


def create_user(username: str, password_hash: str, admin: bool, entry: AuditEntry) -> Txn[int]:
    """A new account; its audit row names it by the id the insert gave it."""
    user_id = yield from social.create_user(username, password_hash, entry.ts)
    if admin:
        yield Write("set_admin", ([user_id], [True]))
    yield _audit_row(dataclasses.replace(entry, target=f"user:{user_id}"))
    return user_id


def set_flag(user_id: int, flag: str, value: bool) -> Txn[None]:
    if flag == "banned":
        yield from social.set_banned(user_id, value)
        return
    changed = yield Write("set_admin", ([user_id], [value]))
    if changed == 0:
        raise UserNotFound(f"user {user_id} does not exist")


def end_sessions(user_id: int, session_id: str | None, now_ms: int) -> Txn[int]:
    if session_id is None:
        return (yield from sessions.revoke_user_sessions(user_id, now_ms, "revoked_by_admin", None))
    if not (yield from sessions.revoke_session(user_id, session_id, now_ms, "revoked_by_admin")):
        raise NotFound("no such live session")
    return 1


# ---------------------------------------------------------------------------------------------------------- groups


def create_group(owner: int, name: str, members: list[int], max_members: int, entry: AuditEntry
                 ) -> Txn[GroupChange]:
    """A group made for its owner (``pica group create``); its audit row names it by its new id."""
    change = yield from groups.create_group(owner, name, members, entry.ts, max_members)
    yield _audit_row(dataclasses.replace(entry, target=f"group:{change.group.group_id}"))
    return change


def group_with_members(group_id: int) -> Txn[tuple[GroupRecord, list[MemberRecord]]]:
    """Run with ``snapshot``: the group and its member rows at one point in time."""
    group = yield from groups.load_group(group_id)
    rows = yield Read("group_member_list", (group.conversation_id,))
    return group, [MemberRecord(r[0], r[1], bool(r[2]), r[3], r[4], r[5], r[6]) for r in rows]


# ---------------------------------------------------------------------------------------------------------- messages


def moderate(request: EventAppend, search_value: Any) -> Txn[tuple[AppendResult, MessageRecord]]:
    """Remove a message for everyone: the recall rule (:func:`pica.store.event_rules.plan_event`) for a moderated
    request, whose author is read here; the event is the author's, with a server-made id."""
    conversation_id = request.conversation_id
    yield Read("lock_conversations", ([conversation_id],))
    target = yield from messages.event_target(conversation_id, request.target_seq)
    if target is None:
        raise MessageNotFound()
    request = dataclasses.replace(request, user_id=target.sender, moderated=True,
                                  client_msg_id=f"{MODERATION_ID_PREFIX}{conversation_id}:{request.target_seq}")
    plan = plan_event(request, joined_seq=0, dissolved=False, target=target)
    record = yield from messages.apply_event(request, plan, search_value)
    return AppendResult(conversation_id, record.seq, request.ts, duplicate=False), record


def message_author(conversation_id: str, seq: int) -> Txn[int | None]:
    rows = yield Read("message_for_event", (conversation_id, seq))
    return int(rows[0][0]) if rows else None


# ---------------------------------------------------------------------------------------------------------- reports


def _report(row: Sequence[Any]) -> ReportRecord:
    return ReportRecord(int(row[0]), int(row[1]), str(row[2]), int(row[3]), int(row[4]), _decode(row[5]),
                        str(row[6]), str(row[7]), str(row[8]), int(row[9]), int(row[10]), int(row[11]))


def create_report(reporter: int, message: MessageRecord, reason: str, ts: int) -> Txn[ReportRecord]:
    """The insert answers the new row (RETURNING), none when this reporter reported this message already: then the
    first report is the answer, and nothing was written."""
    rows = yield Read("insert_report", (reporter, message.conversation_id, message.seq, message.sender,
                                        _encode(message.body).decode(), reason, ts))
    if not rows:
        rows = yield Read("report_of", (reporter, message.conversation_id, message.seq))
    return _report(rows[0])


def list_reports(state: str | None, limit: int, after_id: int) -> Txn[list[ReportRecord]]:
    rows = yield Read("list_reports", (after_id, state or "", limit))
    return [_report(row) for row in rows]


def resolve_report(report_id: int, action: str, resolver: int, ts: int) -> Txn[ReportRecord]:
    rows = yield Read("report_by_id", (report_id,))
    if not rows:
        raise NotFound(f"no report {report_id}")
    if rows[0][7] != "open":
        raise Conflict(f"report {report_id} is resolved already")
    yield Write("resolve_report", ([report_id], [action], [resolver], [ts]))
    return dataclasses.replace(_report(rows[0]), state="resolved", action=action, resolved_by=resolver,
                               resolved_at=ts)


# ---------------------------------------------------------------------------------------------------- audit, stats


def list_audit(limit: int, before_id: int | None) -> Txn[list[AuditRecord]]:
    rows = yield Read("list_audit", (before_id if before_id is not None else 2**62, limit))
    return [AuditRecord(int(r[0]), AuditEntry(int(r[2]), str(r[3]), str(r[4]), str(r[5]), _decode(r[6]), str(r[7]),
                                              int(r[1]))) for r in rows]


def stats(now_ms: int) -> Txn[AdminStats]:
    users = (yield Read("user_counts", ()))[0]
    groups_row = (yield Read("group_counts", ()))[0]
    conversations = (yield Read("conversation_counts", ()))[0]
    reports = (yield Read("open_report_count", ()))[0]
    live = (yield Read("live_session_count", (now_ms,)))[0]
    return AdminStats(int(users[0] or 0), int(users[1] or 0), int(users[2] or 0), int(users[3] or 0),
                      int(groups_row[0] or 0), int(groups_row[1] or 0), int(conversations[0] or 0),
                      int(conversations[1] or 0), int(reports[0] or 0), int(live[0] or 0))


# ---------------------------------------------------------------------------------------------------------- SQL

_REPORT_COLUMNS: Final = ("report_id, reporter, conversation_id, seq, sender, body, reason, state, action, resolved_by,"
                          " resolved_at, created_at")
_ADMIN_USER_COLUMNS: Final = "user_id, username, password_hash, created_at, banned, deleted_at, admin"

SQLITE: Final[Dialect] = {
    "insert_audit": Statement(
        "INSERT INTO audit_log (ts, actor_id, actor, action, target, details, address) VALUES (?, ?, ?, ?, ?, ?, ?)"
    ),
    "user_is_admin": Statement("SELECT admin FROM users WHERE user_id = ?1 AND deleted_at = 0"),
    "admin_users": Statement(
        f"SELECT {_ADMIN_USER_COLUMNS} FROM users WHERE user_id > ?1 AND deleted_at = 0"
        " AND lower(username) LIKE ?2 ESCAPE '\\' AND (?3 = -1 OR banned = ?3) ORDER BY user_id LIMIT ?4"
    ),
    "set_admin": Statement("UPDATE users SET admin = ?2 WHERE user_id = ?1 AND deleted_at = 0"),
    "insert_report": Statement(
        "INSERT INTO reports (reporter, conversation_id, seq, sender, body, reason, created_at)"
        f" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING RETURNING {_REPORT_COLUMNS}"
    ),
    "report_of": Statement(
        f"SELECT {_REPORT_COLUMNS} FROM reports WHERE reporter = ?1 AND conversation_id = ?2 AND seq = ?3"
    ),
    "report_by_id": Statement(f"SELECT {_REPORT_COLUMNS} FROM reports WHERE report_id = ?1"),
    "list_reports": Statement(
        f"SELECT {_REPORT_COLUMNS} FROM reports WHERE report_id > ?1 AND (?2 = '' OR state = ?2)"
        " ORDER BY report_id LIMIT ?3"
    ),
    "resolve_report": Statement(
        "UPDATE reports SET state = 'resolved', action = ?2, resolved_by = ?3, resolved_at = ?4 WHERE report_id = ?1"
    ),
    "list_audit": Statement(
        "SELECT audit_id, ts, actor_id, actor, action, target, details, address FROM audit_log WHERE audit_id < ?1"
        " ORDER BY audit_id DESC LIMIT ?2"
    ),
    "user_counts": Statement(
        "SELECT sum(deleted_at = 0), sum(banned = 1 AND deleted_at = 0), sum(deleted_at <> 0),"
        " sum(admin = 1 AND deleted_at = 0) FROM users"
    ),
    "group_counts": Statement("SELECT count(*), sum(dissolved = 1) FROM groups"),
    "conversation_counts": Statement("SELECT count(*), sum(last_seq) FROM conversations"),
    "open_report_count": Statement("SELECT count(*) FROM reports WHERE state = 'open'"),
    "live_session_count": Statement("SELECT count(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > ?1"),
}

POSTGRES: Final[Dialect] = {
    "insert_audit": Statement(
        "INSERT INTO audit_log (ts, actor_id, actor, action, target, details, address)"
        " SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])"
    ),
    "user_is_admin": Statement("SELECT admin FROM users WHERE user_id = $1 AND deleted_at = 0"),
    "admin_users": Statement(
        f"SELECT {_ADMIN_USER_COLUMNS} FROM users WHERE user_id > $1 AND deleted_at = 0"
        " AND lower(username) LIKE $2 ESCAPE '\\' AND ($3::int = -1 OR banned = ($3::int = 1))"
        " ORDER BY user_id LIMIT $4"
    ),
    "set_admin": Statement(
        "UPDATE users u SET admin = k.admin FROM unnest($1::bigint[], $2::boolean[]) AS k(user_id, admin)"
        " WHERE u.user_id = k.user_id AND u.deleted_at = 0"
    ),
    "insert_report": Statement(
        "INSERT INTO reports (reporter, conversation_id, seq, sender, body, reason, created_at)"
        f" VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING {_REPORT_COLUMNS}"
    ),
    "report_of": Statement(
        f"SELECT {_REPORT_COLUMNS} FROM reports WHERE reporter = $1 AND conversation_id = $2 AND seq = $3"
    ),
    # FOR UPDATE: two administrators resolving one report at once are serialised; the second sees it resolved.
    "report_by_id": Statement(f"SELECT {_REPORT_COLUMNS} FROM reports WHERE report_id = $1 FOR UPDATE"),
    "list_reports": Statement(
        f"SELECT {_REPORT_COLUMNS} FROM reports WHERE report_id > $1 AND ($2 = '' OR state = $2)"
        " ORDER BY report_id LIMIT $3"
    ),
    "resolve_report": Statement(
        "UPDATE reports r SET state = 'resolved', action = k.action, resolved_by = k.resolver, resolved_at = k.ts"
        " FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[]) AS k(report_id, action, resolver, ts)"
        " WHERE r.report_id = k.report_id"
    ),
    "list_audit": Statement(
        "SELECT audit_id, ts, actor_id, actor, action, target, details, address FROM audit_log WHERE audit_id < $1"
        " ORDER BY audit_id DESC LIMIT $2"
    ),
    "user_counts": Statement(
        "SELECT count(*) FILTER (WHERE deleted_at = 0), count(*) FILTER (WHERE banned AND deleted_at = 0),"
        " count(*) FILTER (WHERE deleted_at <> 0), count(*) FILTER (WHERE admin AND deleted_at = 0) FROM users"
    ),
    "group_counts": Statement("SELECT count(*), count(*) FILTER (WHERE dissolved) FROM groups"),
    "conversation_counts": Statement("SELECT count(*), coalesce(sum(last_seq), 0) FROM conversations"),
    "open_report_count": Statement("SELECT count(*) FROM reports WHERE state = 'open'"),
    "live_session_count": Statement("SELECT count(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > $1"),
}
