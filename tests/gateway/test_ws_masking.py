"""RFC 6455 §5.1 over a real upgrade: a client's frames must be masked. A masked frame is served; an unmasked one
fails the WebSocket with close 1002 and the socket is dropped. Both ways a socket is upgraded are checked: as its
first request (the fast path, pica.gateway.ws_raw) and after another request on the same keep-alive socket
(aiohttp's upgrade, with pica.protocol.wsmask's check)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct

import pytest

from tests.conftest import Node, new_user
from tests.gateway.test_connection_limits import KEEP_ALIVE_GET, read_http_response
from tests.protocol.test_wsmask import frame

WAIT = 5.0


async def upgrade(node: Node, after_request: bool = False) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.server.http_port)
    if after_request:
        writer.write(KEEP_ALIVE_GET)
        status, _, _ = await read_http_response(reader)
        assert status == 200
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /v1/ws HTTP/1.1\r\nHost: pica\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


def masked(payload: bytes, opcode: int = 0x1) -> bytes:
    key = os.urandom(4)
    length = len(payload)
    header = bytes((0x80 | opcode, 0x80 | length)) if length < 126 else (
        bytes((0x80 | opcode, 0x80 | 126)) + struct.pack("!H", length))
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(opcode, payload) of one server frame (servers do not mask)."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(length)


@pytest.mark.parametrize("after_request", [False, True], ids=["first-request", "keep-alive"])
@pytest.mark.parametrize("opcode", [0x1, 0x9], ids=["text", "ping"])
async def test_an_unmasked_client_frame_closes_the_websocket_with_1002(node: Node, opcode: int,
                                                                       after_request: bool) -> None:
    alice = await new_user(node.url)
    reader, writer = await upgrade(node, after_request)
    try:
        async with asyncio.timeout(WAIT):
            writer.write(masked(json.dumps({"t": "auth", "v": 1, "token": alice.token}).encode()))
            kind, payload = await read_frame(reader)
            assert kind == 0x1 and json.loads(payload)["t"] == "ready"  # masked: served as usual
            writer.write(masked(b'{"t":"ping","id":1}'))
            kind, payload = await read_frame(reader)
            assert kind == 0x1 and json.loads(payload) == {"t": "pong", "ref": 1}

            writer.write(frame(b'{"t":"ping","id":2}', masked=False, opcode=opcode))
            kind, payload = await read_frame(reader)
            assert kind == 0x8 and struct.unpack("!H", payload[:2]) == (1002,)
            assert await reader.read() == b""  # and the socket is dropped: nothing else, no pong
        async with asyncio.timeout(WAIT):
            while node.server.hub.is_online(alice.user_id):
                await asyncio.sleep(0.01)
    finally:
        writer.close()
