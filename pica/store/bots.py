"""Bot accounts: transactions written once for both dialects (see :mod:`pica.store.txn`).

A bot is a user row with a ``bots`` row beside it (migration 0009). It has no password (its hash is one no password
verifies) and no refresh token: it signs in with an API key, of which the row keeps the SHA-256, and the key opens
one session that never expires. Rotating the key revokes that session and opens another, so everything that checks
sessions refuses the old key at once, and every node's revocation sweep closes its sockets. Deleting a bot deletes
its account the way a user deletes theirs (:func:`pica.store.lifecycle.delete_account`), then its key.

:func:`bot_rows` is the rule of the outbox for bots with a webhook: which of them a batch of messages goes to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from pica.errors import UserNotFound
from pica.protocol.ids import direct_peer, group_id_of
from pica.store import lifecycle, sessions, social
from pica.store.base import BotKeyState, BotRecord, BotWebhook, GroupChange, SessionRecord, bot_endpoint_id
from pica.store.job_rules import WEBHOOK, Event, JobRow, payload
from pica.store.txn import Dialect, Read, Statement, Txn, Write

NO_PASSWORD: Final = "!bot"
"""A bot's password hash: not an Argon2 hash, so no password verifies against it (a bot cannot log in)."""
KEY_SESSIONS: Final = 1
"""A bot has one live key at a time: opening the new key's session ends any other (``sessions.create_sessions``)."""


def create_bot(username: str, key_hash: str, session: SessionRecord, webhook_url: str,
               webhook_secret: str) -> Txn[int]:
    now = session.created_at
    user_id = yield from social.create_user(username, NO_PASSWORD, now)  # refuses a taken name before any write
    yield Write("insert_bot", ([user_id], [key_hash], [session.session_id], [webhook_url], [webhook_secret], [now]))
    yield from sessions.create_sessions([replace(session, user_id=user_id)], KEY_SESSIONS, 0)
    return user_id


def rotate_bot_key(user_id: int, key_hash: str, session: SessionRecord) -> Txn[None]:
    if not (yield Read("bot_exists", (user_id,))):
        raise UserNotFound(f"user {user_id} is not a bot")
    yield from sessions.revoke_user_sessions(user_id, session.created_at, "bot_key_rotated", None)
    yield Write("set_bot_key", ([user_id], [key_hash], [session.session_id], [session.created_at]))
    yield from sessions.create_sessions([replace(session, user_id=user_id)], KEY_SESSIONS, 0)


def delete_bot(user_id: int, ts: int) -> Txn[list[GroupChange]]:
    if not (yield Read("bot_exists", (user_id,))):
        raise UserNotFound(f"user {user_id} is not a bot")
    changes = yield from lifecycle.delete_account(user_id, ts)
    yield Write("delete_bot", ([user_id],))
    return changes


def list_bots() -> Txn[list[BotRecord]]:
    return [BotRecord(int(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4])) for r in (yield Read("list_bots", ()))]


def bot_key_state(key_hash: str) -> Txn[BotKeyState | None]:
    rows = yield Read("bot_key_state", (key_hash,))
    if not rows:
        return None
    user_id, session_id, expires_at, revoked_at, banned = rows[0]
    return BotKeyState(int(user_id), str(session_id), int(expires_at), revoked_at is not None, bool(banned))


def bot_webhooks() -> Txn[list[BotWebhook]]:
    return [BotWebhook(int(r[0]), str(r[1]), str(r[2])) for r in (yield Read("bot_webhooks", ()))]


# ---------------------------------------------------------------------------------------------------------- outbox


def bot_rows(bots: frozenset[int], events: Sequence[Event]) -> Txn[list[JobRow]]:
    """The webhook jobs of bots for a batch's ``message.created`` events: one per message and bot in its
    conversation (the 1:1 peer, or a group member as of this transaction), never for the bot's own messages. Runs
    inside the batch's transaction, so the jobs commit with the messages; groups cost one indexed read per batch,
    and only when the batch has group messages."""
    groups = sorted({e.conversation_id for e in events if group_id_of(e.conversation_id) is not None})
    members: dict[str, list[int]] = {}
    if groups:
        for conversation_id, user_id in (yield Read("bot_members", (groups, sorted(bots)))):
            members.setdefault(str(conversation_id), []).append(int(user_id))
    rows: list[JobRow] = []
    for event in events:
        peer = direct_peer(event.conversation_id, event.sender)
        targets = ([peer] if peer in bots else []) if peer is not None else members.get(event.conversation_id, [])
        body = b""
        for bot in targets:
            if bot != event.sender:
                body = body or payload(event)
                rows.append(JobRow(f"{event.type}:{event.ident}", WEBHOOK, bot_endpoint_id(bot), body))
    return rows


# --------------------------------------------------------------------------------------------------------- SQL

SQLITE: Final[Dialect] = {
    "insert_bot": Statement(
        "INSERT INTO bots (user_id, key_hash, session_id, webhook_url, webhook_secret, created_at, key_created_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)"
    ),
    "bot_exists": Statement("SELECT 1 FROM bots WHERE user_id = ?1"),
    "set_bot_key": Statement(
        "UPDATE bots SET key_hash = ?2, session_id = ?3, key_created_at = ?4 WHERE user_id = ?1"
    ),
    "delete_bot": Statement("DELETE FROM bots WHERE user_id = ?1"),
    "list_bots": Statement(
        "SELECT b.user_id, u.username, b.webhook_url, b.created_at, b.key_created_at FROM bots b"
        " JOIN users u ON u.user_id = b.user_id ORDER BY b.user_id"
    ),
    "bot_key_state": Statement(
        "SELECT b.user_id, b.session_id, s.expires_at, s.revoked_at, u.banned FROM bots b"
        " JOIN sessions s ON s.session_id = b.session_id JOIN users u ON u.user_id = b.user_id WHERE b.key_hash = ?1"
    ),
    "bot_webhooks": Statement("SELECT user_id, webhook_url, webhook_secret FROM bots WHERE webhook_url <> ''"),
    "bot_members": Statement(
        "SELECT conversation_id, user_id FROM members WHERE conversation_id IN (SELECT value FROM json_each(?1))"
        " AND user_id IN (SELECT value FROM json_each(?2))"
    ),
}

POSTGRES: Final[Dialect] = {
    "insert_bot": Statement(
        "INSERT INTO bots (user_id, key_hash, session_id, webhook_url, webhook_secret, created_at, key_created_at)"
        " SELECT k.*, k.created_at FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],"
        " $6::bigint[]) AS k(user_id, key_hash, session_id, webhook_url, webhook_secret, created_at)"
    ),
    "bot_exists": Statement("SELECT 1 FROM bots WHERE user_id = $1"),
    "set_bot_key": Statement(
        "UPDATE bots b SET key_hash = k.key_hash, session_id = k.session_id, key_created_at = k.at"
        " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[]) AS k(user_id, key_hash, session_id, at)"
        " WHERE b.user_id = k.user_id"
    ),
    "delete_bot": Statement("DELETE FROM bots b USING unnest($1::bigint[]) AS k(user_id) WHERE b.user_id = k.user_id"),
    "list_bots": Statement(SQLITE["list_bots"].sql),
    "bot_key_state": Statement(
        "SELECT b.user_id, b.session_id, s.expires_at, s.revoked_at, u.banned FROM bots b"
        " JOIN sessions s ON s.session_id = b.session_id JOIN users u ON u.user_id = b.user_id WHERE b.key_hash = $1"
    ),
    "bot_webhooks": Statement(SQLITE["bot_webhooks"].sql),
    "bot_members": Statement(
        "SELECT conversation_id, user_id FROM members WHERE conversation_id = ANY($1::text[])"
        " AND user_id = ANY($2::bigint[])"
    ),
}
