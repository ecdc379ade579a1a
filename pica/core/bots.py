"""Bot accounts: API keys, what they authenticate as, and the operator's actions on bots (``pica bot``).

A bot is a user that signs in with a long-lived API key instead of a password (docs/bots.md). The key is
``pica_bot_`` followed by 256 random bits: the prefix makes a leaked key recognisable (secret scanners, logs) and
lets :func:`is_bot_key` tell it from an access token without parsing either. The store keeps only its SHA-256
(:func:`key_hash`), and the key opens one session that never expires (:mod:`pica.store.bots`), so a bot's key is
accepted wherever an access token is (HTTP ``Authorization: Bearer``, the socket ``auth`` frame, MQTT's password)
and is refused the way a revoked session's tokens are.

Every use of a key is checked against the store, like every use of an access token (whose session is read on each
request): a rotated or deleted key is refused from the next request on, on every node, with no cache to expire.
Sockets authenticated with it are closed by every node's revocation sweep within ``auth.revocation_poll``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Final

from pica.core.ports import Clock
from pica.core.ratelimit import RateLimits
from pica.core.sessions import Identity
from pica.core.tokens import new_session_id
from pica.core.validation import normalize_username
from pica.errors import Banned, InvalidToken, SessionEnded, UserNotFound
from pica.logs import audit
from pica.store.base import BotRecord, GroupChange, SessionRecord, Store

KEY_PREFIX: Final = "pica_bot_"
KEY_BYTES: Final = 32
MAX_KEY_LENGTH: Final = 100
"""Longer than any key made here (52 characters); a longer credential is refused before it is hashed."""
NEVER: Final = 2**53 - 1
"""A key session's end (ms): keys do not expire, they are rotated."""
KEY_SESSION_AGENT: Final = "bot key"
"""What a key's session shows as its User-Agent in ``pica user sessions``."""


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def is_bot_key(credential: str) -> bool:
    return credential.startswith(KEY_PREFIX)


def key_hash(key: str) -> str:
    """What the store keeps of a key. A plain SHA-256, not a password hash: the key is 256 random bits, so no
    stretching makes guessing it from the hash any harder than it already is, while Argon2 on every request would
    cost tens of milliseconds and a salt would forbid finding the row by its hash. (OWASP's password guidance is for
    secrets people choose; GitHub and Stripe keep their API tokens hashed the same way.)"""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewBot:
    user_id: int
    username: str
    key: str
    """Shown once: only its hash is stored."""


class BotService:
    def __init__(self, store: Store, clock: Clock, rates: RateLimits | None = None) -> None:
        self._store = store
        self._clock = clock
        self._rates = rates

    async def authenticate(self, key: str) -> Identity:
        """Who a bot key speaks for. Raises InvalidToken (not a current key), SessionEnded (its session was
        revoked, ``pica user revoke``) or Banned."""
        if len(key) > MAX_KEY_LENGTH or not key.isascii():
            raise InvalidToken("invalid bot key")
        state = await self._store.bot_key_state(key_hash(key))
        if state is None:
            raise InvalidToken("unknown bot key: it was rotated or the bot deleted")
        if state.revoked:
            raise SessionEnded("this bot key was revoked: rotate it (pica bot key)")
        if state.banned:
            raise Banned("this account is banned")
        if self._rates is not None:
            self._rates.mark_bot(state.user_id)
        return Identity(state.user_id, state.session_id, state.expires_at // 1000)

    def _key_session(self) -> SessionRecord:
        now = self._clock.now_ms()
        return SessionRecord(new_session_id(), 0, now, now, NEVER, "", KEY_SESSION_AGENT)

    async def create(self, name: str, webhook_url: str = "", webhook_secret: str = "") -> NewBot:
        """A new bot account and its key. ``webhook_url`` empty: it receives over a socket."""
        username = normalize_username(name)
        key = new_key()
        user_id = await self._store.create_bot(username, key_hash(key), self._key_session(), webhook_url,
                                               webhook_secret)
        audit("bot_created", user_id=user_id, username=username, webhook=bool(webhook_url))
        return NewBot(user_id, username, key)

    async def rotate(self, user_id: int) -> str:
        """A new key for the bot; the old one is refused from now on and its sockets are closed."""
        key = new_key()
        await self._store.rotate_bot_key(user_id, key_hash(key), self._key_session())
        audit("bot_key_rotated", user_id=user_id)
        return key

    async def delete(self, user_id: int) -> list[GroupChange]:
        changes = await self._store.delete_bot(user_id, self._clock.now_ms())
        audit("bot_deleted", user_id=user_id)
        return changes

    async def list(self) -> list[BotRecord]:
        return await self._store.list_bots()

    async def by_name(self, name: str) -> BotRecord:
        """Raises UserNotFound unless ``name`` is a bot's."""
        username = normalize_username(name)
        for bot in await self._store.list_bots():
            if bot.username == username:
                return bot
        raise UserNotFound(f"no bot named {username!r}")
