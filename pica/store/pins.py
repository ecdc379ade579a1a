"""Pins, drafts and per-conversation settings, written once for both dialects (see :mod:`pica.store.txn`).

A pin is conversation state every member shares: its change appends a notice to the timeline (under the
conversation's row lock, like every timeline write), so members learn it live or by sync. A draft and the list
settings (pin to top, archive, mark unread) are one user's own: a row per user and conversation, read with the
conversation list; their devices learn changes from a ``conversation`` frame (pica/core/prefs.py), not the timeline,
since a draft saved every few seconds would otherwise fill it.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from pica.errors import ConversationNotFound, Forbidden, MessageNotFound, TooManyPins
from pica.protocol.forwards import refusal_of
from pica.store.base import ConversationPrefs, MessageRecord, PinChange, PinRecord, PrefsChange
from pica.store.group_rules import RANK
from pica.store.messages import append_notice
from pica.store.txn import Dialect, Read, Statement, Txn, Write

_body: Final = msgspec.json.Decoder(dict[str, Any]).decode


def set_pin(user_id: int, conversation_id: str, seq: int, pinned: bool, ts: int, max_pins: int) -> Txn[PinChange]:
    # Every refusal comes before the first write (the SQLite writer requires it); the lock first, as for every write of
    # a timeline, so that a concurrent role change or recall is wholly before or after this.
    if not (yield Read("lock_conversations", ([conversation_id],))):
        raise ConversationNotFound()
    actor = yield Read("pin_actor", (conversation_id, user_id))
    if not actor:
        raise ConversationNotFound()
    joined, role, dissolved, is_group, version = actor[0]
    if is_group:
        if dissolved:
            raise Forbidden("the group was dissolved")
        if RANK.get(role, 0) < RANK["admin"]:
            raise Forbidden("only the group's owner and admins can pin or unpin messages")
    target = yield Read("message_for_event", (conversation_id, seq))
    if not target or seq <= joined:
        raise MessageNotFound()
    if pinned:
        reason = refusal_of(_body(target[0][3]))
        if reason is not None:
            raise Forbidden(reason)
    exists = bool((yield Read("pin_exists", (conversation_id, seq))))
    if exists == pinned:
        return PinChange(None, int(version))
    if pinned:
        (count,), = yield Read("pin_count", (conversation_id,))
        if int(count) >= max_pins:
            raise TooManyPins(f"at most {max_pins} pinned messages per conversation: unpin one first")
        yield Write("insert_pin", ([conversation_id], [seq], [user_id], [ts]))
    else:
        yield Write("delete_pin", ([conversation_id], [seq]))
    notice = yield from append_notice(conversation_id, user_id,
                                      {"event": "pinned" if pinned else "unpinned", "seq": seq, "by": user_id}, ts)
    return PinChange(notice, int(version))


def list_pins(user_id: int, conversation_id: str) -> Txn[list[PinRecord]]:
    rows = yield Read("member_range", (conversation_id, user_id))
    if not rows:
        raise ConversationNotFound()
    found = []
    for seq, pinned_by, ts, sender, client_msg_id, sent_ts, body, hidden in (
            (yield Read("pins_of", (user_id, conversation_id, rows[0][0])))):
        decoded = {"deleted": True} if hidden else _body(body)
        if "recalled" not in decoded:
            found.append(PinRecord(MessageRecord(conversation_id, int(seq), int(sender), client_msg_id,
                                                 int(sent_ts), decoded), int(pinned_by), int(ts)))
    return found


def _prefs(conversation_id: str, row: Any | None, notification: Any | None) -> ConversationPrefs:
    prefs = ConversationPrefs(conversation_id)
    if row is not None:
        prefs = ConversationPrefs(conversation_id, row[0], int(row[1]), int(row[2]), bool(row[3]), bool(row[4]))
    if notification is not None:
        return ConversationPrefs(prefs.conversation_id, prefs.draft, prefs.draft_ts, prefs.pinned_at, prefs.archived,
                                 prefs.marked_unread, None if notification[1] is None else int(notification[1]),
                                 notification[0])
    return prefs


def set_prefs(user_id: int, conversation_id: str, change: PrefsChange, ts: int) -> Txn[ConversationPrefs]:
    if not (yield Read("is_member", (conversation_id, user_id))):
        raise ConversationNotFound(f"no conversation {conversation_id} of yours")
    rows = yield Read("prefs_row", (user_id, conversation_id))
    old = _prefs(conversation_id, rows[0] if rows else None, None)
    draft, draft_ts = old.draft, old.draft_ts
    if change.draft is not None and change.draft != old.draft:
        draft, draft_ts = change.draft, ts
    pinned_at = old.pinned_at
    if change.pinned is not None and change.pinned != bool(old.pinned_at):
        pinned_at = ts if change.pinned else 0
    archived = old.archived if change.archived is None else change.archived
    unread = old.marked_unread if change.marked_unread is None else change.marked_unread
    yield Write("upsert_prefs", ([user_id], [conversation_id], [draft], [draft_ts], [pinned_at], [archived], [unread]))
    notification = yield Read("notification_setting", (user_id, conversation_id))
    return _prefs(conversation_id, (draft, draft_ts, pinned_at, archived, unread),
                  notification[0] if notification else None)


def prefs_of(user_id: int, conversation_ids: list[str]) -> Txn[dict[str, ConversationPrefs]]:
    if not conversation_ids:
        return {}
    rows = {r[0]: r[1:] for r in (yield Read("prefs_rows", (user_id, conversation_ids)))}
    notifications = {r[0]: r[1:] for r in (yield Read("notification_rows", (user_id, conversation_ids)))}
    return {c: _prefs(c, rows.get(c), notifications.get(c)) for c in conversation_ids
            if c in rows or c in notifications}


# --------------------------------------------------------------------------------------------------------- SQL

_ACTOR: Final = (
    "SELECT m.joined_seq, m.role, coalesce(g.dissolved, {false}), g.conversation_id IS NOT NULL,"
    " coalesce(g.members_version, 0) FROM members m LEFT JOIN groups g ON g.conversation_id = m.conversation_id"
    " WHERE m.conversation_id = {c} AND m.user_id = {u}"
)
_PINS_OF: Final = (
    "SELECT p.seq, p.pinned_by, p.ts, m.sender, m.client_msg_id, m.ts, m.body,"
    " EXISTS (SELECT 1 FROM hidden h WHERE h.user_id = {u} AND h.conversation_id = m.conversation_id"
    " AND h.seq = m.seq)"
    " FROM pins p JOIN messages m ON m.conversation_id = p.conversation_id AND m.seq = p.seq"
    " WHERE p.conversation_id = {c} AND p.seq > {joined} ORDER BY p.ts DESC, p.seq DESC"
)
# Recalled messages keep their pin rows (a recall does not know about pins) but neither count nor show.
_PIN_COUNT: Final = (
    "SELECT count(*) FROM pins p JOIN messages m ON m.conversation_id = p.conversation_id AND m.seq = p.seq"
    " WHERE p.conversation_id = {c} AND m.state <> 'recalled'"
)
_PREFS_COLUMNS: Final = "draft, draft_ts, pinned_at, archived, marked_unread"

SQLITE: Final[Dialect] = {
    "pin_actor": Statement(_ACTOR.format(false="0", c="?1", u="?2")),
    "pin_exists": Statement("SELECT 1 FROM pins WHERE conversation_id = ?1 AND seq = ?2"),
    "pin_count": Statement(_PIN_COUNT.format(c="?1")),
    "insert_pin": Statement("INSERT INTO pins (conversation_id, seq, pinned_by, ts) VALUES (?, ?, ?, ?)"),
    "delete_pin": Statement("DELETE FROM pins WHERE conversation_id = ?1 AND seq = ?2"),
    "pins_of": Statement(_PINS_OF.format(u="?1", c="?2", joined="?3")),
    "prefs_row": Statement(
        f"SELECT {_PREFS_COLUMNS} FROM conversation_prefs WHERE user_id = ?1 AND conversation_id = ?2"
    ),
    "upsert_prefs": Statement(
        f"INSERT INTO conversation_prefs (user_id, conversation_id, {_PREFS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (user_id, conversation_id) DO UPDATE SET draft = excluded.draft, draft_ts = excluded.draft_ts,"
        " pinned_at = excluded.pinned_at, archived = excluded.archived, marked_unread = excluded.marked_unread"
    ),
    "prefs_rows": Statement(
        f"SELECT p.conversation_id, {_PREFS_COLUMNS} FROM json_each(?2) j JOIN conversation_prefs p"
        " ON p.user_id = ?1 AND p.conversation_id = j.value"
    ),
    "notification_rows": Statement(
        "SELECT n.conversation_id, n.level, n.mute_until FROM json_each(?2) j JOIN notification_settings n"
        " ON n.user_id = ?1 AND n.conversation_id = j.value"
    ),
}

POSTGRES: Final[Dialect] = {
    "pin_actor": Statement(_ACTOR.format(false="false", c="$1", u="$2")),
    "pin_exists": Statement("SELECT 1 FROM pins WHERE conversation_id = $1 AND seq = $2"),
    "pin_count": Statement(_PIN_COUNT.format(c="$1")),
    "insert_pin": Statement(
        "INSERT INTO pins (conversation_id, seq, pinned_by, ts)"
        " SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])"
    ),
    "delete_pin": Statement(
        "DELETE FROM pins p USING unnest($1::text[], $2::bigint[]) AS k(conversation_id, seq)"
        " WHERE p.conversation_id = k.conversation_id AND p.seq = k.seq"
    ),
    "pins_of": Statement(_PINS_OF.format(u="$1", c="$2", joined="$3")),
    "prefs_row": Statement(
        f"SELECT {_PREFS_COLUMNS} FROM conversation_prefs WHERE user_id = $1 AND conversation_id = $2"
    ),
    "upsert_prefs": Statement(
        f"INSERT INTO conversation_prefs (user_id, conversation_id, {_PREFS_COLUMNS})"
        " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::boolean[],"
        " $7::boolean[])"
        " ON CONFLICT (user_id, conversation_id) DO UPDATE SET draft = excluded.draft, draft_ts = excluded.draft_ts,"
        " pinned_at = excluded.pinned_at, archived = excluded.archived, marked_unread = excluded.marked_unread"
    ),
    "prefs_rows": Statement(
        f"SELECT conversation_id, {_PREFS_COLUMNS} FROM conversation_prefs"
        " WHERE user_id = $1 AND conversation_id = ANY($2::text[])"
    ),
    "notification_rows": Statement(
        "SELECT conversation_id, level, mute_until FROM notification_settings"
        " WHERE user_id = $1 AND conversation_id = ANY($2::text[])"
    ),
}
