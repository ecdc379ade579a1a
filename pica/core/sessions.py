"""Sessions: what a login opens, what a refresh token renews and rotates, what logout and revocation end.

An access token is short-lived (``auth.token_ttl``) and names its session; every use of it (an HTTP request, a
socket's authentication) checks that the session is still live, so a revoked session's tokens stop working at once.
A refresh token renews the session (``auth.session_ttl`` from its last use) and is rotated on every use; a reused
one ends the session (see :mod:`pica.store.sessions`). Sockets outlive their access token: they last as long as
their session, and every node closes those of a revoked session within ``auth.revocation_poll`` seconds (the sweep
in :mod:`pica.app`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from pica.config import AuthConfig
from pica.core.ports import Clock
from pica.core.tokens import RefreshTokens, TokenService, new_session_id
from pica.core.turn_reads import TurnReads
from pica.errors import Banned, InvalidToken, NotFound, SessionEnded
from pica.logs import audit
from pica.store.base import SessionRecord, SessionState, Store

MAX_USER_AGENT = 256
"""Characters of a client's User-Agent kept with its session (for the session list; the rest is dropped)."""

FORGET_AFTER_MS = 3600 * 1000
"""How long the row of an ended session is kept: longer than any node's revocation poll can lag, so every node
closes its sockets first."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a valid access token speaks for."""

    user_id: int
    session_id: str
    session_expires_at: int
    """Seconds since the epoch: a socket authenticated with the token is closed then (unless revoked before)."""


@dataclass(frozen=True, slots=True)
class SessionTokens:
    """What a login or a refresh answers."""

    user_id: int
    session_id: str
    token: str
    expires_at: int
    """The access token's end, seconds since the epoch."""
    refresh_token: str
    refresh_expires_at: int
    """Seconds since the epoch: the session ends then unless refreshed before."""


MAX_STATES_PER_READ: Final = 256
"""Most sessions looked up in one store read: a reconnect storm's connects share reads this large."""


class SessionStates(TurnReads[str, SessionState]):
    """Session states asked for in one turn of the event loop (or, while connects come in a stream, within
    ``busy_delay`` seconds), read from the store together.

    Every socket authentication must see its session's state in the store (revocation is checked on each use, never
    cached); the connects that arrive together share one read of up to :data:`MAX_STATES_PER_READ` sessions."""

    __slots__ = ()

    def __init__(self, store: Store, busy_delay: float = 0.0) -> None:
        super().__init__(store.session_states, MAX_STATES_PER_READ, busy_delay=busy_delay)


class SessionService:
    def __init__(self, store: Store, tokens: TokenService, refresh_tokens: RefreshTokens, clock: Clock,
                 config: AuthConfig) -> None:
        self._store = store
        self._tokens = tokens
        self._refresh = refresh_tokens
        self._clock = clock
        self._config = config
        self._states = SessionStates(store, config.session_read_delay)

    def _issue(self, user_id: int, session_id: str, generation: int, session_expires_ms: int) -> SessionTokens:
        token, expires_at = self._tokens.issue(user_id, session_id, self._clock.now_ms() / 1000)
        return SessionTokens(user_id, session_id, token, expires_at, self._refresh.issue(session_id, generation),
                             session_expires_ms // 1000)

    async def open(self, user_id: int, address: str, user_agent: str) -> SessionTokens:
        """A new session for a user who just proved who they are."""
        return (await self.open_many([user_id], address, user_agent))[0]

    async def open_many(self, user_ids: Sequence[int], address: str, user_agent: str) -> list[SessionTokens]:
        """A new session for each of these users, stored in one transaction (a bulk seed), tokens in order."""
        now = self._clock.now_ms()
        expires = now + int(self._config.session_ttl * 1000)
        agent = user_agent[:MAX_USER_AGENT]
        records = [SessionRecord(new_session_id(), user_id, now, now, expires, address, agent) for user_id in user_ids]
        await self._store.create_sessions(records, self._config.max_sessions, now - FORGET_AFTER_MS)
        return [self._issue(r.user_id, r.session_id, 0, expires) for r in records]

    async def refresh(self, refresh_token: object, address: str = "") -> SessionTokens:
        """New tokens for a genuine, current refresh token. Raises InvalidToken (not a refresh token of a known
        session), SessionEnded (ended, lapsed, or reused: then it is ended now) or Banned."""
        session_id, generation = self._refresh.parse(refresh_token)
        result = await self._store.refresh_session(session_id, generation, self._clock.now_ms(),
                                                   int(self._config.session_ttl * 1000),
                                                   int(self._config.refresh_grace * 1000))
        match result.outcome:
            case "rotated":
                return self._issue(result.user_id, session_id, result.generation, result.expires_at)
            case "reused":
                audit("refresh_token_reused", user_id=result.user_id, session_id=session_id, address=address,
                      generation=generation)
                raise SessionEnded("this refresh token was used before: the session is ended, log in again")
            case "banned":
                raise Banned("this account is banned")
            case "expired":
                raise SessionEnded("the session expired: log in again")
            case "revoked":
                raise SessionEnded("this session has ended: log in again")
            case _:
                raise InvalidToken("unknown session: log in again")

    async def authenticate(self, token: str) -> Identity:
        """The identity of a valid access token whose session is live and whose user is not banned. Raises
        InvalidToken / TokenExpired / SessionEnded / Banned."""
        claims = self._tokens.verify(token)
        state = await self._states.get(claims.session_id)
        if state is None or state.user_id != claims.user_id:
            raise InvalidToken("unknown session: log in again")
        if state.revoked:
            raise SessionEnded("this session has ended: log in again")
        if state.banned:
            raise Banned("this account is banned")
        return Identity(claims.user_id, claims.session_id, state.expires_at // 1000)

    async def list(self, user_id: int) -> list[SessionRecord]:
        return await self._store.list_sessions(user_id, self._clock.now_ms())

    async def end(self, user_id: int, session_id: str, reason: str) -> None:
        """End one of the user's sessions (logout: the caller's own; the session list: any of theirs). Raises
        NotFound when the user has no such live session."""
        if not await self._store.revoke_session(user_id, session_id, self._clock.now_ms(), reason):
            raise NotFound("no such session")
        audit("session_revoked", user_id=user_id, session_id=session_id, reason=reason)

    async def end_all(self, user_id: int, reason: str, *, keep: str | None = None) -> int:
        """End every session of the user but ``keep``; how many ended."""
        ended = await self._store.revoke_user_sessions(user_id, self._clock.now_ms(), reason, keep=keep)
        audit("sessions_revoked", user_id=user_id, count=ended, reason=reason, kept=keep)
        return ended
