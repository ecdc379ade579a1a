"""``GET /v1/gateway`` on a single node: the node itself, for authenticated callers only."""

from __future__ import annotations

import aiohttp

from tests.conftest import Node, new_user


async def test_a_single_node_sends_clients_to_itself(node: Node) -> None:
    alice = await new_user(node.url)
    headers = {"Authorization": f"Bearer {alice.token}"}
    async with aiohttp.ClientSession() as session, session.get(node.url + "/v1/gateway", headers=headers) as resp:
        assert resp.status == 200
        body = await resp.json()
    (only,) = body["nodes"]
    port = node.url.rsplit(":", 1)[1]
    assert only["http"] == node.url
    assert only["ws"] == f"ws://127.0.0.1:{port}/v1/ws"
    assert only["tcp"] == f"127.0.0.1:{node.server.tcp_port}"
    assert only["connections"] >= 0 and only["node_id"]


async def test_dispatch_needs_a_token(node: Node) -> None:
    async with aiohttp.ClientSession() as session, session.get(node.url + "/v1/gateway") as resp:
        assert resp.status == 401
        assert (await resp.json())["code"] == "unauthenticated"
