"""The load generator's idle connections, on raw asyncio Protocols: framed TCP and a minimal RFC 6455 client.

``bench/connections.py`` holds up to 200,000 connections from a few processes on the same two vCPUs as the server.
Its WebSocket holders used aiohttp's client: about 16 KiB and a reader task per connection, and about as much CPU
per heartbeat as the server's own. A holder here is one Protocol object per socket, whatever its transport: the
pings are answered from ``data_received`` with a constant frame, and the CPU is left to the server being measured.

The WebSocket client does what a held connection needs and no more (RFC 6455): the opening handshake (the
``Sec-WebSocket-Accept`` checked), masked client frames (a fresh 4-byte key each), the server's text frames (the
protocol's JSON), its ping control frames answered with a pong and its close frame ending the socket. No
fragmentation, no extensions: the server sends neither.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from array import array
from typing import Any, Final, cast

from pica.protocol import frames as f
from pica.protocol.codec import Encoding, decode_server_frame, encode
from pica.protocol.framing import FrameReader, frame_bytes
from pica.protocol.websocket import accept_value, unmask

MSGPACK: Final = Encoding.MSGPACK
STALL_US: Final = 5_000
"""A holder's loop-lag probe: ticks this often, and records a lateness of more than one tick."""
TCP_PONG: Final = frame_bytes(encode(f.Pong(), MSGPACK))
JSON_PONG: Final = encode(f.Pong(), Encoding.JSON)
_TEXT: Final = 0x1
_CLOSE: Final = 0x8
_PING: Final = 0x9
_PONG: Final = 0xA


class Held:
    """What a holder does with each of its connections: answer pings, time deliveries."""

    __slots__ = ("latencies", "pings", "sent_at", "stalls")

    def __init__(self) -> None:
        self.latencies = array("q")
        self.sent_at = array("q")
        """Each delivery's send time (monotonic µs): where in the run the slow ones were."""
        self.stalls = array("q")
        """(start µs, length µs) pairs: when this holder's own event loop was late by more than STALL_US, so
        that a slow delivery can be told from a holder too busy to read it (a ping burst to answer)."""
        self.pings = 0

    async def watch_loop(self) -> None:
        tick_ns = STALL_US * 1000
        while True:
            began = time.monotonic_ns()
            await asyncio.sleep(tick_ns / 1e9)
            late = time.monotonic_ns() - began - tick_ns
            if late > tick_ns:
                self.stalls.extend((began // 1000, late // 1000))

    def delivered(self, body: Any) -> None:
        t0 = body.get("t0_us") if isinstance(body, dict) else None
        if isinstance(t0, int):
            self.latencies.append(time.monotonic_ns() // 1000 - t0)
            self.sent_at.append(t0)


class HeldTcp(asyncio.Protocol):
    """A framed TCP connection (MessagePack): ``auth`` on connect, ``ready`` resolves :attr:`ready`."""

    __slots__ = ("auth", "held", "reader", "ready", "transport")

    def __init__(self, held: Held, token: str, device: str) -> None:
        self.held = held
        self.auth = frame_bytes(encode(f.Auth(token=token, device=device), MSGPACK))
        self.reader = FrameReader(1 << 20)
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] | None = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.auth)
        self.auth = b""  # sent: one 200-byte object less per held connection

    def data_received(self, data: bytes) -> None:
        for payload in self.reader.feed(data):
            self.on_frame(decode_server_frame(payload, MSGPACK))

    def on_frame(self, frame: f.ServerFrame) -> None:
        if isinstance(frame, f.Msg):
            self.held.delivered(frame.body)
        elif isinstance(frame, f.Ping) and self.transport is not None:
            self.held.pings += 1
            self.transport.write(TCP_PONG)
        elif isinstance(frame, f.Ready) and self.ready is not None and not self.ready.done():
            self.ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready: {exc}"))


def masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (RFC 6455 5.2-5.3): FIN, ``opcode``, the mask bit and a fresh key, the masked payload."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65_536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    key = os.urandom(4)
    return header + key + unmask(payload, key)  # XOR both ways


class HeldWs(asyncio.Protocol):
    """A WebSocket connection (JSON text frames) authenticated by its upgrade's ``Authorization`` header: the
    server's first frame is ``ready``."""

    __slots__ = ("_accept", "_buffer", "_upgraded", "held", "ready", "transport")

    def __init__(self, held: Held, token: str, device: str, host: str, port: int) -> None:
        self.held = held
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        self._accept: bytes = accept_value(key).encode("ascii")
        self._buffer = bytearray(
            f"GET /v1/ws?device={device} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode("ascii"))
        """The request head until it is written, then what has been read and not yet parsed."""
        self._upgraded = False
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] | None = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(bytes(self._buffer))
        self._buffer.clear()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            if not head.startswith(b"http/1.1 101") or b"sec-websocket-accept: " + self._accept.lower() not in head:
                self._refused(head.split(b"\r\n", 1)[0].decode("latin-1"))
                return
            self._upgraded = True
            del buffer[:end + 4]
        offset, end = 0, len(buffer)
        while end - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length, at = second & 0x7F, offset + 2  # the server's frames are never masked
            if length == 126:
                if end - at < 2:
                    break
                (length,), at = struct.unpack_from("!H", buffer, at), at + 2
            elif length == 127:
                if end - at < 8:
                    break
                (length,), at = struct.unpack_from("!Q", buffer, at), at + 8
            if end - at < length:
                break
            self._on_frame(first & 0x0F, bytes(buffer[at:at + length]))
            offset = at + length
        if offset:
            del buffer[:offset]

    def _on_frame(self, opcode: int, payload: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        if opcode == _TEXT:
            frame = decode_server_frame(payload, Encoding.JSON)
            if isinstance(frame, f.Msg):
                self.held.delivered(frame.body)
            elif isinstance(frame, f.Ping):
                self.held.pings += 1
                transport.write(masked(_TEXT, JSON_PONG))
            elif isinstance(frame, f.Ready) and self.ready is not None and not self.ready.done():
                self.ready.set_result(None)
        elif opcode == _PING:
            transport.write(masked(_PONG, payload))
        elif opcode == _CLOSE:
            transport.close()

    def _refused(self, status: str) -> None:
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(ConnectionError(f"upgrade refused: {status}"))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready: {exc}"))
