"""The rules of a WebSocket upgrade to ``/v1/ws`` (protocol section 2.1), once for the two ways a socket gets there.

- :mod:`pica.gateway.ws_raw`: the socket's first request is the upgrade (every browser and SDK opens a socket for
  it): the HTTP port's protocol reads that request head itself and never builds aiohttp's request machinery.
- :mod:`pica.gateway.ws`: an upgrade after other requests on a keep-alive socket, through aiohttp's handler.

Both call :func:`check_http_rate` (aiohttp through its error middleware, like every request), then :func:`authorize`,
and hand the new connection to :func:`start`, so the order of the checks, the errors and what a connection starts
with are the same whichever way it came.
"""

from __future__ import annotations

import http
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import msgspec

from pica.core.sessions import Identity
from pica.errors import Forbidden, InvalidToken, PicaError, RateLimited
from pica.gateway import http_headers
from pica.protocol.close_codes import CloseCode
from pica.protocol.codec import Encoding

if TYPE_CHECKING:
    from pica.gateway.connection import Connection
    from pica.gateway.services import GatewayServices

WS_PATH: Final = "/v1/ws"
MAX_DEVICE_CHARS: Final = 64

FREE_PATHS: Final = frozenset({"/healthz", "/metrics"})
"""Monitoring is not counted against an address: a scraper behind the same address must never starve clients."""


def client_address(peer: str, forwarded_for: str, trusted_proxies: frozenset[str]) -> str:
    """The client's address, as the per-address limits count it: the peer's, or, when the peer is one of
    ``trusted_proxies``, the last address its ``X-Forwarded-For`` appended (the one the proxy saw; earlier entries
    are whatever the client wrote)."""
    if peer in trusted_proxies:
        last = forwarded_for.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return peer


def check_http_rate(services: GatewayServices, path: str, address: str) -> None:
    """The per-address HTTP limit (``rates.http_per_address``), spent by every request but monitoring's."""
    rates = services.rates
    if rates is not None and path not in FREE_PATHS:
        rates.check(rates.http_address, address, "requests from this address")


def bearer(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None without the header."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if authorization:
        raise InvalidToken("Authorization must be 'Bearer <token>'")
    return None


@dataclass(frozen=True, slots=True)
class Upgrade:
    """What an accepted upgrade request says about its connection."""

    who: Identity | None
    """Authenticated by the request's header; None: the client sends an ``auth`` frame first."""
    encoding: Encoding
    device: str | None


async def authorize(services: GatewayServices, header: Callable[[str], str | None],
                    query: Mapping[str, str]) -> Upgrade:
    """Check an upgrade request (its origin, then its token if it carries one) and read its parameters. Raises the
    :class:`PicaError` the client is answered with. ``header`` looks a header up by name, case-insensitively."""
    origin = header("Origin")
    if services.allowed_origins and origin not in services.allowed_origins:
        raise Forbidden("origin not allowed")
    token = bearer(header("Authorization") or "")
    if token:  # paced like a TCP auth; over the pace, answered 429 before the upgrade
        await services.connect_turn()
    who = await services.accounts.authenticate(token) if token else None
    if who is not None and services.before_ready is not None:
        await services.before_ready(who.user_id)
    encoding = Encoding.MSGPACK if query.get("encoding") == "msgpack" else Encoding.JSON
    device = query.get("device") or None
    if device is not None and len(device) > MAX_DEVICE_CHARS:
        device = device[:MAX_DEVICE_CHARS]
    return Upgrade(who, encoding, device if who is not None else None)


def start(conn: Connection, services: GatewayServices, upgrade: Upgrade) -> None:
    """A connection whose ``101`` is written: counted, then ready (header authentication) or awaiting ``auth``."""
    services.metrics.connections_opened += 1
    if not services.accepting:
        conn.close(CloseCode.SERVER_SHUTDOWN, "server shutting down")
        return
    if upgrade.who is not None:
        conn.accept(upgrade.who, upgrade.device)
    else:
        services.hub.track(conn)


def error_answer(error: PicaError, path: str) -> bytes:
    """The whole HTTP answer (JSON body, ``Connection: close``) to a request refused below aiohttp: the same body,
    status and headers as the API's error middleware gives."""
    body = msgspec.json.encode(error.to_dict()) + b"\n"
    headers = {"Content-Type": "application/json; charset=utf-8", "Content-Length": str(len(body)),
               "Connection": "close", **http_headers.headers_for(path)}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = error.retry_after_header
    status = error.http_status
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    head = f"HTTP/1.1 {status} {phrase}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + body
