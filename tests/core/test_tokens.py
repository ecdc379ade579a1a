"""Access tokens: our own check of the one token shape we issue refuses exactly what PyJWT (the reference it
replaced) refuses with the same pinned options, and accepts what it accepts."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from pica.core.tokens import TokenService
from pica.errors import InvalidToken, TokenExpired

SECRET = "s" * 64


def signed(claims: dict[str, Any], *, secret: str = SECRET, algorithm: str = "HS256",
           headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(claims, secret, algorithm=algorithm, headers=headers)


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "42", "sid": "session-1", "iss": "pica", "iat": now, "exp": now + 600,
                            "jti": "abc"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def pyjwt_outcome(token: str, algorithm: str = "HS256") -> str:
    """What the PyJWT check the server used before says of ``token``: ok, expired or invalid."""
    try:
        decoded = jwt.decode(token, SECRET, algorithms=[algorithm], issuer="pica",
                             options={"require": ["exp", "sub", "iss", "jti", "sid"]})
    except jwt.ExpiredSignatureError:
        return "expired"
    except jwt.PyJWTError:
        return "invalid"
    sub, sid = decoded["sub"], decoded["sid"]
    if not isinstance(sid, str) or not sid or not sub.isdigit() or not 0 < int(sub) < 2**53:
        return "invalid"  # the server's own checks after the library's
    return "ok"


def our_outcome(token: str, algorithm: str = "HS256") -> str:
    try:
        TokenService(SECRET, 600, algorithm).verify(token)
    except TokenExpired:
        return "expired"
    except InvalidToken:
        return "invalid"
    return "ok"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_token_we_issue_is_accepted_by_us_and_by_pyjwt() -> None:
    tokens = TokenService(SECRET, 600)
    token, expires_at = tokens.issue(42, "session-1", time.time())
    found = tokens.verify(token)
    assert (found.user_id, found.session_id, found.expires_at) == (42, "session-1", expires_at)
    assert pyjwt_outcome(token) == "ok"


def test_a_token_signed_by_pyjwt_is_accepted() -> None:
    assert our_outcome(signed(claims())) == "ok"


@pytest.mark.parametrize("case", [
    "expired", "expired at this second", "no exp", "exp a string", "no sub", "no sid", "no jti",
    "no iss", "another issuer", "sub not a number", "sub a list", "sub past 2^53", "sub zero", "sid a number",
    "sid empty", "iat in the future", "iat a string", "nbf in the future", "nbf in the past", "an audience",
    "another key", "HS512 against HS256", "alg none", "tampered payload", "tampered signature", "two dots only",
    "four segments", "a payload that is a list", "a critical header",
])
def test_our_check_agrees_with_pyjwt(case: str) -> None:
    now = int(time.time())
    token = {
        "expired": lambda: signed(claims(exp=now - 10)),
        "expired at this second": lambda: signed(claims(exp=now - 1)),
        "no exp": lambda: signed(claims(exp=None)),
        "exp a string": lambda: signed(claims(exp="soon")),
        "no sub": lambda: signed(claims(sub=None)),
        "no sid": lambda: signed(claims(sid=None)),
        "no jti": lambda: signed(claims(jti=None)),
        "no iss": lambda: signed(claims(iss=None)),
        "another issuer": lambda: signed(claims(iss="other")),
        "sub not a number": lambda: signed(claims(sub="abc")),
        "sub a list": lambda: jwt.api_jws.encode(json.dumps(claims(sub=[1])).encode(), SECRET, algorithm="HS256"),
        "sub past 2^53": lambda: signed(claims(sub=str(2**70))),
        "sub zero": lambda: signed(claims(sub="0")),
        "sid a number": lambda: signed(claims(sid=5)),
        "sid empty": lambda: signed(claims(sid="")),
        "iat in the future": lambda: signed(claims(iat=now + 3600)),
        "iat a string": lambda: signed(claims(iat="now")),
        "nbf in the future": lambda: signed(claims(nbf=now + 3600)),
        "nbf in the past": lambda: signed(claims(nbf=now - 3600)),
        "an audience": lambda: signed(claims(aud="someone")),
        "another key": lambda: signed(claims(), secret="k" * 64),
        "HS512 against HS256": lambda: signed(claims(), algorithm="HS512"),
        "alg none": lambda: jwt.encode(claims(), "", algorithm="none"),
        "tampered payload": lambda: _swap_payload(signed(claims()), claims(sub="43")),
        "tampered signature": lambda: _tamper_signature(signed(claims())),
        "two dots only": lambda: ".".join(signed(claims()).split(".")[:2]),
        "four segments": lambda: signed(claims()) + ".x",
        "a payload that is a list": lambda: jwt.api_jws.encode(b"[1, 2]", SECRET, algorithm="HS256"),
        "a critical header": lambda: signed(claims(), headers={"crit": ["exp"]}),
    }[case]()
    assert our_outcome(token) == pyjwt_outcome(token), token


def test_stricter_than_pyjwt_where_no_token_of_ours_differs() -> None:
    """Two spellings PyJWT lets through and no token we issue has: a boolean ``exp`` (PyJWT reads True as 1, so
    "expired"; refused here as invalid), and a signature with base64 padding (accepted by PyJWT for AWS's load
    balancers; here only the canonical encoding of the MAC is)."""
    assert pyjwt_outcome(signed(claims(exp=True))) == "expired"
    assert our_outcome(signed(claims(exp=True))) == "invalid"
    padded = signed(claims()) + "="
    assert pyjwt_outcome(padded) == "ok"
    assert our_outcome(padded) == "invalid"


def test_the_algorithm_is_the_configured_one_for_each_choice() -> None:
    for algorithm in ("HS256", "HS384", "HS512"):
        token, _ = TokenService(SECRET, 600, algorithm).issue(7, "s", time.time())
        assert our_outcome(token, algorithm) == "ok" == pyjwt_outcome(token, algorithm)
        other = "HS512" if algorithm != "HS512" else "HS256"
        assert our_outcome(token, other) == "invalid" == pyjwt_outcome(token, other)


def test_garbage_is_refused_without_decoding() -> None:
    tokens = TokenService(SECRET, 600)
    for token in ("", ".", "..", "a.b.c", "é.b.c", "x" * 5000, "a" * 4000 + "..", "\udcff.a.b"):
        with pytest.raises(InvalidToken):
            tokens.verify(token)


def _swap_payload(token: str, new_claims: dict[str, Any]) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{b64(json.dumps(new_claims).encode())}.{signature}"


def _tamper_signature(token: str) -> str:
    return token[:-2] + ("AA" if not token.endswith("AA") else "BB")
