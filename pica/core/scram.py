"""SCRAM-SHA-256 and SCRAM-SHA-1 (RFC 5802, RFC 7677) for the XMPP gateway: the pure exchange and the service that
keeps the credentials (docs/protocol.md, 31.3).

Pica keeps passwords as Argon2id hashes, from which SCRAM's keys cannot be computed. So the keys are derived from
the password itself whenever the server sees it (``AccountService``: registration, every password login over HTTP or
XMPP PLAIN, a password change or reset). They are stored per user and mechanism with the SHA-256 of the password hash
they were derived under; a password hash changed since without them (an account older than the keys, or restored from
a backup) makes them stale, and SCRAM is refused for that user until the next password login derives them again. A
SCRAM attempt for a user without keys fails like a wrong password (with a made-up salt, so that the exchange does not
tell which users exist), and every attempt goes through the login rate limits.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

from pica.core.ratelimit import RateLimits
from pica.core.sessions import Identity, SessionService
from pica.core.validation import normalize_username
from pica.errors import Banned, InvalidCredentials, InvalidUsername
from pica.logs import audit
from pica.store.base import ScramKeyRecord, Store, UserRecord

MECHANISMS: Final = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-1": "sha1"}
"""Offered in this order (the stronger first)."""

ITERATIONS: Final = 4096
"""PBKDF2 iterations of the salted password: RFC 7677's minimum for SHA-256."""


def password_tag(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()


def derive(mechanism: str, password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) of RFC 5802 section 3."""
    name = MECHANISMS[mechanism]
    salted = hashlib.pbkdf2_hmac(name, password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", name).digest()
    return hashlib.new(name, client_key).digest(), hmac.new(salted, b"Server Key", name).digest()


@dataclass(frozen=True, slots=True)
class ClientFirst:
    gs2_header: str
    username: str
    nonce: str
    bare: str


def _unescape(name: str) -> str | None:
    if "=" in name.replace("=2C", "").replace("=3D", ""):
        return None
    return name.replace("=2C", ",").replace("=3D", "=")


def parse_client_first(data: str) -> ClientFirst | None:
    """``n,,n=<user>,r=<nonce>`` (no channel binding: the ``-PLUS`` variants are not offered; ``y`` is accepted)."""
    parts = data.split(",", 2)
    if len(parts) != 3 or parts[0] not in ("n", "y") or (parts[1] and not parts[1].startswith("a=")):
        return None
    bare = parts[2]
    fields = dict(item.split("=", 1) for item in bare.split(",") if "=" in item)
    username = _unescape(fields.get("n", ""))
    nonce = fields.get("r", "")
    if not username or not nonce or not bare.startswith("n=") or len(nonce) > 256:
        return None
    return ClientFirst(parts[0] + "," + parts[1] + ",", username, nonce, bare)


def server_first(nonce: str, salt: str, iterations: int) -> str:
    return f"r={nonce},s={salt},i={iterations}"


def verify(mechanism: str, key: ScramKeyRecord, client: ClientFirst, first: str, nonce: str, final: str
           ) -> str | None:
    """The server's final message (``v=...``) if ``final`` proves the password, else None."""
    name = MECHANISMS[mechanism]
    without_proof, sep, proof_part = final.rpartition(",p=")
    fields = dict(item.split("=", 1) for item in without_proof.split(",") if "=" in item)
    if not sep or fields.get("r") != nonce:
        return None
    if fields.get("c") != base64.b64encode(client.gs2_header.encode()).decode():
        return None
    try:
        proof = base64.b64decode(proof_part, validate=True)
        stored_key, server_key = base64.b64decode(key.stored_key), base64.b64decode(key.server_key)
    except (binascii.Error, ValueError):
        return None
    auth_message = f"{client.bare},{first},{without_proof}".encode()
    signature = hmac.new(stored_key, auth_message, name).digest()
    if len(proof) != len(signature):
        return None
    client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
    if not hmac.compare_digest(hashlib.new(name, client_key).digest(), stored_key):
        return None
    return "v=" + base64.b64encode(hmac.new(server_key, auth_message, name).digest()).decode()


class ScramService:
    """SCRAM credentials kept, and logins proven with them turned into sessions."""

    def __init__(self, store: Store, sessions: SessionService, rates: RateLimits | None) -> None:
        self._store = store
        self._sessions = sessions
        self._rates = rates

    async def remember(self, user_id: int, password: str) -> None:
        """After a login that proved ``password``: derive the user's SCRAM keys unless current ones exist."""
        user = await self._store.get_user(user_id)
        if user is None:
            return
        tag = password_tag(user.password_hash)
        missing = [m for m in MECHANISMS if (k := await self._store.scram_key(user_id, m)) is None
                   or k.password_tag != tag]
        if not missing:
            return
        salt = secrets.token_bytes(16)
        keys = []
        for mechanism in missing:
            stored, server = await asyncio.to_thread(derive, mechanism, password, salt, ITERATIONS)
            keys.append(ScramKeyRecord(user_id, mechanism, base64.b64encode(salt).decode(), ITERATIONS,
                                       base64.b64encode(stored).decode(), base64.b64encode(server).decode(), tag))
        await self._store.set_scram_keys(keys)

    async def credentials(self, username: str, mechanism: str, address: str
                          ) -> tuple[UserRecord | None, ScramKeyRecord]:
        """The user and their current keys; for an unknown user, or one without current keys, made-up keys that
        no proof matches. Raises RateLimited (the login limits)."""
        try:
            name: str | None = normalize_username(username)
        except InvalidUsername:
            name = None
        if self._rates is not None:
            await self._rates.check_login(address, name or username)
        user = await self._store.get_user_by_name(name) if name is not None else None
        key = await self._store.scram_key(user.user_id, mechanism) if user is not None else None
        if user is None or key is None or key.password_tag != password_tag(user.password_hash):
            fake = base64.b64encode(secrets.token_bytes(32)).decode()
            key = ScramKeyRecord(0, mechanism, base64.b64encode(secrets.token_bytes(16)).decode(), ITERATIONS,
                                 fake, fake, "")
        return user, key

    async def failed(self, username: str, address: str) -> None:
        if self._rates is not None:
            await self._rates.login_failed(address, username)
        audit("login_failed", account=username, address=address, reason="scram")

    async def login(self, user: UserRecord, address: str, user_agent: str) -> tuple[Identity, str]:
        """The session of a proven SCRAM login, and its identity. Raises Banned."""
        if user.banned:
            audit("login_refused", account=user.username, user_id=user.user_id, address=address, reason="banned")
            raise Banned("this account is banned")
        tokens = await self._sessions.open(user.user_id, address, user_agent)
        return await self._sessions.authenticate(tokens.token), tokens.session_id

    @staticmethod
    def refused() -> InvalidCredentials:
        return InvalidCredentials("wrong username or password")
