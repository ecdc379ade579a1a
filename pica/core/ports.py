"""Interfaces the core is written against. Implementations live at the edge (gateway, cluster).

The core and the cluster bus see this node's connections only through these ports: the gateway's hub implements
:class:`LocalSessions` and the composition root (:mod:`pica.app`) hands it to the services and to the cluster, so
neither imports :mod:`pica.gateway` (``tests/test_layers.py`` keeps it so).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from pica.protocol.outbound import OutboundFrame

if TYPE_CHECKING:
    from pica.store.base import GroupChange


class Delivery(Protocol):
    """Hands a frame to every connected device of some users, wherever they are connected.

    ``deliver`` never blocks and never fails the caller: delivery is a doorbell, the store is the record. A device
    that misses a frame (slow, disconnected, a lost bus message) catches up by sync.
    """

    def deliver(self, user_ids: Iterable[int], frame: OutboundFrame, exclude: object | None = None) -> None:
        """``exclude`` is a connection key not to deliver to (the device that sent the message)."""

    def is_online(self, user_id: int) -> bool:
        """Whether the user has a device connected to this node (the cluster-wide answer is ``Presence.online``)."""


PresenceListener = Callable[[int, bool], None]
"""``listener(user_id, online)``: the user's first device came online, or their last device went away."""


class LocalSessions(Delivery, Protocol):
    """The devices connected to this node (the gateway's hub): a :class:`Delivery` that reaches them alone, and what
    the cluster bus needs to know of them. The cluster wraps it: its own ``Delivery`` serves these devices through
    it, then publishes for the other nodes, and frames received from the bus are handed to it."""

    @property
    def connection_count(self) -> int:
        """Open connections on this node, authenticated or not (advertised to dispatch)."""

    @property
    def online_users(self) -> int:
        """Users with at least one authenticated device on this node."""

    def add_presence_listener(self, listener: PresenceListener) -> None:
        """Call ``listener(user_id, online)`` when a user's first device on this node registers or their last one
        leaves."""


class Presence(Protocol):
    """Who is online anywhere (on this node alone, or across the cluster)."""

    async def online(self, user_ids: Iterable[int]) -> set[int]:
        """The subset of ``user_ids`` with at least one device connected somewhere. Never raises: when the answer
        cannot be had (the cluster bus is down) it falls back to what this node knows."""


class GroupRouter(Protocol):
    """Delivers a group's frames to its members' devices (:class:`pica.core.fanout.GroupFanout` on one
    node; the cluster's router also hands each frame to every other live node, whose own fan-out serves their
    members)."""

    def deliver(self, conversation_id: str, version: int, seq: int, frame: OutboundFrame,
                exclude: object | None = None, also: tuple[int, ...] = ()) -> None: ...

    def apply(self, change: GroupChange, exclude: object | None = None) -> None: ...

    def membership(self, conversation_id: str) -> tuple[int, Collection[int]] | None:
        """This node's cached (membership version, member ids) of a group; None when not cached."""

    def deliver_ephemeral(self, conversation_id: str, frame: OutboundFrame, skip_user: int, version: int) -> None:
        """Deliver a frame that is not part of the timeline (no seq; a typing notice) to the connected devices of
        the group's members as of membership ``version`` or later, except ``skip_user``'s devices. Best effort:
        never blocks, never raises, and what is lost is not recovered by sync."""


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


class SharedBuckets(Protocol):
    """Token buckets kept where every node sees them (the cluster's Redis), for the limits an attacker could
    otherwise multiply by spreading requests over nodes (logins, registrations). ``bucket`` names the rule and the
    client (``login_address:203.0.113.7``); ``count`` and ``per`` are its rate (:class:`pica.core.ratelimit.Rate`).
    Each call is atomic and raises on a transport error (the caller falls back to the node's own buckets)."""

    async def take(self, bucket: str, count: float, per: float, cost: float) -> float:
        """Spend ``cost`` tokens and return 0.0, or spend nothing and return the seconds until they are there."""

    async def wait(self, bucket: str, count: float, per: float) -> float:
        """Seconds until one token is there (0.0: now), spending nothing."""

    async def charge(self, bucket: str, count: float, per: float, cost: float) -> None:
        """Spend ``cost`` tokens whatever is left (down to empty)."""


class BeforeSend(Protocol):
    """A policy asked before a message is stored (the ``[before_send]`` hook): it may let it through, veto it or
    rewrite its body. Called outside any store transaction, before the append."""

    async def review(self, sender: int, conversation_id: str, client_msg_id: str,
                     body: dict[str, Any]) -> dict[str, Any]:
        """The body to store (``body`` itself, or a rewritten one, which the core validates again). Raises
        RejectedByPolicy to veto, PolicyUnavailable when the policy could not decide and fails closed."""
