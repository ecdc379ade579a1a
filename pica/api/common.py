"""Helpers shared by the HTTP handlers: JSON in and out, the caller's identity, parameter parsing."""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec
from aiohttp import web

from pica.api.spec import read_body
from pica.core.sessions import Identity
from pica.errors import BadRequest, PicaError, RateLimited, Unauthenticated
from pica.gateway.services import GatewayServices
from pica.gateway.ws import SERVICES_KEY
from pica.protocol.codec import MALFORMED

MAX_ID: Final = 2**53 - 1
"""Largest id, seq or count accepted from a client: what every client (JavaScript included) can represent, and well
inside SQLite's and PostgreSQL's 64-bit integers."""

_INTEGER: Final = re.compile(r"-?[0-9]{1,20}")
"""A path or query integer: ASCII digits only (``str.isdigit`` also takes '²' and other scripts' digits), at most one
minus sign (which the range check then refuses)."""

STARTED_KEY: Final = web.RequestKey("pica_started", float)
"""When the node began to handle the request (monotonic seconds; set by the metrics middleware in http.py): where
its latency starts, an HTTP send's send→ack included."""

_json_encode: Final = msgspec.json.Encoder().encode
_json_decode: Final = msgspec.json.Decoder().decode


def json_response(data: Any, status: int = 200) -> web.Response:
    # A newline at the end, as command-line tools expect (curl's output then ends its line before the prompt).
    return web.Response(body=_json_encode(data) + b"\n", status=status, content_type="application/json")


def error_response(error: PicaError) -> web.Response:
    response = json_response(error.to_dict(), status=error.http_status)
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = error.retry_after_header
    return response


def client_address(request: web.Request) -> str:
    """The client's address, as the per-address limits count it: the peer's, or, when the peer is one of
    ``trusted_proxies``, the last address its ``X-Forwarded-For`` appended (the one the proxy saw; earlier entries
    are whatever the client wrote)."""
    peer = request.remote or ""
    if peer in services(request).trusted_proxies:
        forwarded = request.headers.get("X-Forwarded-For", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return peer


_FREE_PATHS: Final = frozenset({"/healthz", "/metrics"})
"""Monitoring is not counted against an address: a scraper behind the same address must never starve clients."""


def check_http_rate(request: web.Request) -> None:
    """The per-address HTTP limit (``rates.http_per_address``)."""
    rates = services(request).rates
    if rates is not None and request.path not in _FREE_PATHS:
        rates.check(rates.http_address, client_address(request), "requests from this address")


async def json_body(request: web.Request) -> dict[str, Any]:
    raw = await read_body(request, timeout=services(request).limits.http_body_timeout)
    if not raw:
        return {}
    try:
        data = _json_decode(raw)
    except MALFORMED:
        raise BadRequest("request body must be JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def services(request: web.Request) -> GatewayServices:
    return request.app[SERVICES_KEY]


async def identity(request: web.Request) -> Identity:
    """Who sends a request (``Authorization: Bearer <token>``), and in which session."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("send 'Authorization: Bearer <token>'")
    return await services(request).accounts.authenticate(token)


async def caller(request: web.Request) -> int:
    """The authenticated user of a request."""
    return (await identity(request)).user_id


def int_param(request: web.Request, name: str, *, minimum: int = 0) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    return _to_int(raw, name, minimum)


def path_int(request: web.Request, name: str) -> int:
    return _to_int(request.match_info[name], name, 1)


def id_list_param(request: web.Request, name: str) -> list[int]:
    """A query parameter listing ids, ``1,2,3`` (blanks around and empty items ignored), each one checked like a
    path id: a decimal integer from 1 to MAX_ID."""
    parts = [part.strip() for part in request.query.get(name, "").split(",")]
    try:
        return [_to_int(part, name, 1) for part in parts if part]
    except BadRequest:
        raise BadRequest(f"{name} must be comma-separated integers from 1 to 2^53 - 1") from None


def _to_int(raw: str, name: str, minimum: int) -> int:
    if not _INTEGER.fullmatch(raw):
        raise BadRequest(f"{name} must be an integer")
    value = int(raw)
    if value < minimum or value > MAX_ID:
        raise BadRequest(f"{name} is out of range")
    return value


def body_int(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_ID:
        raise BadRequest(f"'{name}' must be a positive integer")
    return value


def body_bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if not isinstance(value, bool):
        raise BadRequest(f"'{name}' must be true or false")
    return value
