"""A worker's side of the hub (:mod:`pica.cluster.hub`): the parts of the cluster bus that talk to Redis, over one
Unix socket instead.

:class:`~pica.cluster.bus.Cluster` builds the same node on either: routing, group subscriptions, presence judgement
and resyncs are the same objects; what is here is only how they reach the bus.

- :class:`HubLink`: the connection, its calls (answered in order) and what the hub pushes.
- :class:`HubSubscriber`: owns the connection loop, as the Redis subscriber owns its connections. On every
  (re)connection it says hello, tells the registry, subscribes to every wanted channel, waits for the hub's answer
  to a ping (every frame before it was served: the subscriptions are live), then reports ``on_subscribed`` (a
  resync of the local clients after any connection but a first one without clients). ``confirm`` is a ping.
- :class:`HubRegistry`: the heartbeat (the workers connected now, for dispatch) and a reconnection's news for
  presence: the hub restarted (presence writes every local user again) or announced this worker's users offline
  when its connection was cut (the same, announcing them online again).
- :class:`HubBuckets`: :class:`pica.core.ports.SharedBuckets` kept by the hub.
- :func:`hub_sender` and :func:`hub_presence`: what the outbox and :class:`~pica.cluster.presence.ClusterPresence`
  call instead of their Redis scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Any, cast

from pica.cluster import hub_wire
from pica.cluster.link import Backoff, Outage, Wants
from pica.cluster.node import NodeInfo
from pica.cluster.outbox import Send
from pica.cluster.presence import HeldElsewhere, Verdicts
from pica.cluster.ratelimit import BusBuckets
from pica.cluster.registry import LiveNodes
from pica.core.ports import Clock, LocalSessions

log = logging.getLogger(__name__)


class HubUnavailable(ConnectionError):
    """Not connected to the hub, the connection broke before the answer, or the hub refused the call."""


class _Protocol(asyncio.Protocol):
    def __init__(self, link: HubLink) -> None:
        self._link = link
        self._reader = hub_wire.Reader()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._reader.feed(data)
        except Exception as exc:
            log.error("worker hub: undecodable data from the hub (%s); reconnecting", exc)
            assert self.transport is not None
            self.transport.abort()
            return
        for message in messages:
            self._link.received(message)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class HubLink:
    def __init__(self, path: str) -> None:
        self.path = path
        self._protocol: _Protocol | None = None
        self._numbers = itertools.count()
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self.up = False
        """Connected and greeted: the parts may send."""
        self.on_message: Callable[[bytes, bytes], None] = lambda channel, data: None
        self.on_gone: Callable[[list[int]], None] = lambda user_ids: None

    async def connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_unix_connection(lambda: _Protocol(self), self.path)
        self._protocol = protocol
        return protocol

    def lost(self) -> None:
        """The connection is gone: calls in flight fail (their caller retries or falls back)."""
        self.up = False
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abort()
        calls, self._calls = self._calls, {}
        for future in calls.values():
            if not future.done():
                future.set_exception(HubUnavailable("the connection to the worker hub broke"))

    def send(self, message: list[Any], *, greeting: bool = False) -> None:
        protocol = self._protocol
        if protocol is None or protocol.transport is None or protocol.transport.is_closing() or not (
                self.up or greeting):
            raise HubUnavailable("not connected to the worker hub")
        protocol.transport.write(hub_wire.encode(message))

    async def call(self, op: str, args: list[Any], *, greeting: bool = False) -> Any:
        number = next(self._numbers)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.send(["call", number, op, args], greeting=greeting)
        self._calls[number] = future
        try:
            return await future
        finally:
            self._calls.pop(number, None)

    def received(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == "msg":
            flat, on_message = message[1], self.on_message
            for i in range(0, len(flat), 2):
                try:
                    on_message(flat[i], flat[i + 1])
                except Exception:
                    log.exception("cluster bus: message handler failed")
        elif kind in ("reply", "fail"):
            future = self._calls.pop(message[1], None)
            if future is None or future.done():
                return
            if kind == "reply":
                future.set_result(message[2])
            else:
                future.set_exception(HubUnavailable(f"the worker hub refused a call: {message[2]}"))
        elif kind == "gone":
            self.on_gone([int(user_id) for user_id in message[1]])
        else:
            log.warning("worker hub: unknown message kind %r ignored", kind)

    def close(self) -> None:
        self.lost()


def hub_sender(link: HubLink) -> Send:
    async def send(batch: list[tuple[bytes, bytes]]) -> None:
        flat: list[bytes] = []
        for channel, data in batch:
            flat += (channel, data)
        link.send(["pub", flat])

    return send


def hub_presence(link: HubLink) -> tuple[Verdicts, HeldElsewhere]:
    async def verdicts(batch: list[tuple[int, bool]]) -> dict[int, bool]:
        args: list[int] = []
        for user_id, came in batch:
            args += (user_id, 1 if came else 0)
        reply = await link.call("apply", args)
        return {int(reply[i]): reply[i + 1] == 1 for i in range(0, len(reply), 2)}

    async def held_elsewhere(user_ids: list[int]) -> set[int]:
        return {int(user_id) for user_id in await link.call("online", user_ids)}

    return verdicts, held_elsewhere


class HubBuckets(BusBuckets):
    """The shared buckets kept by the hub (the same arithmetic as a node's own buckets)."""

    def __init__(self, link: HubLink) -> None:
        self._link = link

    async def _run(self, bucket: str, count: float, per: float, cost: float, mode: str) -> float:
        return float(await self._link.call("bucket", [bucket, count, per, cost, mode]))


class HubRegistry:
    """The workers connected to the hub, refreshed by a heartbeat (they carry their connection counts)."""

    def __init__(self, link: HubLink, node: NodeInfo, sessions: LocalSessions, clock: Clock, interval: float,
                 ttl: float, outage: Outage, on_lost: Callable[[bool], None],
                 on_gone: Callable[[list[int]], None]) -> None:
        self._link = link
        self.node_id = node.node_id
        self._interval = interval
        self._outage = outage
        self._on_lost = on_lost
        link.on_gone = on_gone
        self._nodes = LiveNodes(node, sessions, clock, ttl)
        self._greeted = False
        self.closed = False
        self.joined = asyncio.Event()

    def fields(self) -> dict[str, str]:
        return self._nodes.me().to_fields()

    def greeted(self, reply: dict[str, Any]) -> None:
        """The hub answered this connection's hello."""
        self._update(reply["nodes"])
        if self._greeted or reply["reaped"]:
            log.warning("cluster bus: the worker hub %s; registering this worker's users again",
                        "announced them offline" if reply["reaped"] else "was reconnected")
            self._on_lost(bool(reply["reaped"]))
        self._greeted = True
        self.joined.set()

    def _update(self, raw: Iterable[dict[str, str]]) -> None:
        live = []
        for fields in raw:
            try:
                live.append(NodeInfo.from_fields(fields))
            except ValueError:
                continue
        self._nodes.update(live)

    @property
    def fresh(self) -> bool:
        return self._link.up and self._nodes.fresh

    def live_nodes(self) -> list[NodeInfo]:
        return self._nodes.listed() if self._link.up else [self._nodes.me()]

    def close(self) -> None:
        self.closed = True

    async def run(self) -> None:
        while not self.closed:
            if self._link.up:
                try:
                    self._update(await self._link.call("beat", [self.fields()]))
                except HubUnavailable as exc:
                    self._outage.failed(exc)
                else:
                    self._outage.recovered()
            await asyncio.sleep(self._interval)

    async def leave(self) -> None:
        """Leave the hub at once; the users this worker held alone are announced offline here."""
        self._nodes.forget()
        gone = await self._link.call("leave", [])
        if gone:
            self._link.on_gone([int(user_id) for user_id in gone])


class HubSubscriber(Wants):
    """The subscriber's interface (:class:`pica.cluster.subscriber.Subscriber`) on the hub's connection."""

    def __init__(self, link: HubLink, static: Iterable[bytes], on_message: Callable[[bytes, bytes], None],
                 on_subscribed: Callable[[bool], None], registry: HubRegistry, timeout: float, backoff: Backoff,
                 outage: Outage) -> None:
        super().__init__(static)
        self._link = link
        link.on_message = on_message
        self._on_subscribed = on_subscribed
        self._registry = registry
        self._timeout = timeout
        self._backoff = backoff
        self._outage = outage
        self._first = True
        self._sent = 0
        """Subscription changes sent on this connection."""
        self._confirmed = 0
        """Of those, how many the hub is known to have served (a ping answered after them)."""
        self.closed = False

    @property
    def shards(self) -> int:
        return 1 if self.connected else 0

    async def confirm(self) -> bool:
        """Whether the hub serves every subscription change made so far (False at once while disconnected: the
        reconnection resyncs every local client)."""
        if not self.connected:
            return False
        try:
            self._flush()
            target = self._sent
            if target > self._confirmed:  # nothing sent since the last answer: nothing to wait for
                await self._link.call("ping", [])
                self._confirmed = max(self._confirmed, target)
        except HubUnavailable:
            return False
        return True

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    async def run(self) -> None:
        """Until closed: connect, greet, subscribe, read; on any failure, back off and start again."""
        link = self._link
        while not self.closed:
            try:
                async with asyncio.timeout(self._timeout):
                    protocol = await link.connect()
                    hello = await link.call("hello", [self._registry.node_id, self._registry.fields()],
                                            greeting=True)
                    link.up = True
                    self._registry.greeted(hello)
                    channels = sorted(self._wanted)
                    self._asked = set(channels)
                    self._sent = self._confirmed = 0
                    link.send(["sub", channels])
                    await link.call("ping", [])
                self.subscribed.set()
                self._outage.recovered()
                self._backoff.reset()
                self._changed.set()  # changes made while connecting
                first, self._first = self._first, False
                self._on_subscribed(first)
                await protocol.closed
                if not self.closed:
                    raise HubUnavailable("the worker hub closed the connection")
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError) as exc:
                self._outage.failed(exc)
            finally:
                self.subscribed.clear()
                link.lost()
            if not self.closed:
                await asyncio.sleep(self._backoff.next())

    async def send_loop(self) -> None:
        while not self.closed:
            await self._changed.wait()
            self._changed.clear()
            with contextlib.suppress(HubUnavailable):  # the reconnection subscribes to the whole wanted set
                self._flush()

    def _flush(self) -> None:
        if not self._link.up:
            return
        drop, add = self._difference()
        if drop:
            self._link.send(["unsub", drop])
            self._asked.difference_update(drop)
            self._sent += 1
        if add:
            self._link.send(["sub", add])
            self._asked.update(add)
            self._sent += 1
