"""``GET /v1/gateway``: where this user's client should connect (the dispatch endpoint of cluster mode)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from pica.api.common import caller, json_response, services
from pica.api.spec import route
from pica.core.placement import NodeAddress, rank_nodes
from pica.errors import Unavailable


class Node(msgspec.Struct):
    node_id: str
    http: str
    """Base URL of the HTTP API, e.g. ``http://10.0.0.5:8080``."""
    ws: str
    """WebSocket URL, e.g. ``ws://10.0.0.5:8080/v1/ws``."""
    tcp: str
    """``host:port`` of the framed TCP gateway; empty when it is off."""
    connections: int
    """The node's open connections at its last heartbeat (informative)."""

    @classmethod
    def of(cls, n: NodeAddress) -> Node:
        return cls(n.node_id, n.http, n.ws, n.tcp, n.connections)


class Nodes(msgspec.Struct):
    """The live nodes, the one this user should use first."""

    nodes: list[Node]


async def gateway(request: web.Request) -> web.Response:
    node = services(request)
    user_id = await caller(request)
    if node.live_nodes is None:
        raise Unavailable("dispatch is not configured on this node")
    nodes = rank_nodes(user_id, await node.live_nodes())
    if not nodes:
        raise Unavailable("no live node")
    return json_response(Nodes([Node.of(n) for n in nodes]))


def add_routes(app: web.Application) -> None:
    route(app, "GET", "/v1/gateway", gateway, summary="Where this user's client should connect", response=Nodes,
          tag="accounts")
