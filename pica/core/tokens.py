"""Signed access tokens (JWT, one pinned HMAC algorithm, ``exp`` required) and refresh tokens (a MAC over their
session and generation). Both name a session (:mod:`pica.store.sessions`): revoking it refuses them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import jwt

from pica.errors import InvalidToken, TokenExpired

_ISSUER = "pica"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    session_id: str
    expires_at: int
    """Seconds since the epoch."""
    token_id: str


class TokenService:
    def __init__(self, secret: str, ttl_seconds: float, algorithm: str = "HS256") -> None:
        if len(secret) < 32:
            raise ValueError("token secret must have at least 32 characters")
        self._secret = secret
        self._ttl = ttl_seconds
        self._algorithm = algorithm

    def issue(self, user_id: int, session_id: str, now_seconds: float) -> tuple[str, int]:
        expires_at = int(now_seconds + self._ttl)
        claims = {
            "sub": str(user_id),
            "sid": session_id,
            "iss": _ISSUER,
            "iat": int(now_seconds),
            "exp": expires_at,
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(claims, self._secret, algorithm=self._algorithm), expires_at

    def verify(self, token: str) -> TokenClaims:
        """Raises TokenExpired or InvalidToken. The algorithm list is pinned, never read from the token."""
        if not token.isascii():
            # No token holds anything else; header bytes that are not UTF-8 arrive as surrogate escapes, which the
            # JWT library cannot even encode.
            raise InvalidToken("invalid token")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                issuer=_ISSUER,
                options={"require": ["exp", "sub", "iss", "jti", "sid"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("token expired") from None
        except jwt.PyJWTError:
            raise InvalidToken("invalid token") from None
        try:
            user_id = int(claims["sub"])
        except (TypeError, ValueError):
            raise InvalidToken("invalid token") from None
        if not 0 < user_id < 2**53:  # only the secret's holder could sign one, but no store could look it up
            raise InvalidToken("invalid token")
        session_id = claims["sid"]
        if not isinstance(session_id, str) or not session_id:
            raise InvalidToken("invalid token")
        return TokenClaims(user_id=user_id, session_id=session_id, expires_at=int(claims["exp"]),
                           token_id=str(claims["jti"]))


def new_session_id() -> str:
    """128 random bits in hex: no dots (refresh tokens use them as separators), and no leading '-', which a
    command line would read as an option (``pica user revoke --session <id>``), as a URL-safe id would 1 time in 64."""
    return secrets.token_hex(16)


class RefreshTokens:
    """``r1.<session>.<generation>.<mac>``: the store keeps no secret of a session, only its current generation, and
    any token this server ever issued can be recognised as such, so that an old one coming back is known to be a
    reuse (revoke the family) and not a forgery (refuse it, nothing more). The key is derived from the token
    secret: rotating that secret ends every session."""

    _PREFIX = "r1"

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"pica refresh token v1", hashlib.sha256).digest()

    def _mac(self, session_id: str, generation: int) -> str:
        digest = hmac.new(self._key, f"{session_id}.{generation}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, session_id: str, generation: int) -> str:
        return f"{self._PREFIX}.{session_id}.{generation}.{self._mac(session_id, generation)}"

    def parse(self, token: object) -> tuple[str, int]:
        """The (session, generation) a genuine refresh token names; InvalidToken for anything else."""
        if not isinstance(token, str) or len(token) > 200 or not token.isascii():
            raise InvalidToken("invalid refresh token")
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != self._PREFIX or not parts[2].isdigit() or len(parts[2]) > 9:
            raise InvalidToken("invalid refresh token")
        session_id, generation = parts[1], int(parts[2])
        if not session_id or not hmac.compare_digest(parts[3], self._mac(session_id, generation)):
            raise InvalidToken("invalid refresh token")
        return session_id, generation
