"""Reactions, replies, threads and mentions: their transactions, written once for both dialects
(docs/protocol.md section 28; the rules are :mod:`pica.store.reaction_rules`).

A reaction is an event like an edit (:func:`append_reaction`): the target's body changes in place and an event
message is appended, both in one transaction under the conversation's lock. A reply, a thread message or a message
with mentions is a client message appended by :func:`pica.store.messages.append_batch`, inside a transaction that
first reads what it names under the same lock (:func:`append_linked`): the quote is the truth of the quoted message
as committed, and a recall either sees the reply (and rewrites its quote, :mod:`pica.store.links`) or comes after.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final

import msgspec

from pica.errors import ConversationNotFound, MessageNotFound, PicaError
from pica.protocol.ids import direct_peer, group_id_of
from pica.store import messages
from pica.store import reaction_rules as rules
from pica.store.append_rules import GroupSender, check_group
from pica.store.base import (
    AppendResult,
    LinkedAppend,
    MessageRecord,
    Page,
    ReactionAppend,
    ThreadSummary,
)
from pica.store.job_rules import Event, created
from pica.store.txn import Dialect, Read, Statement, Txn, Write

_json_encode: Final = msgspec.json.Encoder().encode


def _duplicate(sender: int, client_msg_id: str) -> Txn[tuple[AppendResult, MessageRecord] | None]:
    rows = yield Read("find_original_message", (sender, client_msg_id))
    if not rows:
        return None
    record = messages.message_row(rows[0])
    return AppendResult(record.conversation_id, record.seq, record.ts, duplicate=True), record


def _member(conversation_id: str, user_id: int,
            missing: PicaError | None = None) -> Txn[tuple[int, GroupSender | None, int]]:
    """(joined_seq, the group row as a sender sees it or None for a 1:1, the group's member count); a non-member gets
    ``missing`` (default: not found)."""
    rows = yield Read("annotation_member", (conversation_id, user_id))
    if not rows:
        raise missing or ConversationNotFound()
    joined, dissolved, role, muted, muted_all, version, members = rows[0]
    if group_id_of(conversation_id) is None:
        return joined, None, 0
    return joined, GroupSender(role, bool(muted), bool(muted_all), bool(dissolved), version), members


def _may_speak(conversation_id: str, user_id: int, group: GroupSender | None) -> Txn[None]:
    """A reaction speaks like a message: a muted member cannot react, nor reach a 1:1 peer who blocked them."""
    refusal: PicaError | None
    if group is not None:
        refusal = check_group(group)
    else:
        peer = direct_peer(conversation_id, user_id)
        refusal = None if peer is None else (yield from messages.direct_refusal(user_id, peer))
    if refusal is not None:
        raise refusal


# --------------------------------------------------------------------------------------------------------- reactions


def append_reaction(request: ReactionAppend) -> Txn[tuple[AppendResult, MessageRecord]]:
    conversation_id = request.conversation_id
    yield Read("lock_conversations", ([conversation_id],))
    joined, group, _ = yield from _member(conversation_id, request.user_id)
    existing = yield from _duplicate(request.user_id, request.client_msg_id)
    if existing is not None:
        return existing
    yield from _may_speak(conversation_id, request.user_id, group)
    target = yield from messages.event_target(conversation_id, request.target_seq)
    body, event = rules.plan_reaction(request, joined_seq=joined, target=target)
    yield Write("replace_bodies", ([conversation_id], [request.target_seq], [_json_encode(body)]))
    record = yield from messages.append_server_body(conversation_id, request.user_id, request.client_msg_id,
                                                    request.ts, event)
    return AppendResult(conversation_id, record.seq, record.ts, duplicate=False), record


# --------------------------------------------------------------------------------------------------------- linked


def append_linked(request: LinkedAppend, search_value: Callable[[str], Any]
                  ) -> Txn[tuple[AppendResult, MessageRecord]]:
    message = request.message
    conversation_id = message.conversation_id
    sender = message.sender
    existing = yield from _duplicate(sender, message.client_msg_id)
    if existing is not None:
        return existing
    yield Read("lock_conversations", ([conversation_id],))
    body = dict(request.body)
    group = group_id_of(conversation_id) is not None
    joined, role, members = 0, "member", 0
    if group or request.reply_seq:
        # A group's non-member gets the answer of any send to it (group ids cannot be probed); in a 1:1 that does not
        # exist yet there is no message to quote.
        missing = check_group(None) if group else MessageNotFound()
        joined, sender_row, members = yield from _member(conversation_id, sender, missing)
        role = sender_row.role if sender_row is not None else "member"
    root = None
    if request.reply_seq:
        target = yield from messages.event_target(conversation_id, request.reply_seq)
        body["reply"] = rules.quote_of(target, request.reply_seq, joined, request.quote_chars)
    if request.thread_root:
        found = yield from messages.event_target(conversation_id, request.thread_root)
        root = rules.check_thread_root(found, request.thread_root, joined, group=group)
        body["thread"] = {"root": request.thread_root}
    if request.mention_all:
        rules.check_mention_all(group=group, role=role, members=members, limit=request.mention_all_members)
    stored = dataclasses.replace(message, body_json=_json_encode(body))
    outcome = (yield from messages.append_batch([stored], [search_value(message.search_text)]))[0]
    if isinstance(outcome, PicaError):
        raise outcome
    seq, ts = outcome.seq, outcome.ts
    if outcome.duplicate:  # committed meanwhile by another node: the original stands, nothing to link
        original = yield from _duplicate(sender, message.client_msg_id)
        return original or (outcome, _record(stored, seq, ts, body))
    if request.reply_seq:
        yield Write("insert_replies", ([conversation_id], [request.reply_seq], [seq]))
    if root is not None:
        yield Write("insert_thread_messages", ([conversation_id], [request.thread_root], [seq], [sender]))
        yield Write("replace_bodies", ([conversation_id], [request.thread_root],
                                       [_json_encode(rules.thread_info(root.body, seq, ts))]))
        # The root's author has read the thread up to its root, the writer up to their message: one row per user (a
        # statement may not upsert one row twice).
        joining = sorted({root.sender: request.thread_root, sender: seq}.items())
        yield Write("join_threads", ([conversation_id] * len(joining), [request.thread_root] * len(joining),
                                     [u for u, _ in joining], [s for _, s in joining]))
    named = sorted({*request.mentions, *((0,) if request.mention_all else ())} - {sender})
    if named:
        yield Write("insert_mentions", ([conversation_id] * len(named), [seq] * len(named), named,
                                        [sender] * len(named)))
    return outcome, _record(stored, seq, ts, body)


def _record(message: Any, seq: int, ts: int, body: dict[str, Any]) -> MessageRecord:
    return MessageRecord(message.conversation_id, seq, message.sender, message.client_msg_id, ts, body)


def linked_events(message: Any, outcome: tuple[AppendResult, MessageRecord]) -> list[Event]:
    """``message.created`` (and its push job) for the stored message, with the body as stored."""
    result, record = outcome
    return created([dataclasses.replace(message, body_json=_json_encode(record.body))], [result])


# --------------------------------------------------------------------------------------------------------- reads


def thread_messages(user_id: int, conversation_id: str, root_seq: int, after: int, limit: int) -> Txn[Page]:
    rows = yield Read("member_range", (conversation_id, user_id))
    if not rows:
        raise ConversationNotFound()
    floor = max(rows[0][0], after)
    found = yield Read("thread_page", (user_id, conversation_id, root_seq, floor, limit + 1))
    return Page([messages.message_row(r) for r in found[:limit]], len(found) > limit)


def threads(user_id: int, conversation_id: str, limit: int) -> Txn[list[ThreadSummary]]:
    if not (yield Read("member_range", (conversation_id, user_id))):
        raise ConversationNotFound()
    rows = yield Read("thread_list", (conversation_id, user_id, limit))
    return [ThreadSummary(int(r[0]), int(r[2]), int(r[3]), int(r[1]), int(r[4])) for r in rows]


def mark_thread_read(user_id: int, conversation_id: str, root_seq: int, seq: int) -> Txn[None]:
    rows = yield Read("member_range", (conversation_id, user_id))
    if not rows:
        raise ConversationNotFound()
    yield Write("advance_thread_read", ([conversation_id], [root_seq], [user_id], [min(seq, rows[0][1])]))


def thread_participants(conversation_id: str, root_seq: int) -> Txn[frozenset[int]]:
    rows = yield Read("thread_participants", (conversation_id, root_seq))
    return frozenset(int(r[0]) for r in rows)


def unread_mentions(user_id: int, conversation_ids: list[str]) -> Txn[dict[str, int]]:
    if not conversation_ids:
        return {}
    return {r[0]: int(r[1]) for r in (yield Read("unread_mentions", (user_id, conversation_ids)))}


# --------------------------------------------------------------------------------------------------------- SQL

_MEMBER: Final = (
    "SELECT m.joined_seq, g.dissolved, m.role, m.muted, g.muted_all, g.members_version,"
    " (SELECT count(*) FROM members n WHERE n.conversation_id = m.conversation_id)"
    " FROM members m LEFT JOIN groups g ON g.conversation_id = m.conversation_id"
    " WHERE m.conversation_id = {c} AND m.user_id = {u}"
)
_THREAD_PAGE: Final = (
    "SELECT {cols} FROM thread_messages t JOIN messages m ON m.conversation_id = t.conversation_id AND m.seq = t.seq"
    " WHERE t.conversation_id = {c} AND t.root_seq = {r} AND t.seq > {a} ORDER BY t.seq LIMIT {n}"
)
_THREAD_LIST: Final = (
    "SELECT tm.root_seq, tm.read_seq, count(*), max(t.seq),"
    " sum(CASE WHEN t.seq > tm.read_seq AND t.sender <> tm.user_id THEN 1 ELSE 0 END)"
    " FROM thread_members tm JOIN thread_messages t ON t.conversation_id = tm.conversation_id"
    " AND t.root_seq = tm.root_seq WHERE tm.conversation_id = {c} AND tm.user_id = {u}"
    " GROUP BY tm.root_seq, tm.read_seq ORDER BY max(t.seq) DESC LIMIT {n}"
)
_UNREAD_MENTIONS: Final = (
    " JOIN members m ON m.conversation_id = {j} AND m.user_id = {u}"
    " JOIN mentions x ON x.conversation_id = m.conversation_id AND x.seq > m.read_seq AND x.seq > m.joined_seq"
    " AND x.user_id IN ({u}, 0) AND x.sender <> {u} GROUP BY x.conversation_id"
)
_PARTICIPANTS: Final = "SELECT user_id FROM thread_members WHERE conversation_id = {c} AND root_seq = {r}"

SQLITE: Final[Dialect] = {
    "annotation_member": Statement(_MEMBER.format(c="?1", u="?2")),
    "insert_replies": Statement("INSERT INTO replies (conversation_id, target_seq, seq) VALUES (?1, ?2, ?3)"
                                " ON CONFLICT DO NOTHING"),
    "insert_thread_messages": Statement(
        "INSERT INTO thread_messages (conversation_id, root_seq, seq, sender) VALUES (?1, ?2, ?3, ?4)"
        " ON CONFLICT DO NOTHING"),
    "join_threads": Statement(
        "INSERT INTO thread_members (conversation_id, root_seq, user_id, read_seq) VALUES (?1, ?2, ?3, ?4)"
        " ON CONFLICT DO UPDATE SET read_seq = max(read_seq, excluded.read_seq)"),
    "insert_mentions": Statement("INSERT INTO mentions (conversation_id, seq, user_id, sender) VALUES (?1, ?2, ?3, ?4)"
                                 " ON CONFLICT DO NOTHING"),
    "advance_thread_read": Statement(
        "UPDATE thread_members SET read_seq = ?4 WHERE conversation_id = ?1 AND root_seq = ?2 AND user_id = ?3"
        " AND read_seq < ?4"),
    "thread_page": Statement(_THREAD_PAGE.format(cols=messages.visible_columns("?1"), c="?2", r="?3", a="?4",
                                                 n="?5")),
    "thread_list": Statement(_THREAD_LIST.format(c="?1", u="?2", n="?3")),
    "thread_participants": Statement(_PARTICIPANTS.format(c="?1", r="?2")),
    "unread_mentions": Statement("SELECT x.conversation_id, count(*) FROM json_each(?2) j"
                                 + _UNREAD_MENTIONS.format(j="j.value", u="?1")),
}

POSTGRES: Final[Dialect] = {
    "annotation_member": Statement(_MEMBER.format(c="$1", u="$2")),
    "insert_replies": Statement(
        "INSERT INTO replies (conversation_id, target_seq, seq)"
        " SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) ON CONFLICT DO NOTHING"),
    "insert_thread_messages": Statement(
        "INSERT INTO thread_messages (conversation_id, root_seq, seq, sender)"
        " SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) ON CONFLICT DO NOTHING"),
    "join_threads": Statement(
        "INSERT INTO thread_members (conversation_id, root_seq, user_id, read_seq)"
        " SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])"
        " ON CONFLICT (conversation_id, root_seq, user_id)"
        " DO UPDATE SET read_seq = greatest(thread_members.read_seq, excluded.read_seq)"),
    "insert_mentions": Statement(
        "INSERT INTO mentions (conversation_id, seq, user_id, sender)"
        " SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) ON CONFLICT DO NOTHING"),
    "advance_thread_read": Statement(
        "UPDATE thread_members t SET read_seq = k.seq"
        " FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS k(c, r, u, seq)"
        " WHERE t.conversation_id = k.c AND t.root_seq = k.r AND t.user_id = k.u AND t.read_seq < k.seq"),
    "thread_page": Statement(_THREAD_PAGE.format(cols=messages.visible_columns("$1"), c="$2", r="$3", a="$4",
                                                 n="$5")),
    "thread_list": Statement(_THREAD_LIST.format(c="$1", u="$2", n="$3")),
    "thread_participants": Statement(_PARTICIPANTS.format(c="$1", r="$2")),
    "unread_mentions": Statement("SELECT x.conversation_id, count(*) FROM unnest($2::text[]) AS j(c)"
                                 + _UNREAD_MENTIONS.format(j="j.c", u="$1")),
}
