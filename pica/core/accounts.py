"""Registration, login and token authentication."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pica.config import AuthConfig
from pica.core.passwords import PasswordHasher
from pica.core.ports import Clock
from pica.core.ratelimit import RateLimits
from pica.core.tokens import TokenClaims, TokenService
from pica.core.validation import check_password, check_password_guessability, normalize_username
from pica.errors import Banned, InvalidCredentials, InvalidToken, InvalidUsername, RateLimited
from pica.logs import audit
from pica.store.base import Store, UserRecord


@dataclass(frozen=True, slots=True)
class LoginResult:
    token: str
    user_id: int
    expires_at: int


class AccountService:
    def __init__(
        self, store: Store, hasher: PasswordHasher, tokens: TokenService, clock: Clock, config: AuthConfig,
        rates: RateLimits | None = None,
    ) -> None:
        self._rates = rates
        self._store = store
        self._hasher = hasher
        self._tokens = tokens
        self._clock = clock
        self._config = config

    async def register(self, username: object, password: object, address: str = "") -> int:
        """``address``: the client's, for the per-address registration limit."""
        if self._rates is not None:
            try:
                await self._rates.check_register(address)
            except RateLimited:
                audit("register_refused", address=address, reason="rate_limited")
                raise
        name = normalize_username(username)
        secret = check_password(password, self._config.min_password_length)
        await asyncio.to_thread(check_password_guessability, secret, name, self._config.min_password_score)
        password_hash = await self._hasher.hash(secret)
        user_id = await self._store.create_user(name, password_hash, self._clock.now_ms())
        audit("account_created", user_id=user_id, username=name, address=address)
        return user_id

    async def login(self, username: object, password: object, address: str = "") -> LoginResult:
        """``address``: the client's, for the login limits (checked before any hashing, so that a flood of
        attempts costs no Argon2 time)."""
        if not isinstance(username, str) or not isinstance(password, str):
            raise InvalidCredentials("username and password must be strings")
        try:
            name: str | None = normalize_username(username)
        except InvalidUsername:
            name = None  # no account has such a name (a NUL, say, which PostgreSQL cannot even look up)
        account = name if name is not None else username
        if self._rates is not None:
            try:
                await self._rates.check_login(address, account)
            except RateLimited as exc:
                audit("login_refused", account=account, address=address, reason="rate_limited",
                      retry_after=exc.retry_after)
                raise
        user = None if name is None else await self._store.get_user_by_name(name)
        # Verified against a dummy hash when there is no user, so that the answer takes as long either way.
        ok = await self._hasher.verify(user.password_hash if user else None, password)
        if user is None or not ok:
            if self._rates is not None:
                await self._rates.login_failed(address, account)
            audit("login_failed", account=account, address=address,
                  reason="unknown_user" if user is None else "wrong_password")
            raise InvalidCredentials("wrong username or password")
        if user.banned:  # checked after the password, so that a ban is not disclosed to someone guessing
            audit("login_refused", account=account, user_id=user.user_id, address=address, reason="banned")
            raise Banned("this account is banned")
        token, expires_at = self._tokens.issue(user.user_id, self._clock.now_ms() / 1000)
        return LoginResult(token=token, user_id=user.user_id, expires_at=expires_at)

    async def find(self, username: str) -> UserRecord | None:
        return await self._store.get_user_by_name(username)

    async def get(self, user_id: int) -> UserRecord | None:
        return await self._store.get_user(user_id)

    async def authenticate(self, token: str) -> TokenClaims:
        """Verify a token and that its user still exists and is not banned. Raises InvalidToken / TokenExpired /
        Banned."""
        claims = self._tokens.verify(token)
        user = await self._store.get_user(claims.user_id)
        if user is None:
            raise InvalidToken("invalid token")
        if user.banned:
            raise Banned("this account is banned")
        return claims
