"""The WebSocket transport on aiohttp, at ``/v1/ws``, for an upgrade after other requests on a keep-alive socket
(the usual upgrade, a socket's first request, takes the fast path of pica.gateway.ws_raw).

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

from pica.gateway import http_headers
from pica.gateway.connection import Connection, State
from pica.gateway.http_socket import HttpSocket
from pica.gateway.services import GatewayServices
from pica.gateway.tcp import CLOSE_LINGER, reset
from pica.gateway.upgrade import authorize, start
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


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    """An upgrade that aiohttp parsed: one after other requests on a keep-alive socket (a socket whose first request
    is the upgrade takes the fast path, pica.gateway.ws_raw). The per-address HTTP limit was checked by the API's
    error middleware, as for every request."""
    services = request.app[SERVICES_KEY]
    upgrade = await authorize(services, request.headers.get, request.query)
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
    conn = WsConnection(services, ws, transport, upgrade.encoding)
    start(conn, services, upgrade)
    # This frame lives as long as the socket: drop what is no longer needed (idle memory per connection matters).
    del upgrade, below, masks
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
