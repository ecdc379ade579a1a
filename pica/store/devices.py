"""Push targets and notification settings, written once for both dialects (see :mod:`pica.store.txn`).

A device belongs to the session that registered it: its rows are read joined to ``sessions``, so a device of an
ended session (logout, revocation, a password change, expiry) is never listed or pushed to from the moment the
session ends, and its row is deleted the next time it is met (the user registers a device, a push job finds it).
The same platform and token registered again replaces the old row, whoever owned it: a token names an app
installation, and the last session to claim it is the one signed in there.

The push job's reads (:func:`push_candidates`, :func:`push_audience`) run on the readers, never on the writer: the
message's own transaction only queued one job row (pica/store/job_rules.py).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from pica.errors import ConversationNotFound, TooManyDevices
from pica.store import reactions
from pica.store.base import (
    DeviceRecord,
    MessageRecord,
    NotificationSetting,
    PushAudience,
    PushCandidate,
    PushMessage,
)
from pica.store.txn import Dialect, Read, Statement, Txn, Write

_body: Final = msgspec.json.Decoder(dict[str, Any]).decode


def _device(row: Any) -> DeviceRecord:
    return DeviceRecord(row[0], int(row[1]), row[2], row[3], row[4], row[5], row[6], int(row[7]))


def register_device(device: DeviceRecord, max_per_user: int, now_ms: int) -> Txn[DeviceRecord]:
    # Counted before any write: a refusal leaves nothing to roll back. The token's own row (being replaced) and the
    # devices of ended sessions (deleted below) do not count.
    (count,), = yield Read("count_live_devices", (device.user_id, now_ms, device.platform, device.token))
    if int(count) >= max_per_user:
        raise TooManyDevices(f"at most {max_per_user} push devices per user; remove one first")
    yield Write("drop_ended_devices", ([device.user_id], [now_ms]))
    yield Write("drop_device_token", ([device.platform], [device.token]))
    d = device
    yield Write("insert_device", ([d.device_id], [d.user_id], [d.session_id], [d.platform], [d.token], [d.p256dh],
                                  [d.auth], [d.created_at]))
    return device


def list_devices(user_id: int, now_ms: int) -> Txn[list[DeviceRecord]]:
    return [_device(r) for r in (yield Read("live_devices", (user_id, now_ms)))]


def remove_device(user_id: int, device_id: str) -> Txn[bool]:
    return bool((yield Write("delete_own_device", ([user_id], [device_id]))))


def drop_devices(device_ids: list[str]) -> Txn[int]:
    return int((yield Write("delete_devices", (device_ids,))))


def _member(user_id: int, conversation_id: str) -> Txn[None]:
    if not (yield Read("is_member", (conversation_id, user_id))):
        raise ConversationNotFound(f"no conversation {conversation_id} of yours")


def set_notification_setting(user_id: int, setting: NotificationSetting) -> Txn[None]:
    yield from _member(user_id, setting.conversation_id)
    yield Write("upsert_notification_setting", ([user_id], [setting.conversation_id], [setting.level],
                                                [setting.mute_until]))


def get_notification_setting(user_id: int, conversation_id: str) -> Txn[NotificationSetting]:
    yield from _member(user_id, conversation_id)
    rows = yield Read("notification_setting", (user_id, conversation_id))
    if not rows:
        return NotificationSetting(conversation_id)
    return NotificationSetting(conversation_id, rows[0][0], None if rows[0][1] is None else int(rows[0][1]))


def set_push_privacy(user_id: int, privacy: bool) -> Txn[None]:
    yield Write("upsert_push_privacy", ([user_id], [privacy]))


def get_push_privacy(user_id: int) -> Txn[bool]:
    rows = yield Read("push_privacy", (user_id,))
    return bool(rows and rows[0][0])


def push_candidates(conversation_id: str, seq: int) -> Txn[tuple[PushMessage | None, list[PushCandidate]]]:
    rows = yield Read("push_message", (conversation_id, seq))
    if not rows:
        return None, []
    c, s, sender, client_msg_id, ts, body, state, sender_name, group_name = rows[0]
    record = MessageRecord(c, int(s), int(sender), client_msg_id, int(ts), _body(body))
    thread = record.body.get("thread")
    participants = (yield from reactions.thread_participants(c, thread["root"])) if isinstance(
        thread, dict) and isinstance(thread.get("root"), int) else frozenset()
    message = PushMessage(record, state, sender_name or "", group_name or "", participants)
    candidates = [PushCandidate(int(r[0]), int(r[1]), int(r[2]), r[3], None if r[4] is None else int(r[4]), bool(r[5]))
                  for r in (yield Read("push_candidates", (conversation_id, int(sender))))]
    return message, candidates


def push_audience(user_ids: list[int], now_ms: int) -> Txn[PushAudience]:
    devices: list[DeviceRecord] = []
    ended: list[str] = []
    for row in (yield Read("push_devices_of", (user_ids, now_ms))):
        if row[8]:
            devices.append(_device(row))
        else:
            ended.append(row[0])
    badges = {int(r[0]): max(0, int(r[1])) for r in (yield Read("unread_totals", (user_ids,)))}
    return PushAudience(devices, badges, ended)


# --------------------------------------------------------------------------------------------------------- SQL

_COLUMNS: Final = "d.device_id, d.user_id, d.session_id, d.platform, d.token, d.p256dh, d.auth, d.created_at"
_LIVE: Final = "s.revoked_at IS NULL AND s.expires_at > {now}"
"""A session still in force at ``now`` (ms)."""
_UNREAD: Final = (
    "SELECT x.user_id, sum(max(0, c.last_seq - max(x.read_seq, x.joined_seq))) FROM {users} JOIN members x"
    " ON x.user_id = {user} JOIN conversations c ON c.conversation_id = x.conversation_id WHERE c.kind <> 'self'"
    " GROUP BY x.user_id"
)
_MESSAGE: Final = (
    "SELECT m.conversation_id, m.seq, m.sender, m.client_msg_id, m.ts, m.body, m.state,"
    " CASE WHEN u.deleted_at > 0 THEN '' ELSE u.username END, g.name FROM messages m"
    " LEFT JOIN users u ON u.user_id = m.sender LEFT JOIN groups g ON g.conversation_id = m.conversation_id"
    " WHERE m.conversation_id = {c} AND m.seq = {s}"
)
_CANDIDATES: Final = (
    "SELECT m.user_id, m.joined_seq, m.delivered_seq, coalesce(n.level, 'all'), n.mute_until,"
    " coalesce(p.privacy, {false}) FROM members m"
    " LEFT JOIN notification_settings n ON n.user_id = m.user_id AND n.conversation_id = m.conversation_id"
    " LEFT JOIN push_settings p ON p.user_id = m.user_id"
    " WHERE m.conversation_id = {c} AND m.user_id <> {sender}"
    " AND EXISTS (SELECT 1 FROM push_devices d WHERE d.user_id = m.user_id) ORDER BY m.user_id"
)

SQLITE: Final[Dialect] = {
    "count_live_devices": Statement(
        "SELECT count(*) FROM push_devices d JOIN sessions s ON s.session_id = d.session_id"
        f" WHERE d.user_id = ?1 AND {_LIVE.format(now='?2')} AND NOT (d.platform = ?3 AND d.token = ?4)"
    ),
    "drop_ended_devices": Statement(
        "DELETE FROM push_devices WHERE user_id = ?1 AND NOT EXISTS (SELECT 1 FROM sessions s"
        f" WHERE s.session_id = push_devices.session_id AND {_LIVE.format(now='?2')})"
    ),
    "drop_device_token": Statement("DELETE FROM push_devices WHERE platform = ?1 AND token = ?2"),
    "insert_device": Statement(
        "INSERT INTO push_devices (device_id, user_id, session_id, platform, token, p256dh, auth, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    "live_devices": Statement(
        f"SELECT {_COLUMNS} FROM push_devices d JOIN sessions s ON s.session_id = d.session_id"
        f" WHERE d.user_id = ?1 AND {_LIVE.format(now='?2')} ORDER BY d.created_at, d.device_id"
    ),
    "delete_own_device": Statement("DELETE FROM push_devices WHERE user_id = ?1 AND device_id = ?2"),
    "delete_devices": Statement("DELETE FROM push_devices WHERE device_id = ?1"),
    "is_member": Statement("SELECT 1 FROM members WHERE conversation_id = ?1 AND user_id = ?2"),
    "upsert_notification_setting": Statement(
        "INSERT INTO notification_settings (user_id, conversation_id, level, mute_until) VALUES (?1, ?2, ?3, ?4)"
        " ON CONFLICT (user_id, conversation_id) DO UPDATE SET level = excluded.level,"
        " mute_until = excluded.mute_until"
    ),
    "notification_setting": Statement(
        "SELECT level, mute_until FROM notification_settings WHERE user_id = ?1 AND conversation_id = ?2"
    ),
    "upsert_push_privacy": Statement(
        "INSERT INTO push_settings (user_id, privacy) VALUES (?1, ?2)"
        " ON CONFLICT (user_id) DO UPDATE SET privacy = excluded.privacy"
    ),
    "push_privacy": Statement("SELECT privacy FROM push_settings WHERE user_id = ?1"),
    "push_message": Statement(_MESSAGE.format(c="?1", s="?2")),
    "push_candidates": Statement(_CANDIDATES.format(c="?1", sender="?2", false="0")),
    "push_devices_of": Statement(
        f"SELECT {_COLUMNS}, s.session_id IS NOT NULL AND {_LIVE.format(now='?2')} FROM json_each(?1) j"
        " JOIN push_devices d ON d.user_id = j.value LEFT JOIN sessions s ON s.session_id = d.session_id"
        " ORDER BY d.user_id, d.created_at"
    ),
    "unread_totals": Statement(_UNREAD.format(users="json_each(?1) j", user="j.value")),
}

POSTGRES: Final[Dialect] = {
    "count_live_devices": Statement(
        "SELECT count(*) FROM push_devices d JOIN sessions s ON s.session_id = d.session_id"
        f" WHERE d.user_id = $1 AND {_LIVE.format(now='$2')} AND NOT (d.platform = $3 AND d.token = $4)"
    ),
    "drop_ended_devices": Statement(
        "DELETE FROM push_devices d USING unnest($1::bigint[], $2::bigint[]) AS k(user_id, now)"
        " WHERE d.user_id = k.user_id AND NOT EXISTS (SELECT 1 FROM sessions s"
        f" WHERE s.session_id = d.session_id AND {_LIVE.format(now='k.now')})"
    ),
    "drop_device_token": Statement(
        "DELETE FROM push_devices d USING unnest($1::text[], $2::text[]) AS k(platform, token)"
        " WHERE d.platform = k.platform AND d.token = k.token"
    ),
    "insert_device": Statement(
        "INSERT INTO push_devices (device_id, user_id, session_id, platform, token, p256dh, auth, created_at)"
        " SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
        " $8::bigint[])"
    ),
    "live_devices": Statement(
        f"SELECT {_COLUMNS} FROM push_devices d JOIN sessions s ON s.session_id = d.session_id"
        f" WHERE d.user_id = $1 AND {_LIVE.format(now='$2')} ORDER BY d.created_at, d.device_id"
    ),
    "delete_own_device": Statement(
        "DELETE FROM push_devices d USING unnest($1::bigint[], $2::text[]) AS k(user_id, device_id)"
        " WHERE d.user_id = k.user_id AND d.device_id = k.device_id"
    ),
    "delete_devices": Statement(
        "DELETE FROM push_devices d USING unnest($1::text[]) AS k(device_id) WHERE d.device_id = k.device_id"
    ),
    "is_member": Statement("SELECT 1 FROM members WHERE conversation_id = $1 AND user_id = $2"),
    "upsert_notification_setting": Statement(
        "INSERT INTO notification_settings (user_id, conversation_id, level, mute_until)"
        " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])"
        " ON CONFLICT (user_id, conversation_id) DO UPDATE SET level = excluded.level,"
        " mute_until = excluded.mute_until"
    ),
    "notification_setting": Statement(
        "SELECT level, mute_until FROM notification_settings WHERE user_id = $1 AND conversation_id = $2"
    ),
    "upsert_push_privacy": Statement(
        "INSERT INTO push_settings (user_id, privacy) SELECT * FROM unnest($1::bigint[], $2::boolean[])"
        " ON CONFLICT (user_id) DO UPDATE SET privacy = excluded.privacy"
    ),
    "push_privacy": Statement("SELECT privacy FROM push_settings WHERE user_id = $1"),
    "push_message": Statement(_MESSAGE.format(c="$1", s="$2")),
    "push_candidates": Statement(_CANDIDATES.format(c="$1", sender="$2", false="false")),
    "push_devices_of": Statement(
        f"SELECT {_COLUMNS}, s.session_id IS NOT NULL AND {_LIVE.format(now='$2')}"
        " FROM push_devices d LEFT JOIN sessions s ON s.session_id = d.session_id"
        " WHERE d.user_id = ANY($1::bigint[]) ORDER BY d.user_id, d.created_at"
    ),
    "unread_totals": Statement(
        "SELECT x.user_id, sum(greatest(0, c.last_seq - greatest(x.read_seq, x.joined_seq))) FROM members x"
        " JOIN conversations c ON c.conversation_id = x.conversation_id"
        " WHERE x.user_id = ANY($1::bigint[]) AND c.kind <> 'self' GROUP BY x.user_id"
    ),
}
