"""The length-framed TCP transport: an asyncio Protocol around FrameReader and Connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from typing import Final, cast

from pica.errors import FrameTooLarge, InvalidFrame, RateLimited
from pica.gateway.admission import REFUSED_RETRY_AFTER, peer_address, refuse
from pica.gateway.connection import Connection, State, error_frame
from pica.gateway.services import GatewayServices
from pica.gateway.tls import ServerTls
from pica.protocol import frames as f
from pica.protocol.close_codes import CloseCode
from pica.protocol.codec import Encoding
from pica.protocol.framing import FrameReader
from pica.protocol.outbound import OutboundFrame

log = logging.getLogger(__name__)

CLOSE_LINGER = 2.0
"""Seconds a closed connection gets to read what it was sent (a cut slow consumer: its backlog) and the close notice
before the socket is reset."""

_RESET_ON_CLOSE: Final = struct.pack("ii", 1, 0)
"""``struct linger {l_onoff = 1, l_linger = 0}``: close() discards the unsent bytes and sends RST."""


def reset(transport: asyncio.Transport) -> None:
    """Abort with ``SO_LINGER`` (on, 0), so the kernel drops what the peer never read and answers with RST.

    A plain abort() (or close()) leaves the unsent bytes to the kernel, which keeps them, and the socket, in
    FIN-WAIT-1 until the peer reads them or TCP gives up: a client that stops reading would keep megabytes of the
    machine's memory (the kernel's socket buffers) per connection after being cut.
    """
    if transport.is_closing() and transport.get_write_buffer_size() == 0:
        # Closed already, or about to be with nothing of ours left: the descriptor may be closed and its number
        # reused by another socket, which must not get our linger option.
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # the peer reset it meanwhile: nothing is queued any more
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    transport.abort()


class TcpConnection(Connection, asyncio.Protocol):
    transport_name = "tcp"
    __slots__ = ("_address", "_reader", "_reset_timer", "_transport")

    def __init__(self, services: GatewayServices) -> None:
        super().__init__(services, Encoding.MSGPACK)
        self._reader = FrameReader(services.limits.max_frame_bytes)
        self._transport: asyncio.Transport | None = None
        self._reset_timer: asyncio.TimerHandle | None = None
        self._address: str | None = None
        """The peer's address while this socket holds one of its slots (``max_connections_per_address``)."""

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        address = peer_address(transport)
        slots = self.services.address_slots
        if not slots.admit(address):
            # Refused before it is anything: not tracked, not counted as opened; the socket is handed over.
            self.state = State.CLOSED
            refuse(cast(asyncio.Transport, transport), self._refusal(slots.limit))
            return
        self._address = address
        # No TCP_NODELAY of our own: uvloop and asyncio set it on every TCP socket they accept.
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.services.metrics.connections_opened += 1
        if not self.services.accepting:
            self.close(CloseCode.SERVER_SHUTDOWN, "server shutting down")
            return
        self.services.hub.track(self)

    def _refusal(self, limit: int) -> bytes:
        """What a socket over the per-address cap is told before it is closed (the MQTT gateway says nothing)."""
        return _refusal(limit)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return  # lingering after our close notice: what the client still sends is read only to be dropped
        try:
            payloads = self._reader.feed(data)
        except FrameTooLarge as exc:
            self.on_oversized(exc)
            return
        except InvalidFrame as exc:
            self.fail(exc, CloseCode.PROTOCOL_ERROR)
            return
        for payload in payloads:
            self.on_payload(payload, Encoding.MSGPACK)
            if self.state is State.CLOSED:
                break

    def eof_received(self) -> bool | None:
        if self._reset_timer is not None and self._transport is not None:
            # A closed connection's client closed its side: it reads no more, so what it has not read is dropped.
            self._reset_timer.cancel()
            self._reset_timer = None
            reset(self._transport)
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:  # type: ignore[override]
        if self._address is not None:
            self.services.address_slots.release(self._address)
            self._address = None
        Connection.connection_lost(self)
        if self._reset_timer is not None:
            self._reset_timer.cancel()  # the socket is gone; the timer must not hold the transport and its buffer
            self._reset_timer = None
        self._transport = None

    # Connection hooks

    def _transport_bytes(self, frame: OutboundFrame) -> bytes:
        return frame.tcp_bytes()

    def _transport_writelines(self, chunks: list[bytes]) -> None:
        if self._transport is not None:
            self._transport.writelines(chunks)

    def _transport_buffered(self) -> int:
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    def _transport_close(self, code: CloseCode, reason: str) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(OutboundFrame(f.Close(code=int(code), reason=reason)).tcp_bytes())
        if code is CloseCode.SERVER_SHUTDOWN or not transport.can_write_eof():
            transport.close()  # a drain closes everything at once; the client reconnects whatever it read
            return
        # Half-close and linger rather than close. Two reasons. Closing a socket whose client is still sending
        # (a slow loris trickling a frame, a flood refused mid-way) while its bytes sit unread in our kernel makes
        # the kernel answer with RST, and the client's kernel then throws away the error and close frames it had
        # received but not yet handed to the client. And a cut slow consumer's notice queues behind what it has
        # not read: FIN follows that backlog, so a client that catches up sees the code and EOF, while the
        # descriptor stays ours (close() would leave those bytes to the kernel). Meanwhile what the client sends
        # is read and dropped; at its EOF, or when the linger ends, whatever is still unread is dropped too.
        transport.write_eof()
        self._transport_resume()
        self._reset_timer = asyncio.get_running_loop().call_later(CLOSE_LINGER, self._reset_now)

    def _reset_now(self) -> None:
        self._reset_timer = None
        if self._transport is not None:
            reset(self._transport)

    def _transport_pause(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def _transport_resume(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()


def _refusal(limit: int) -> bytes:
    error = RateLimited(f"too many connections from this address (at most {limit})", REFUSED_RETRY_AFTER)
    code = CloseCode.TOO_MANY_CONNECTIONS
    return b"".join(OutboundFrame(frame).tcp_bytes() for frame in (
        error_frame(error),
        f.Close(code=int(code), reason="too many connections from this address"),
    ))


async def start_tcp_server(services: GatewayServices, sock: socket.socket, tls: ServerTls | None = None
                           ) -> asyncio.Server:
    """Listen on an already bound socket (the composition root binds it, to learn the port and set SO_REUSEPORT).
    With ``tls``, the socket speaks TLS only (and asks for client certificates if ``tls.client_ca`` is set)."""
    return await asyncio.get_running_loop().create_server(
        lambda: TcpConnection(services), sock=sock, backlog=4096,
        ssl=tls.tcp if tls else None, ssl_handshake_timeout=tls.handshake_timeout if tls else None,
    )
