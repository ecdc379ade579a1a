"""The WebSocket transport on the raw socket: a connection whose upgrade was the socket's first request.

The HTTP port's protocol (pica.gateway.http_socket) reads that request head, checks it by the rules of
pica.gateway.upgrade, writes the ``101`` and hands the socket to a :class:`RawWsConnection`: an asyncio protocol
around pica.protocol.websocket's frame reader and the transport-independent :class:`Connection`, the way the framed
TCP transport is. aiohttp never sees the socket, so an idle WebSocket costs what an idle TCP connection costs plus a
frame reader, not aiohttp's request, response, handler task and reader (docs/architecture.md, "WebSocket memory").

Closing follows RFC 6455 section 7: our close frame, then the client's close frame ends the socket; a client that
never answers is reset after ``CLOSE_LINGER`` (a cut slow consumer too: its unread backlog is dropped by the reset).
"""

from __future__ import annotations

import asyncio
import logging

from pica.gateway.connection import Connection
from pica.gateway.services import GatewayServices
from pica.gateway.tcp import CLOSE_LINGER, reset
from pica.protocol.close_codes import CloseCode
from pica.protocol.codec import Encoding
from pica.protocol.outbound import OutboundFrame
from pica.protocol.websocket import (
    MESSAGE_TOO_BIG,
    NORMAL_CLOSURE,
    Control,
    FrameReader,
    Opcode,
    WebSocketError,
    close_frame,
    control_frame,
)

log = logging.getLogger(__name__)

_NO_STATUS = 1005


class RawWsConnection(Connection, asyncio.Protocol):
    transport_name = "ws"
    __slots__ = ("_address", "_close_timer", "_closing", "_reader", "_transport")

    def __init__(self, services: GatewayServices, transport: asyncio.Transport, encoding: Encoding,
                 address: str | None) -> None:
        super().__init__(services, encoding)
        self._transport: asyncio.Transport | None = transport
        self._reader = FrameReader(services.limits.max_frame_bytes)
        self._address = address
        """The peer's address while this socket holds one of its slots (``max_connections_per_address``)."""
        self._closing = False
        """Our close frame is written: only the client's close frame is still awaited."""
        self._close_timer: asyncio.TimerHandle | None = None
        # No TCP_NODELAY of our own: uvloop and asyncio set it on every TCP socket they accept.

    # asyncio.Protocol (connection_made happened on the HTTP port's protocol, before the socket was handed over)

    def data_received(self, data: bytes) -> None:
        try:
            events = self._reader.feed(data)
        except WebSocketError as exc:
            self._fail(exc)
            return
        for event in events:
            if isinstance(event, Control):
                self._on_control(event)
            elif not self._closing:
                self.on_payload(event.payload, Encoding.JSON if event.opcode is Opcode.TEXT else Encoding.MSGPACK)
            if self._transport is None or self._transport.is_closing():
                break

    def _on_control(self, event: Control) -> None:
        transport = self._transport
        if transport is None:
            return
        if event.opcode is Opcode.PING:
            if not self._closing:
                transport.write(control_frame(Opcode.PONG, event.payload))
        elif event.opcode is Opcode.CLOSE:
            if not self._closing:  # the client closes first: answer with its code (RFC 6455 5.5.1)
                self._closing = True
                transport.write(close_frame(NORMAL_CLOSURE if event.code == _NO_STATUS else event.code))
            self._cancel_timer()
            transport.close()

    def _fail(self, error: WebSocketError) -> None:
        """RFC 6455 7.1.7: the close frame with the error's code, and the socket is dropped without waiting."""
        transport = self._transport
        if error.close_code == MESSAGE_TOO_BIG:
            self.services.metrics.refused("limits.max_frame_bytes")
        else:
            log.info("closing a WebSocket that broke the protocol: %s", error.reason, extra={"remote": self._address})
        if transport is not None and not transport.is_closing():
            self._closing = True
            transport.write(close_frame(error.close_code, error.reason))
            transport.close()

    def eof_received(self) -> bool | None:
        return None  # the client will send nothing more: close our side too

    def connection_lost(self, exc: Exception | None) -> None:  # type: ignore[override]
        if self._address is not None:
            self.services.address_slots.release(self._address)
            self._address = None
        Connection.connection_lost(self)
        self._cancel_timer()
        self._transport = None

    # Connection hooks

    def _transport_bytes(self, frame: OutboundFrame) -> bytes:
        return frame.ws_bytes(self.encoding)

    def _transport_writelines(self, chunks: list[bytes]) -> None:
        transport = self._transport
        if transport is not None and not self._closing:
            transport.writelines(chunks)

    def _transport_buffered(self) -> int:
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    def _transport_close(self, code: CloseCode, reason: str) -> None:
        transport = self._transport
        if transport is None or transport.is_closing() or self._closing:
            return
        self._closing = True
        transport.write(close_frame(int(code), reason))
        if code is CloseCode.SERVER_SHUTDOWN:
            transport.close()  # a drain closes everything at once; the client reconnects whatever it read
            return
        # Wait for the client's close frame (reading again if we had stopped), at most CLOSE_LINGER: a cut slow
        # consumer's close frame queues behind what it has not read, and one that reads nothing is reset, which
        # also drops that backlog from the kernel.
        self._transport_resume()
        self._close_timer = asyncio.get_running_loop().call_later(CLOSE_LINGER, self._reset_now)

    def _reset_now(self) -> None:
        self._close_timer = None
        if self._transport is not None:
            reset(self._transport)

    def _cancel_timer(self) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None

    def _transport_pause(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def _transport_resume(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()
