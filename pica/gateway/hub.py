"""This node's registry of connections: who is connected here, and local delivery to them.

It implements :class:`pica.core.ports.LocalSessions` (and so :class:`~pica.core.ports.Delivery`) and
:class:`~pica.core.ports.Presence` for a single node. In cluster mode the cluster's delivery wraps it and adds the
cross-node hop; the per-user online state it tracks is what presence and push build on.

The hub knows a connection only as a :class:`ConnectionHandle` (what it and the composition root call on one), so it
does not import :mod:`pica.gateway.connection`, which reaches the hub through its services.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from pica.core.ports import PresenceListener
from pica.errors import PicaError
from pica.protocol.close_codes import CloseCode
from pica.protocol.outbound import OutboundFrame

log = logging.getLogger(__name__)

SWEEP_SLICE: Final = 500
"""Connections whose timers the sweeper checks in one turn of the event loop (about 0.5 ms of work)."""


class ConnectionHandle(Protocol):
    """A client connection as the hub and the composition root use it (:class:`pica.gateway.connection.Connection`
    implements it)."""

    @property
    def user_id(self) -> int:
        """0 until the connection is authenticated."""

    @property
    def login_session(self) -> str:
        """The session whose token authenticated the connection ("" until then)."""

    @property
    def closed(self) -> bool: ...

    @property
    def transport_name(self) -> str:
        """``ws``, ``tcp`` or ``mqtt`` (the ``transport`` label of /metrics)."""

    def buffered(self) -> int:
        """Bytes written to the socket and not yet taken by the kernel."""

    def push(self, frame: OutboundFrame) -> None: ...

    def close(self, code: CloseCode, reason: str) -> None: ...

    def fail(self, error: PicaError, code: CloseCode) -> None: ...

    @property
    def timers_due(self) -> float:
        """Monotonic seconds before which ``check_timers`` has nothing to do: the sweeper skips the connection."""

    def check_timers(self, now: float, now_s: float) -> None: ...


class Hub:
    def __init__(self) -> None:
        self._by_user: dict[int, list[ConnectionHandle]] = {}
        self._all: set[ConnectionHandle] = set()
        self._fresh: list[ConnectionHandle] | None = None
        """Connections tracked since the sweeper's last slice, to be checked at its next one rather than a pass
        later (None while no sweeper runs: nothing would take them)."""
        self._presence_listeners: list[PresenceListener] = []

    # ------------------------------------------------------------------------------------------ registry

    def track(self, conn: ConnectionHandle) -> None:
        """A new, not yet authenticated connection (for the auth-deadline sweep)."""
        self._all.add(conn)
        if self._fresh is not None:
            self._fresh.append(conn)

    def register(self, conn: ConnectionHandle) -> None:
        """An authenticated connection."""
        if self._fresh is not None and conn not in self._all:  # one the gateway did not track first (MQTT, XMPP)
            self._fresh.append(conn)
        self._all.add(conn)
        devices = self._by_user.get(conn.user_id)
        if devices is None:
            self._by_user[conn.user_id] = [conn]
            self._notify(conn.user_id, True)
        else:
            devices.append(conn)

    def unregister(self, conn: ConnectionHandle) -> None:
        self._all.discard(conn)
        devices = self._by_user.get(conn.user_id)
        if devices is None or conn not in devices:
            return
        devices.remove(conn)
        if not devices:
            del self._by_user[conn.user_id]
            self._notify(conn.user_id, False)

    def add_presence_listener(self, listener: PresenceListener) -> None:
        """``listener(user_id, online)`` runs when a user's first device connects or last one leaves."""
        self._presence_listeners.append(listener)

    def _notify(self, user_id: int, online: bool) -> None:
        for listener in self._presence_listeners:
            try:
                listener(user_id, online)
            except Exception:
                log.exception("presence listener failed")

    # ------------------------------------------------------------------------------------------ delivery

    def deliver(self, user_ids: Iterable[int], frame: OutboundFrame, exclude: object | None = None) -> None:
        for user_id in user_ids:
            devices = self._by_user.get(user_id)
            if not devices:
                continue
            for conn in tuple(devices):  # push() may cut a slow consumer, which edits the list
                if conn is not exclude:
                    conn.push(frame)

    def is_online(self, user_id: int) -> bool:
        return user_id in self._by_user

    async def online(self, user_ids: Iterable[int]) -> set[int]:
        """:class:`pica.core.ports.Presence` for a single node."""
        return {user_id for user_id in user_ids if user_id in self._by_user}

    def devices(self, user_id: int) -> int:
        return len(self._by_user.get(user_id, ()))

    def of_user(self, user_id: int) -> tuple[ConnectionHandle, ...]:
        return tuple(self._by_user.get(user_id, ()))

    def oldest(self, user_id: int) -> ConnectionHandle | None:
        """The user's READY connection on this node that authenticated first (they are kept in that order)."""
        devices = self._by_user.get(user_id)
        return devices[0] if devices else None

    @property
    def connection_count(self) -> int:
        return len(self._all)

    @property
    def online_users(self) -> int:
        return len(self._by_user)

    def connections(self) -> list[ConnectionHandle]:
        return list(self._all)

    def connections_by_transport(self) -> dict[str, int]:
        """For /metrics, at scrape time (a pass over the connections rather than a count kept on every change)."""
        counts: dict[str, int] = {}
        for conn in self._all:
            counts[conn.transport_name] = counts.get(conn.transport_name, 0) + 1
        return counts

    def send_queue(self) -> tuple[int, int]:
        """Bytes waiting in the connections' socket buffers: in all, and the largest one's (for /metrics)."""
        total = largest = 0
        for conn in self._all:
            size = conn.buffered()
            total += size
            largest = max(largest, size)
        return total, largest

    # ------------------------------------------------------------------------------------------ timers

    async def run_sweeper(self, interval: float, monotonic: Callable[[], float], wall: Callable[[], float]) -> None:
        """Every ``interval`` seconds, let each connection check its deadlines.

        The pass is cut into slices of :data:`SWEEP_SLICE` connections spread evenly over the interval: one pass
        over 18,000 connections held the event loop for 25-60 ms every 2.5 s, and every message in flight waited
        for it (the delivery p99 at 1,000 msg/s was a pass long). Each connection is still checked once per
        interval; the pings a pass sends go out spread over the interval as well, and so do their answers. A
        connection that arrives during a pass is checked at the next slice, then in its place in the passes after,
        so that none waits more than an interval for its first check either."""
        while True:
            self._fresh = []
            conns = list(self._all)
            slices = max(1, -(-len(conns) // SWEEP_SLICE))
            for start in range(0, slices * SWEEP_SLICE, SWEEP_SLICE):
                await asyncio.sleep(interval / slices)
                now, now_s = monotonic(), wall()
                fresh, self._fresh = self._fresh or [], []
                for conn in (*conns[start:start + SWEEP_SLICE], *fresh):
                    if conn.timers_due <= now:
                        conn.check_timers(now, now_s)
