"""Who may hold a socket: the per-address connection cap, counted at accept on both listening ports.

A refused socket is answered at once (the transport's own words: an HTTP 429, or a TCP ``error`` + ``close``) and
closed after a short linger; it is never counted, never reaches aiohttp or the connection state machine.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

log = logging.getLogger(__name__)

REFUSAL_LINGER: Final = 1.0
"""Seconds a refused socket is kept, half-closed, for the client to read the answer before it is aborted."""

REFUSED_RETRY_AFTER: Final = 5.0
"""The ``retry_after`` hint given with a refusal: a slot frees only when one of the address's sockets closes, so
this is a pace to retry at, not a promise."""


def peer_address(transport: asyncio.BaseTransport) -> str:
    """The peer's IP address, the same notion as ``request.remote`` (what ``client_address`` starts from). At the
    socket level there are no headers, so ``trusted_proxies`` plays no part: behind a proxy this is the proxy."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "")


class AddressSlots:
    """Open sockets per client address, against ``limits.max_connections_per_address`` (0: no limit).

    Only addresses with an open socket are kept, so the table is bounded by the open sockets themselves."""

    __slots__ = ("_open", "limit", "refused")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}
        self.refused = 0
        """Sockets refused so far (``pica_connections_refused_total``)."""

    def admit(self, address: str) -> bool:
        """Take a slot for a new socket from ``address``; False (and nothing taken) when it holds all of them."""
        held = self._open.get(address, 0)
        if self.limit and held >= self.limit:
            self.refused += 1
            return False
        self._open[address] = held + 1
        return True

    def release(self, address: str) -> None:
        held = self._open.get(address, 0)
        if held <= 1:
            self._open.pop(address, None)
        else:
            self._open[address] = held - 1

    def held(self, address: str) -> int:
        return self._open.get(address, 0)


class _Refused(asyncio.Protocol):
    """A refused socket after its answer was written: our side is shut (FIN after the answer), what the client
    sends is read and dropped, and the socket is closed at the client's EOF or aborted after the linger.

    Reading matters: closing a socket with unread input makes the kernel answer with RST instead of FIN, and a
    client that already sent its request (an HTTP client sends it at once) could lose our answer to that reset."""

    __slots__ = ("_timer", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(REFUSAL_LINGER, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool | None:
        return None  # close our side too (it is shut already): the socket goes now

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()


def refuse(transport: asyncio.Transport, answer: bytes) -> None:
    """Write ``answer``, shut our side and hand the socket to a protocol that only waits for it to end. Called from
    ``connection_made`` of the protocol that declines the socket, which is then out of the picture."""
    transport.set_protocol(_Refused(transport))
    transport.write(answer)
    if transport.can_write_eof():
        transport.write_eof()
    else:  # pragma: no cover - TCP sockets can always half-close
        transport.close()
