"""Interfaces the core is written against. Implementations live at the edge (gateway, cluster)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from pica.protocol.outbound import OutboundFrame


class Delivery(Protocol):
    """Hands a frame to every connected device of some users, wherever they are connected.

    ``deliver`` never blocks and never fails the caller: delivery is a doorbell, the store is the record. A device
    that misses a frame (slow, disconnected, a lost bus message) catches up by sync.
    """

    def deliver(self, user_ids: Iterable[int], frame: OutboundFrame, exclude: object | None = None) -> None:
        """``exclude`` is a connection key not to deliver to (the device that sent the message)."""

    def is_online(self, user_id: int) -> bool: ...


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall clock, milliseconds since the epoch (message timestamps, token expiry)."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock (deadlines)."""


class SystemClock:
    def now_ms(self) -> int:
        import time

        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        import time

        return time.monotonic()
