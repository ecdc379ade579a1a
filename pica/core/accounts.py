"""Registration, login and token authentication."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets

from pica.config import AuthConfig
from pica.core.bots import BotService, is_bot_key
from pica.core.passwords import PasswordHasher
from pica.core.ports import Clock
from pica.core.ratelimit import RateLimits
from pica.core.scram import ScramService
from pica.core.sessions import Identity, SessionService, SessionTokens
from pica.core.validation import check_password, check_password_guessability, normalize_username
from pica.errors import (
    Banned,
    Forbidden,
    InvalidCredentials,
    InvalidUsername,
    PicaError,
    RateLimited,
    UserNotFound,
)
from pica.logs import audit
from pica.store.base import Store, UserRecord


def invite_hash(code: str) -> str:
    """What the store keeps of an invite code: a copy of the database hands out no invitations. The code has 96
    random bits, so a plain SHA-256 (no salt, no stretching) is enough."""
    return hashlib.sha256(code.strip().encode()).hexdigest()

log = logging.getLogger(__name__)


class AccountService:
    def __init__(
        self, store: Store, hasher: PasswordHasher, sessions: SessionService, clock: Clock, config: AuthConfig,
        rates: RateLimits | None = None, scram: ScramService | None = None,
    ) -> None:
        self._rates = rates
        self._scram = scram
        """Keeps the XMPP gateway's SCRAM keys current: derived whenever a password is seen in clear."""
        self._store = store
        self._hasher = hasher
        self.sessions = sessions
        self._clock = clock
        self._config = config
        self.bots = BotService(store, clock, rates)

    async def register(self, username: object, password: object, address: str = "", *, invite: object = None,
                       by_admin: bool = False) -> int:
        """``address``: the client's, for the per-address registration limit. ``invite``: the code, when
        ``auth.registration`` is "invite". ``by_admin``: ``pica user create``, which every mode allows."""
        mode = "open" if by_admin else self._config.registration
        if mode == "closed":
            raise Forbidden("registration is closed: an administrator creates accounts")
        if mode == "invite" and (not isinstance(invite, str) or not invite):
            raise Forbidden("registration needs an invite code ('invite')")
        if self._rates is not None:
            try:
                await self._rates.check_register(address)
            except RateLimited:
                audit("register_refused", address=address, reason="rate_limited")
                raise
        name = normalize_username(username)
        password_hash = await self.new_password_hash(name, password)
        if mode == "invite":
            assert isinstance(invite, str)
            try:
                user_id = await self._store.register_with_invite(invite_hash(invite), name, password_hash,
                                                                 self._clock.now_ms())
            except Forbidden:
                audit("register_refused", address=address, reason="invalid_invite")
                raise
        else:
            user_id = await self._store.create_user(name, password_hash, self._clock.now_ms())
        audit("account_created", user_id=user_id, username=name, address=address, invited=mode == "invite")
        await self._password_seen(user_id, password)
        return user_id

    async def create_invite(self, uses: int, valid_for_s: float) -> str:
        """A new invite code, good for ``uses`` registrations during ``valid_for_s`` seconds. Only its hash is
        stored: the code is shown once, here."""
        code = secrets.token_urlsafe(12)
        now = self._clock.now_ms()
        await self._store.create_invite(invite_hash(code), uses, now + int(valid_for_s * 1000), now)
        audit("invite_created", uses=uses, expires_at=now + int(valid_for_s * 1000))
        return code

    async def login(self, username: object, password: object, address: str = "", user_agent: str = ""
                    ) -> SessionTokens:
        """A new session. ``address``: the client's, for the login limits (checked before any hashing, so that a
        flood of attempts costs no Argon2 time) and the session list, as is ``user_agent``."""
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
        await self._password_seen(user.user_id, password)
        return await self.sessions.open(user.user_id, address, user_agent)

    async def change_password(self, who: Identity, old_password: object, new_password: object,
                              address: str = "") -> int:
        """Replace the caller's password, proven by the old one (counted as a login attempt, so that a stolen
        access token cannot be used to guess it), and end every other session; how many ended."""
        user = await self._store.get_user(who.user_id)
        if user is None:
            raise InvalidCredentials("wrong password")
        await self.confirm_password(user, old_password, address, "password_change")
        ended = await self._set_password(user.user_id, user.username, new_password, keep=who.session_id)
        audit("password_changed", user_id=user.user_id, address=address, sessions_ended=ended)
        return ended

    async def confirm_password(self, user: UserRecord, password: object, address: str, action: str) -> None:
        """A signed-in user proves their password again before a sensitive ``action`` (a password change, deleting
        the account). It pays like a login (``rates.login_*``: checked first, a wrong password counted as a failed
        login), so that a stolen access token is no side door for guessing the password. Raises
        InvalidCredentials or RateLimited, with an audit record ``<action>_refused``."""
        if self._rates is not None:
            try:
                await self._rates.check_login(address, user.username)
            except RateLimited as exc:
                audit(f"{action}_refused", user_id=user.user_id, address=address, reason="rate_limited",
                      retry_after=exc.retry_after)
                raise
        if not isinstance(password, str) or not await self._hasher.verify(user.password_hash, password):
            if self._rates is not None:
                await self._rates.login_failed(address, user.username)
            audit(f"{action}_refused", user_id=user.user_id, address=address, reason="wrong_password")
            raise InvalidCredentials("wrong password")

    async def reset_password(self, user_id: int, new_password: object) -> int:
        """An administrator's reset: a new password and every session ended; how many ended."""
        user = await self._store.get_user(user_id)
        if user is None:
            raise UserNotFound(f"user {user_id} does not exist")
        ended = await self._set_password(user_id, user.username, new_password, keep=None)
        audit("password_reset", user_id=user_id, sessions_ended=ended)
        return ended

    async def _set_password(self, user_id: int, username: str, new_password: object, *, keep: str | None) -> int:
        password_hash = await self.new_password_hash(username, new_password)
        ended = await self._store.set_password(user_id, password_hash, self._clock.now_ms(), keep=keep)
        await self._password_seen(user_id, new_password)
        return ended

    async def _password_seen(self, user_id: int, password: object) -> None:
        """The password was just proven or set: SCRAM keys derived for it unless current ones exist. A failure
        costs the user SCRAM logins until the next time (logged), never this request."""
        if self._scram is None or not isinstance(password, str):
            return
        try:
            await self._scram.remember(user_id, password)
        except PicaError as exc:
            log.warning("scram keys not derived", extra={"user_id": user_id, "code": exc.code})

    async def new_password_hash(self, username: str, password: object) -> str:
        """The Argon2id hash of a new password of ``username``, once it passes the password rules (length,
        guessability); raises WeakPassword."""
        secret = check_password(password, self._config.min_password_length)
        await asyncio.to_thread(check_password_guessability, secret, username, self._config.min_password_score)
        return await self._hasher.hash(secret)

    async def get(self, user_id: int) -> UserRecord | None:
        return await self._store.get_user(user_id)

    async def look_up(self, viewer: int, *, username: str | None = None, user_id: int | None = None
                      ) -> UserRecord | None:
        """A user's public record as another user asks for it (``rates.user_lookups_per_user``: the directory must
        not be scraped)."""
        if self._rates is not None:
            self._rates.check(self._rates.lookups, viewer, "user look-ups")
        if username is not None:
            return await self._store.get_user_by_name(username)
        assert user_id is not None
        return await self._store.get_user(user_id)

    async def authenticate(self, token: str) -> Identity:
        """Who a token (or a bot's API key) speaks for: its session must be live and its user not banned. Raises
        InvalidToken / TokenExpired / SessionEnded / Banned."""
        if is_bot_key(token):
            return await self.bots.authenticate(token)
        return await self.sessions.authenticate(token)
