"""Every HTTP response says `nosniff` and `Server: Pica` (no library versions); everything under /v1/, where tokens
and private data travel, is `no-store`, while the web page's files keep their revalidation policy. The WebSocket
upgrade still works and carries the same headers."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from pica.protocol import frames as f
from pica.protocol.codec import Encoding, decode_server_frame
from tests.conftest import PASSWORD, Node, connect, new_user


async def answer(node: Node, method: str, path: str, **kwargs: object) -> tuple[int, CIMultiDictProxy[str]]:
    async with aiohttp.ClientSession() as session, session.request(method, node.url + path, **kwargs) as resp:  # type: ignore[arg-type]
        await resp.read()
        return resp.status, resp.headers


def assert_api_headers(headers: CIMultiDictProxy[str]) -> None:
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    assert headers.getall("Server") == ["Pica"]


async def test_accounts_and_their_errors_are_not_stored_nor_sniffed_and_name_no_versions(node: Node) -> None:
    account = {"username": "erin", "password": PASSWORD}
    requests: list[tuple[str, str, dict[str, Any], int]] = [
        ("POST", "/v1/auth/register", {"json": account}, 201),
        ("POST", "/v1/auth/login", {"json": account}, 200),  # the answer carries a token
        ("POST", "/v1/auth/register", {"json": account}, 409),  # username taken
        ("POST", "/v1/auth/login", {"data": b"{not json"}, 400),
        ("POST", "/v1/auth/login", {"json": {"username": 7, "password": []}}, 401),
        ("GET", "/v1/conversations", {}, 401),  # no token
        ("GET", "/v1/no-such-route", {}, 404),
        ("DELETE", "/v1/auth/login", {}, 405),
    ]
    for method, path, kwargs, status in requests:
        got, headers = await answer(node, method, path, **kwargs)
        assert got == status, (method, path)
        assert_api_headers(headers)


async def test_the_web_page_keeps_revalidating_and_everything_else_says_nosniff_and_pica(node: Node) -> None:
    for path, cache in [("/", "no-cache"), ("/static/app.js", "no-cache"), ("/static/icon.svg", "no-cache"),
                        ("/static/nope.js", None), ("/nowhere", None), ("/healthz", None), ("/metrics", None)]:
        _, headers = await answer(node, "GET", path)
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers.getall("Server") == ["Pica"], path
        assert headers.get("Cache-Control") == cache, path


async def test_the_websocket_upgrade_carries_the_headers_and_still_works(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.server.http_port)
    writer.write(
        f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {alice.token}\r\n\r\n".encode()
    )
    async with asyncio.timeout(5):
        head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        assert head[0] == "HTTP/1.1 101 Switching Protocols"
        assert {"Server: Pica", "X-Content-Type-Options: nosniff", "Cache-Control: no-store"} <= set(head)
        first = await reader.readexactly(2)  # an unmasked text frame whose length fits in 7 bits or 16
        size = first[1] & 0x7F
        if size == 126:
            size = int.from_bytes(await reader.readexactly(2), "big")
        ready = decode_server_frame(await reader.readexactly(size), Encoding.JSON)
    assert isinstance(ready, f.Ready) and ready.user_id == alice.user_id
    writer.close()

    # And the SDK's WebSocket connection goes on as before: a message sent over it is acked.
    async with await connect(node.url, alice) as conn:
        sent = await conn.send(bob.user_id, {"text": "headers do not get in the way"})
    assert sent.seq == 1
