"""The WebSocket transport on aiohttp, at ``/v1/ws``.

Frames to the client are written straight to the socket as pre-built WebSocket frames (see OutboundFrame.ws_bytes):
a push never awaits, so fan-out never waits on one slow socket, and the unsent-bytes check cuts slow readers.
aiohttp still parses incoming frames, answers control frames and enforces ``max_msg_size`` from the frame header
before reading the payload (close 1009); the socket below it (pica.gateway.http_socket) fails unmasked client
frames with 1002, which aiohttp accepts.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSCloseCode, WSMsgType, web

from pica.errors import Forbidden, InvalidToken
from pica.gateway import http_headers
from pica.gateway.connection import Connection, State
from pica.gateway.http_socket import HttpSocket
from pica.gateway.services import GatewayServices
from pica.gateway.tcp import CLOSE_LINGER, reset
from pica.protocol.close_codes import CloseCode
from pica.protocol.codec import Encoding
from pica.protocol.outbound import OutboundFrame

log = logging.getLogger(__name__)

SERVICES_KEY = web.AppKey("gateway_services", GatewayServices)


class WsConnection(Connection):
    transport_name = "ws"
    __slots__ = ("_resume", "_transport", "_ws", "closing_task")

    def __init__(
        self, services: GatewayServices, ws: web.WebSocketResponse, transport: asyncio.Transport, encoding: Encoding
    ) -> None:
        super().__init__(services, encoding)
        self._ws = ws
        self._transport = transport
        self._resume: asyncio.Event | None = None
        self.closing_task: asyncio.Task[None] | None = None

    def _transport_bytes(self, frame: OutboundFrame) -> bytes:
        return frame.ws_bytes(self.encoding)

    def _transport_writelines(self, chunks: list[bytes]) -> None:
        if not self._transport.is_closing():
            self._transport.writelines(chunks)

    def _transport_buffered(self) -> int:
        return self._transport.get_write_buffer_size()

    def _transport_close(self, code: CloseCode, reason: str) -> None:
        if code is CloseCode.SLOW_CONSUMER:
            # aiohttp keeps the socket open until the handler returns, after the client's close reply; one that
            # reads nothing never replies, and its unread bytes are dropped with a reset (tcp.reset) at the end.
            asyncio.get_running_loop().call_later(CLOSE_LINGER, reset, self._transport)
        # A separate task: close() may be called while the handler is blocked in receive(); aiohttp wakes it.
        self.closing_task = asyncio.get_running_loop().create_task(self._close(code, reason))
        self.services.track(self.closing_task)

    async def _close(self, code: CloseCode, reason: str) -> None:
        try:
            await self._ws.close(code=int(code), message=reason.encode()[:120])
        except (ConnectionError, RuntimeError):
            self._transport.abort()

    def _transport_pause(self) -> None:
        if self._resume is None:
            self._resume = asyncio.Event()
        self._resume.clear()

    def _transport_resume(self) -> None:
        if self._resume is not None:
            self._resume.set()

    async def wait_readable(self) -> None:
        if self._resume is not None and not self._resume.is_set():
            await self._resume.wait()


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if header:
        raise InvalidToken("Authorization must be 'Bearer <token>'")
    return None


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES_KEY]
    origin = request.headers.get("Origin")
    if services.allowed_origins and origin not in services.allowed_origins:
        raise Forbidden("origin not allowed")
    token = _bearer(request)
    if token:  # paced like a TCP auth; over the pace, answered 429 before the upgrade
        await services.connect_turn()
    who = await services.accounts.authenticate(token) if token else None
    if who is not None and services.before_ready is not None:
        await services.before_ready(who.user_id)
    encoding = Encoding.MSGPACK if request.query.get("encoding") == "msgpack" else Encoding.JSON

    ws = web.WebSocketResponse(
        max_msg_size=services.limits.max_frame_bytes + 1,  # aiohttp rejects length >= max; ours is > max
        autoping=True, heartbeat=None, compress=False
    )
    ws.headers.update(http_headers.API)  # prepared here, before the API's middleware could add them
    transport = request.transport
    assert transport is not None
    # Armed before the 101 leaves, so that the check starts exactly at the first frame the client may send.
    below = transport.get_protocol()
    masks = below if isinstance(below, HttpSocket) else None  # None: a server built without pica.app's listener
    if masks is not None:
        masks.expect_websocket_frames()
    try:
        await ws.prepare(request)
    except BaseException:
        if masks is not None:
            masks.expect_websocket_frames(False)  # not upgraded after all: the socket goes on speaking HTTP
        raise
    conn = WsConnection(services, ws, transport, encoding)
    services.metrics.connections_opened += 1
    if not services.accepting:
        conn.close(CloseCode.SERVER_SHUTDOWN, "server shutting down")
        return ws
    if who is not None:
        device = request.query.get("device") or None
        if device is not None and len(device) > 64:
            device = device[:64]
        conn.accept(who, device)
    else:
        services.hub.track(conn)
    # This frame lives as long as the socket: drop what is no longer needed (idle memory per connection matters).
    del origin, token, who, below, masks
    try:
        while True:
            await conn.wait_readable()
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                conn.on_payload(msg.data, Encoding.JSON)
            elif msg.type is WSMsgType.BINARY:
                conn.on_payload(msg.data, Encoding.MSGPACK)
            else:  # CLOSE, CLOSING, CLOSED, ERROR (1009 for oversized frames is sent by aiohttp)
                if msg.type is WSMsgType.ERROR and getattr(msg.data, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:
                    services.metrics.refused("limits.max_frame_bytes")
                break
            if conn.state is State.CLOSED:
                break
    finally:
        conn.connection_lost()
        if conn.closing_task is not None:
            await conn.closing_task
    return ws
