"""The HTTP port's sockets, below aiohttp: the per-address cap and RFC 6455's masking rule.

aiohttp builds one ``RequestHandler`` (an asyncio protocol) per accepted socket and offers no hook at accept, nor
one on the raw bytes of a WebSocket. So the listener's protocol factory wraps each handler in :class:`HttpSocket`,
which forwards every event to it and adds two things:

- at ``connection_made``, a slot of ``limits.max_connections_per_address`` (released at ``connection_lost``, so a
  keep-alive connection counts as long as it is open, and a WebSocket as long as it lasts); a socket over the cap
  gets a 429 at once and never reaches aiohttp;
- once the socket is upgraded to WebSocket, :class:`pica.protocol.wsmask.MaskCheck` over the client's frames, since
  aiohttp accepts unmasked ones (see that module).

The request-head deadline (``limits.http_header_timeout``) needs nothing here: aiohttp's ``keepalive_timeout`` is
armed when a socket opens and after each response, and closes the socket if no complete request head has arrived
by then (partial bytes do not re-arm it); pica.app passes the deadline as that timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

import msgspec

from pica.errors import RateLimited
from pica.gateway import http_headers
from pica.gateway.admission import REFUSED_RETRY_AFTER, AddressSlots, peer_address, refuse
from pica.protocol.wsmask import MaskCheck, fail_frame

log = logging.getLogger(__name__)


def refusal_response(limit: int) -> bytes:
    """The whole HTTP answer to a socket over the per-address cap: a JSON 429 like any other ``rate_limited``."""
    error = RateLimited(f"too many connections from this address (at most {limit})", REFUSED_RETRY_AFTER)
    body = msgspec.json.encode(error.to_dict()) + b"\n"
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Retry-After": error.retry_after_header,
        "Connection": "close",
        **http_headers.API,
    }
    head = "HTTP/1.1 429 Too Many Requests\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + body


class HttpSocket(asyncio.Protocol):
    """One accepted socket of the HTTP port, around aiohttp's protocol for it."""

    __slots__ = ("_address", "_inner", "_masks", "_refusal", "_slots", "_transport")

    def __init__(self, inner: asyncio.Protocol, slots: AddressSlots, refusal: bytes) -> None:
        self._inner = inner
        self._slots = slots
        self._refusal = refusal
        self._address: str | None = None
        self._transport: asyncio.Transport | None = None
        self._masks: MaskCheck | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        real = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        address = peer_address(transport)
        if not self._slots.admit(address):
            refuse(real, self._refusal)
            return
        self._address = address
        self._transport = real
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        masks = self._masks
        if masks is not None:
            bad = masks.feed(data)
            if bad is not None:
                if bad:
                    self._inner.data_received(data[:bad])  # the well-formed frames before it still count
                self._fail_websocket()
                return
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is not None:
            self._slots.release(self._address)
            self._address = None
        self._inner.connection_lost(exc)

    # ------------------------------------------------------------------------------------------ WebSocket

    def expect_websocket_frames(self, expect: bool = True) -> None:
        """From now on the client's bytes are WebSocket frames (called just before the 101 is written, when the
        stream is at a frame boundary); ``False`` undoes it if the upgrade fails after all."""
        self._masks = MaskCheck() if expect else None

    def _fail_websocket(self) -> None:
        """RFC 6455 §7.1.7, "Fail the WebSocket Connection": close 1002, then drop the socket without waiting for the
        client's close (it broke the protocol; the failed check drops whatever else it sends)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        log.info("closing a WebSocket that sent an unmasked frame", extra={"remote": self._address})
        transport.write(fail_frame())
        transport.close()


def http_socket_factory(
    handler_factory: Callable[[], asyncio.Protocol], slots: AddressSlots
) -> Callable[[], HttpSocket]:
    """The listener's protocol factory: aiohttp's handler for each socket, wrapped."""
    refusal = refusal_response(slots.limit)
    return lambda: HttpSocket(handler_factory(), slots, refusal)
