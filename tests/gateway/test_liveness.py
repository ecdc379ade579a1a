"""Online state, multi-device presence transitions and the WebSocket Origin allow-list."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import aiohttp

from pica.app import PicaServer
from tests.conftest import Node, connect, make_config, new_user


async def wait_for(predicate: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_user_is_online_while_any_device_is_connected(node: Node) -> None:
    hub = node.server.hub
    changes: list[tuple[int, bool]] = []
    hub.add_presence_listener(lambda user_id, online: changes.append((user_id, online)))
    alice = await new_user(node.url)
    assert not hub.is_online(alice.user_id)
    phone = await connect(node.url, alice, "ws", device="phone")
    laptop = await connect(node.url, alice, "tcp", node.tcp_port, device="laptop")
    assert hub.is_online(alice.user_id) and hub.devices(alice.user_id) == 2
    await phone.close()
    await wait_for(lambda: hub.devices(alice.user_id) == 1)
    assert hub.is_online(alice.user_id)
    await laptop.close()
    await wait_for(lambda: not hub.is_online(alice.user_id))
    assert changes == [(alice.user_id, True), (alice.user_id, False)]


async def test_websocket_origin_allow_list(tmp_path: Path) -> None:
    config = dataclasses.replace(make_config(tmp_path), allowed_origins=("https://chat.example",))
    server = PicaServer(config)
    await server.start()
    try:
        url = f"http://127.0.0.1:{server.http_port}/v1/ws"
        async with aiohttp.ClientSession() as session:
            async with session.get(url, headers={"Origin": "https://evil.example", "Upgrade": "websocket",
                                                 "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                                                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as resp:
                assert resp.status == 403
                assert (await resp.json())["code"] == "forbidden"
            ws = await session.ws_connect(url, origin="https://chat.example")
            assert not ws.closed
            await ws.close()
    finally:
        await server.stop()
