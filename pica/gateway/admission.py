"""Who may hold a socket, and how fast sockets may authenticate.

The per-address connection cap is counted at accept on both listening ports. A refused socket is answered at once
(the transport's own words: an HTTP 429, or a TCP ``error`` + ``close``) and closed after a short linger; it is never
counted, never reaches aiohttp or the connection state machine.

The connect pace (:class:`ConnectPace`, ``limits.connects_per_second``) spreads a reconnect storm (every client of a
restarted node, a load balancer that dropped everything) over time: authentications past the pace wait their turn,
a bounded time, rather than all running at once and starving the connections already up.
"""

from __future__ import annotations

import asyncio
import logging
import random
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


class ConnectPace:
    """Authentications admitted per second on this node: ``limits.connects_per_second`` with bursts of
    ``limits.connect_burst``, each over-pace one waiting its turn for at most ``limits.connect_wait`` seconds.

    Virtual scheduling (GCRA): ``_next`` is when the next connect would be due at the steady pace; a connect may go
    ``burst`` intervals before that. A connect whose turn is further off than the wait is refused and takes no turn;
    its ``retry_after`` is a slot of a second schedule, ``_retry``, one interval after the previous refused one's, so
    that the refused come back spread at the pace, in the order they came, rather than all together into the same
    full queue (a first version told them all "in about a second" and each device of a 3,000-device storm was
    refused eight times). Pure arithmetic on times passed in; 0 connects per second: no pace."""

    __slots__ = ("_interval", "_next", "_retry", "_tolerance", "max_wait", "refused", "waited")

    def __init__(self, per_second: float, burst: int, max_wait: float) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._tolerance = max(burst - 1, 0) * self._interval
        self._next = 0.0
        self._retry = 0.0
        self.max_wait = max_wait
        self.refused = 0
        """Connects refused so far (``pica_connects_paced_total{outcome="refused"}``)."""
        self.waited = 0
        """Connects that waited for their turn (``pica_connects_paced_total{outcome="waited"}``)."""

    def turn(self, now: float) -> float:
        """Seconds until this connect may authenticate (0.0: now), its turn taken; or, when that is more than
        ``max_wait``, minus the seconds to retry after (nothing taken)."""
        if not self._interval:
            return 0.0
        due = max(self._next, now)
        wait = due - self._tolerance - now
        if wait > self.max_wait:
            self.refused += 1
            # Back when the queue will have room (its turn minus the wait), at the earliest; after the refused before.
            self._retry = max(self._retry, now + wait - self.max_wait) + self._interval
            return -(self._retry - now + random.uniform(0.0, self._interval))
        self._next = due + self._interval
        if wait > 0.0:
            self.waited += 1
            return wait
        return 0.0
