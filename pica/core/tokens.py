"""Signed access tokens (JWT), one pinned HMAC algorithm, ``exp`` required."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import jwt

from pica.errors import InvalidToken, TokenExpired

_ISSUER = "pica"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
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

    def issue(self, user_id: int, now_seconds: float) -> tuple[str, int]:
        expires_at = int(now_seconds + self._ttl)
        claims = {
            "sub": str(user_id),
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
                options={"require": ["exp", "sub", "iss", "jti"]},
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
        return TokenClaims(user_id=user_id, expires_at=int(claims["exp"]), token_id=str(claims["jti"]))
