"""``GET /v1/gateway``: where this user's client should connect (the dispatch endpoint of cluster mode)."""

from __future__ import annotations

from aiohttp import web

from pica.api.common import caller, json_response, services
from pica.core.placement import rank_nodes
from pica.errors import Unavailable


async def gateway(request: web.Request) -> web.Response:
    node = services(request)
    user_id = await caller(request)
    if node.live_nodes is None:
        raise Unavailable("dispatch is not configured on this node")
    nodes = rank_nodes(user_id, await node.live_nodes())
    if not nodes:
        raise Unavailable("no live node")
    return json_response({"nodes": [n.as_json() for n in nodes]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/gateway", gateway)
