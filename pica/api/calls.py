"""HTTP: TURN credentials for calls (protocol "Calls", ``GET /v1/turn``). The call signalling itself travels on the
socket (pica/core/calls.py)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from pica.api import spec
from pica.api.common import caller, json_response, services
from pica.core.turn import turn_credentials


class TurnResponse(msgspec.Struct):
    urls: list[str]
    username: str
    """``<expiry>:<user_id>``, expiry in seconds since the epoch."""
    credential: str
    """base64 HMAC-SHA1 of ``username`` under the TURN server's shared secret."""
    ttl: int
    """Seconds the credential is valid."""


async def get_turn(request: web.Request) -> web.Response:
    """GET /v1/turn -> credentials for the configured TURN servers; 501 ``not_configured`` without ``[turn]``."""
    user_id = await caller(request)
    node = services(request)
    found = turn_credentials(node.turn, user_id, node.clock.now_ms() // 1000)
    return json_response(TurnResponse(list(found.urls), found.username, found.credential, found.ttl))


def add_routes(app: web.Application) -> None:
    spec.route(app, "GET", "/v1/turn", get_turn, summary="TURN credentials for a call (coturn's shared-secret "
               "scheme)", response=TurnResponse, auth="user", tag="calls")
