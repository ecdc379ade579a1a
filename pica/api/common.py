"""Helpers shared by the HTTP handlers: JSON out, the caller's identity, path parameters."""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec
from aiohttp import web

from pica.api.spec import parse_int, struct_body
from pica.core.sessions import Identity
from pica.errors import PicaError, RateLimited, Unauthenticated, Unavailable
from pica.gateway.services import GatewayServices
from pica.gateway.upgrade import check_http_rate as check_address_rate
from pica.gateway.upgrade import client_address as gateway_client_address
from pica.gateway.ws import SERVICES_KEY

STARTED_KEY: Final = web.RequestKey("pica_started", float)
"""When the node began to handle the request (monotonic seconds; set by the metrics middleware in http.py): where
its latency starts, an HTTP send's send→ack included."""

_json_encode: Final = msgspec.json.Encoder().encode

T = TypeVar("T")


def json_response(data: Any, status: int = 200) -> web.Response:
    # A newline at the end, as command-line tools expect (curl's output then ends its line before the prompt).
    return web.Response(body=_json_encode(data) + b"\n", status=status, content_type="application/json")


def error_response(error: PicaError) -> web.Response:
    response = json_response(error.to_dict(), status=error.http_status)
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = error.retry_after_header
    return response


def client_address(request: web.Request) -> str:
    """The client's address, as the per-address limits count it (pica.gateway.upgrade.client_address)."""
    return gateway_client_address(request.remote or "", request.headers.get("X-Forwarded-For", ""),
                                  services(request).trusted_proxies)


def check_http_rate(request: web.Request) -> None:
    """The per-address HTTP limit (``rates.http_per_address``)."""
    check_address_rate(services(request), request.path, client_address(request))


def services(request: web.Request) -> GatewayServices:
    return request.app[SERVICES_KEY]


async def body_of(request: web.Request, kind: type[T]) -> T:
    """The request's JSON body as ``kind`` (``spec.struct_body`` within ``limits.http_body_timeout``)."""
    return await struct_body(request, kind, timeout=services(request).limits.http_body_timeout)


async def identity(request: web.Request) -> Identity:
    """Who sends a request (``Authorization: Bearer <token>``), and in which session."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("send 'Authorization: Bearer <token>'")
    return await services(request).accounts.authenticate(token)


async def admin_caller(request: web.Request) -> Identity:
    """The authenticated administrator of a request (``auth="admin"`` routes): 401 without a valid token, 403
    ``forbidden`` for a user without the admin role."""
    who = await identity(request)
    admin = services(request).admin
    if admin is None:
        raise Unavailable("administration is not available on this node")
    await admin.require_admin(who.user_id)
    return who


async def caller(request: web.Request) -> int:
    """The authenticated user of a request."""
    return (await identity(request)).user_id


PATH_PARAMETERS: Final[dict[str, type]] = {"group_id": int, "user_id": int, "seq": int}
"""The path parameters that are integers (from 1 to 2^53 - 1, read by ``path_int``), as the OpenAPI document
declares them; any other is a string. A route with an integer parameter of a new name adds it here."""


def path_int(request: web.Request, name: str) -> int:
    return parse_int(request.match_info[name], name, 1)
