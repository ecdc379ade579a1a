"""The HTTP port's sockets, below aiohttp: the per-address cap, the WebSocket fast path and RFC 6455's masking rule.

aiohttp builds one ``RequestHandler`` (an asyncio protocol) per accepted socket and offers no hook at accept, nor
one on the raw bytes of a WebSocket. So the listener's protocol factory makes an :class:`HttpSocket` per socket,
which does three things:

- at ``connection_made``, a slot of ``limits.max_connections_per_address`` (released at ``connection_lost``, so a
  keep-alive connection counts as long as it is open, and a WebSocket as long as it lasts); a socket over the cap
  gets a 429 at once and never reaches aiohttp;
- it reads the socket's first request head itself. A well-formed WebSocket upgrade to ``/v1/ws`` is answered here
  and the socket handed to :class:`pica.gateway.ws_raw.RawWsConnection` (the rules in pica.gateway.upgrade): a
  long-lived WebSocket then holds none of aiohttp's per-request objects. Anything else, byte for byte what arrived,
  goes to a fresh aiohttp handler, which this protocol then only forwards to;
- once aiohttp upgrades a socket to WebSocket itself (an upgrade after other requests on a keep-alive socket),
  :class:`pica.protocol.wsmask.MaskCheck` over the client's frames, since aiohttp accepts unmasked ones.

The request-head deadline (``limits.http_header_timeout``) is this protocol's own timer until the first head is
complete; from then on it is aiohttp's ``keepalive_timeout``, armed after each response (pica.app passes the deadline
as that timeout), which closes the socket if no complete request head has arrived in time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final, cast

from pica.errors import InternalError, PicaError, RateLimited
from pica.gateway import http_headers
from pica.gateway.admission import REFUSED_RETRY_AFTER, peer_address, refuse
from pica.gateway.services import GatewayServices
from pica.gateway.upgrade import WS_PATH, authorize, check_http_rate, client_address, error_answer, start
from pica.gateway.ws_raw import RawWsConnection
from pica.protocol.websocket import (
    MAX_HEAD_BYTES,
    RequestHead,
    head_length,
    parse_request_head,
    switching_protocols,
    upgrade_key,
)
from pica.protocol.wsmask import MaskCheck, fail_frame

log = logging.getLogger(__name__)

_UPGRADE_START: Final = f"GET {WS_PATH}".encode()
"""How the first request must begin to be a candidate for the fast path (then `` `` or ``?``)."""


def refusal_response(limit: int) -> bytes:
    """The whole HTTP answer to a socket over the per-address cap: a JSON 429 like any other ``rate_limited``."""
    return error_answer(RateLimited(f"too many connections from this address (at most {limit})",
                                    REFUSED_RETRY_AFTER), WS_PATH)


def _may_be_upgrade(head: bytearray) -> bool:
    """Whether the bytes so far can still be the start of ``GET /v1/ws `` or ``GET /v1/ws?``."""
    prefix = _UPGRADE_START
    if len(head) <= len(prefix):
        return prefix.startswith(head)
    return head.startswith(prefix) and head[len(prefix)] in b" ?"


class HttpSocket(asyncio.Protocol):
    """One accepted socket of the HTTP port: first reading its first request head, then aiohttp's protocol for it
    (or, after a fast-path upgrade, nothing: the socket belongs to its :class:`RawWsConnection`)."""

    __slots__ = ("_address", "_factory", "_head", "_inner", "_masks", "_peer", "_refusal", "_services", "_timer",
                 "_transport", "_upgrading")

    def __init__(self, factory: Callable[[], asyncio.Protocol], services: GatewayServices, refusal: bytes) -> None:
        self._factory = factory
        self._services = services
        self._refusal = refusal
        self._inner: asyncio.Protocol | None = None
        self._head: bytearray | None = bytearray()
        """The first request's bytes while this protocol reads them (and, during a fast-path upgrade, any frames
        the client sent before its ``101``); None once handed on."""
        self._address: str | None = None
        self._peer = ""
        self._transport: asyncio.Transport | None = None
        self._masks: MaskCheck | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._upgrading: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        real = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        address = peer_address(transport)
        if not self._services.address_slots.admit(address):
            refuse(real, self._refusal)
            return
        self._address = self._peer = address
        self._transport = real
        self._timer = asyncio.get_running_loop().call_later(self._services.limits.http_header_timeout,
                                                            self._head_timeout)

    def data_received(self, data: bytes) -> None:
        inner = self._inner
        if inner is not None:
            masks = self._masks
            if masks is not None:
                bad = masks.feed(data)
                if bad is not None:
                    if bad:
                        inner.data_received(data[:bad])  # the well-formed frames before it still count
                    self._fail_websocket()
                    return
            inner.data_received(data)
            return
        head = self._head
        if head is None:
            return
        head += data
        if self._upgrading is not None:
            if len(head) > self._services.limits.max_frame_bytes + MAX_HEAD_BYTES:
                self._abort()  # frames sent before the 101, more than a message's worth: not a real client
            return
        if not _may_be_upgrade(head):
            self._to_aiohttp()
            return
        length = head_length(head)
        if length is None:
            if len(head) > MAX_HEAD_BYTES:
                self._to_aiohttp()
            return
        request = parse_request_head(head[:length])
        key = upgrade_key(request, WS_PATH) if request is not None else None
        if request is None or key is None:
            self._to_aiohttp()
            return
        del head[:length]
        self._cancel_timer()
        transport = self._transport
        assert transport is not None
        transport.pause_reading()
        self._upgrading = asyncio.get_running_loop().create_task(self._upgrade(request, key))
        self._services.track(self._upgrading)

    def eof_received(self) -> bool | None:
        if self._inner is None and self._upgrading is None:
            self._to_aiohttp()  # a partial request then EOF: aiohttp's answer, as before this protocol read heads
        if self._inner is not None:
            return self._inner.eof_received()
        return None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._release()
        self._transport = None
        self._head = None
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def _release(self) -> None:
        if self._address is not None:
            self._services.address_slots.release(self._address)
            self._address = None

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timeout(self) -> None:
        """No complete first request head within ``limits.http_header_timeout``: closed, as aiohttp does later."""
        self._timer = None
        if self._inner is None and self._upgrading is None:
            self._abort()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _to_aiohttp(self) -> None:
        """Not ours: aiohttp gets the socket and every byte read so far."""
        self._cancel_timer()
        transport = self._transport
        head = self._head
        self._head = None
        if transport is None or head is None:
            return
        inner = self._inner = self._factory()
        inner.connection_made(transport)
        if head:
            inner.data_received(bytes(head))

    # ------------------------------------------------------------------------------------------ WebSocket

    async def _upgrade(self, request: RequestHead, key: str) -> None:
        """The fast path: check the upgrade, answer it, and hand the socket to its connection."""
        services = self._services
        try:
            check_http_rate(services, request.path, client_address(
                self._peer, request.header("x-forwarded-for"), services.trusted_proxies))
            upgrade = await authorize(services, lambda name: request.headers.get(name.lower()), request.query)
        except PicaError as exc:
            self._refuse_upgrade(exc)
            return
        except Exception:
            log.exception("unhandled error in a WebSocket upgrade")
            self._refuse_upgrade(InternalError("internal error"))
            return
        transport, early = self._transport, self._head
        if transport is None or early is None or transport.is_closing():
            return  # the client left while it was checked
        conn = RawWsConnection(services, transport, upgrade.encoding, self._address)
        self._address = None  # the connection holds the slot from now on
        self._head = None
        self._upgrading = None
        transport.set_protocol(conn)
        transport.write(switching_protocols(key, http_headers.API))
        start(conn, services, upgrade)
        transport.resume_reading()
        if early:
            conn.data_received(bytes(early))

    def _refuse_upgrade(self, error: PicaError) -> None:
        transport = self._transport
        self._upgrading = None
        self._head = None
        if transport is None or transport.is_closing():
            return
        self._services.metrics.error(error, "http")
        self._release()
        transport.resume_reading()
        refuse(transport, error_answer(error, WS_PATH))

    def expect_websocket_frames(self, expect: bool = True) -> None:
        """From now on the client's bytes are WebSocket frames (called by aiohttp's upgrade handler just before the
        101 is written, when the stream is at a frame boundary); ``False`` undoes it if the upgrade fails after
        all."""
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


def http_socket_factory(handler_factory: Callable[[], asyncio.Protocol], services: GatewayServices
                        ) -> Callable[[], HttpSocket]:
    """The listener's protocol factory."""
    refusal = refusal_response(services.address_slots.limit)
    return lambda: HttpSocket(handler_factory, services, refusal)
