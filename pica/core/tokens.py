"""Signed access tokens (JWT, one pinned HMAC algorithm, ``exp`` required) and refresh tokens (a MAC over their
session and generation). Both name a session (:mod:`pica.store.sessions`): revoking it refuses them.

Access tokens are checked on every socket authentication and every HTTP request, so the check is written here for
the one shape of token this server issues rather than through a general JWT library (PyJWT spent about 60 µs per
token, most of a connect's CPU, on machinery for algorithms and key types a pinned HMAC never needs). The rules are
the same and are tested side by side with PyJWT's (tests/core/test_tokens.py): the algorithm comes from the
configuration, never from the token (a header naming another one, or ``none``, is refused); the signature is
compared in constant time against its one canonical encoding; ``exp``, ``sub``, ``iss``, ``jti`` and ``sid`` are
required; a token with ``nbf`` or ``iat`` in the future, an ``aud``, or ``crit`` headers is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from pica.errors import InvalidToken, TokenExpired

_ISSUER = "pica"

_DIGESTS: Final = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}

MAX_TOKEN_CHARS: Final = 4096
"""Longer is no token of ours (ours are about 250 characters): refused before any decoding."""

_json = msgspec.json.Decoder()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


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
        if algorithm not in _DIGESTS:
            raise ValueError(f"unsupported token algorithm {algorithm!r}")
        self._ttl = ttl_seconds
        self._algorithm = algorithm
        self._mac = hmac.new(secret.encode(), digestmod=_DIGESTS[algorithm])
        """Keyed once; each token's MAC starts from a copy (the key's padding is not hashed again)."""
        self._header = _b64url(msgspec.json.encode({"alg": algorithm, "typ": "JWT"}))
        """The header segment of every token this service issues: a token carrying it needs no header decoding."""

    def _signature(self, signing_input: str) -> str:
        mac = self._mac.copy()
        mac.update(signing_input.encode("ascii"))
        return _b64url(mac.digest())

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
        signing_input = f"{self._header}.{_b64url(msgspec.json.encode(claims))}"
        return f"{signing_input}.{self._signature(signing_input)}", expires_at

    def verify(self, token: str) -> TokenClaims:
        """Raises TokenExpired or InvalidToken. The algorithm is pinned, never read from the token."""
        if not token.isascii() or len(token) > MAX_TOKEN_CHARS:
            # No token holds anything else; header bytes that are not UTF-8 arrive as surrogate escapes.
            raise InvalidToken("invalid token")
        header, dot, rest = token.partition(".")
        payload, dot2, signature = rest.partition(".")
        if not dot or not dot2 or "." in signature:
            raise InvalidToken("invalid token")
        if header != self._header:
            self._check_header(header)
        # Compared with the one canonical encoding of the expected MAC: any other spelling of it is refused too.
        if not hmac.compare_digest(signature, self._signature(f"{header}.{payload}")):
            raise InvalidToken("invalid token")
        try:
            claims = _json.decode(_b64url_decode(payload))
        except (binascii.Error, ValueError, msgspec.DecodeError):
            raise InvalidToken("invalid token") from None
        if not isinstance(claims, dict):
            raise InvalidToken("invalid token")
        return self._claims(claims, time.time())

    def _check_header(self, header: str) -> None:
        """A header other than ours, as another issuer might spell it: the same algorithm, nothing critical."""
        try:
            fields = _json.decode(_b64url_decode(header))
        except (binascii.Error, ValueError, msgspec.DecodeError):
            raise InvalidToken("invalid token") from None
        if not isinstance(fields, dict) or fields.get("alg") != self._algorithm or "crit" in fields:
            raise InvalidToken("invalid token")

    @staticmethod
    def _claims(claims: dict[str, Any], now: float) -> TokenClaims:
        expires_at, subject, session_id = claims.get("exp"), claims.get("sub"), claims.get("sid")
        if (not isinstance(expires_at, int | float) or isinstance(expires_at, bool)
                or claims.get("iss") != _ISSUER or not isinstance(claims.get("jti"), str) or "aud" in claims
                or not isinstance(subject, str) or not isinstance(session_id, str) or not session_id):
            raise InvalidToken("invalid token")
        for claim in ("nbf", "iat"):
            if claim in claims and (not _is_time(claims[claim]) or claims[claim] > now):
                raise InvalidToken("invalid token")
        if expires_at <= now:
            raise TokenExpired("token expired")
        try:
            user_id = int(subject)
        except ValueError:
            raise InvalidToken("invalid token") from None
        if not 0 < user_id < 2**53:  # only the secret's holder could sign one, but no store could look it up
            raise InvalidToken("invalid token")
        return TokenClaims(user_id=user_id, session_id=session_id, expires_at=int(expires_at),
                           token_id=claims["jti"])


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


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
