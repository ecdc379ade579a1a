"""The node's subscriber: one Redis connection per shard in sharded pub/sub mode (SSUBSCRIBE), owned outright.

redis-py's ``PubSub`` reconnects and resubscribes by itself, silently; a node that does not know its subscription
was cut cannot know its clients may have missed frames. Here the connections are ours: when one breaks, the loop
drops them all, asks the topology afresh (a failover moved a shard's slots to its replica), reconnects with backoff,
subscribes to every channel it should hold, waits for Redis to confirm them all, and then reports
``on_subscribed`` (the cluster turns it into a resync of the local clients). On a single Redis there is one shard
and one connection (:class:`pica.cluster.driver.BusRedis`): the same code.

A shard that loses slots (its primary was demoted by a failover, or the slots were migrated) tells its sharded
subscribers with an ``sunsubscribe`` they did not ask for; that counts as a cut connection too. So does a slot the
topology says nobody serves (a primary died and its replica is not yet promoted), until it is served again.

Channels change as users come and go. ``want``/``unwant`` only edit the wanted set (no await: they are called from
the local sessions' presence listener); a sender task then sends the difference between wanted and asked, to the
shard owning each channel's slot, one command per slot (Redis Cluster refuses a multi-channel SSUBSCRIBE across
slots; channels share slots by their hash-tag bucket, :mod:`pica.cluster.keys`). A user who connects and
disconnects within one loop turn costs nothing, and commands go out in order on each connection.

``confirm`` answers "has Redis processed every SSUBSCRIBE sent so far?" by counting, per connection, the
confirmations Redis sends back in order, one per channel. Messages published after Redis processed an SSUBSCRIBE
reach this connection; that is what lets the gateway send ``ready`` only once nothing committed after the client's
first sync can be missed.

Silence is probed: after ``idle`` seconds without traffic on a connection a watchdog sends PING; no answer within
``timeout`` and the connection is treated as dead (a half-open TCP connection would otherwise look like a quiet bus
forever).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable

from redis.asyncio.connection import AbstractConnection

from pica.cluster.driver import BusRedis, Topology
from pica.cluster.link import REDIS_ERRORS, Backoff, Outage, Wants, cancel_and_wait

log = logging.getLogger(__name__)

MessageHandler = Callable[[bytes, bytes], None]

_CHANNELS_PER_COMMAND = 5_000
"""A node holding 100,000 users resubscribes in a few dozen commands, not one command with 100,000 arguments."""


class _Waiter:
    """One ``confirm`` call: resolved once every connection it waits on confirmed its target."""

    def __init__(self, future: asyncio.Future[bool], remaining: int) -> None:
        self.future = future
        self.remaining = remaining


class _Link:
    """The subscriber's connection to one shard, with its confirmation counters."""

    def __init__(self, shard: str, conn: AbstractConnection) -> None:
        self.shard = shard
        self.conn = conn
        self.initial = 0
        """Confirmations of the subscription sent at connect time."""
        self.sent = 0
        """Confirmations expected on this connection (one per channel per SSUBSCRIBE/SUNSUBSCRIBE)."""
        self.acked = 0
        self.dropping: Counter[bytes] = Counter()
        """Channels of SUNSUBSCRIBEs sent and not yet confirmed: any other ``sunsubscribe`` is Redis's doing."""
        self.waiters: deque[tuple[int, _Waiter]] = deque()
        self.heard = 0.0
        """Loop time of the last reply read."""


class Subscriber(Wants):
    def __init__(self, redis: BusRedis, static: Iterable[bytes], on_message: MessageHandler,
                 on_subscribed: Callable[[bool], None], timeout: float, idle: float, backoff: Backoff,
                 outage: Outage) -> None:
        super().__init__(static)
        self._redis = redis
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self._timeout = timeout
        self._idle = idle
        self._backoff = backoff
        self._outage = outage
        self._links: dict[str, _Link] = {}
        self._topology: Topology | None = None
        self._moved = asyncio.Event()
        """A change could not be routed with the current topology: reconnect everything."""
        self._send_lock = asyncio.Lock()
        self._first = True
        self.closed = False

    @property
    def shards(self) -> int:
        """Connections currently held (one per shard)."""
        return len(self._links)

    async def confirm(self) -> bool:
        """Wait until Redis confirmed every subscription change made so far. False at once if the subscriber is
        not connected (its next (re)subscription is followed by a resync, which covers the gap). The caller
        bounds the wait."""
        if not self.connected:
            return False
        # Shielded: a caller giving up must not cancel a write half-way, which would cost the connection (redis-py
        # closes a connection whose write was interrupted) and a resync of every local client.
        await asyncio.shield(self._flush())
        if not self._links:
            return False
        pending = [(link, link.sent) for link in self._links.values() if link.acked < link.sent]
        if not pending:
            return True
        waiter = _Waiter(asyncio.get_running_loop().create_future(), len(pending))
        for link, target in pending:
            link.waiters.append((target, waiter))
        return await waiter.future

    # ------------------------------------------------------------------------------------------ tasks

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    async def run(self) -> None:
        """Until closed: ask the topology, connect to every shard, subscribe, read; on any failure, back off and
        start again."""
        while not self.closed:
            links: list[_Link] = []
            try:
                async with asyncio.timeout(self._timeout):
                    topology = await self._redis.topology()
                links = [_Link(shard, self._redis.connection(shard)) for shard in topology.shards]
                async with asyncio.timeout(self._timeout):
                    await asyncio.gather(*(_connect(link) for link in links))
                async with self._send_lock:  # no change goes out on a half-set-up connection
                    channels = sorted(self._wanted)
                    routed = self._route(topology, channels)
                    self._asked = set(channels)
                    for link in links:
                        link.initial = link.sent = len(routed.get(link.shard, ()))
                    async with asyncio.timeout(self._timeout):
                        await asyncio.gather(
                            *(self._send(link, "SSUBSCRIBE", routed.get(link.shard, [])) for link in links)
                        )
                    self._links, self._topology = {link.shard: link for link in links}, topology
                    self._moved.clear()
                self._changed.set()  # changes made while connecting
                await self._serve(links)
            except asyncio.CancelledError:
                raise
            except (*REDIS_ERRORS, ValueError) as exc:
                self._outage.failed(exc)
            finally:
                self._lost()
                for link in links:
                    await link.conn.disconnect(nowait=True)
            await asyncio.sleep(self._backoff.next())

    def _route(self, topology: Topology, channels: Iterable[bytes]) -> dict[str, list[bytes]]:
        routed: dict[str, list[bytes]] = {}
        for channel in channels:
            slot = self._redis.slot(channel)
            shard = topology.shard_of(slot)
            if shard is None:
                raise ValueError(f"hash slot {slot} is served by no primary (a failover under way?)")
            routed.setdefault(shard, []).append(channel)
        return routed

    async def _serve(self, links: list[_Link]) -> None:
        """Read until a connection fails or the topology moved, while watchdogs probe silence. Reads carry no
        timeout of their own: a timer per message would cost more than the message (measured: a third of the
        receive path)."""
        loop = asyncio.get_running_loop()
        serving = [True]
        tasks = [loop.create_task(self._moved_away())]
        for link in links:
            link.heard = loop.time()
            tasks += (loop.create_task(self._read(link)), loop.create_task(self._watch(link, serving)))
        self._check_subscribed()
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            serving[0] = False
            await cancel_and_wait(tasks, self._timeout)
            # Every task's exception is retrieved (several connections may fail together); the first is raised.
            errors = [task.exception() for task in tasks if task.done() and not task.cancelled()]
        for error in errors:
            if error is not None:
                raise error

    async def _moved_away(self) -> None:
        await self._moved.wait()
        raise ConnectionError("a channel's slot is not served by the shards this node is connected to")

    async def _watch(self, link: _Link, serving: list[bool]) -> None:
        loop = asyncio.get_running_loop()
        while serving[0]:
            await asyncio.sleep(self._idle)
            if loop.time() - link.heard < self._idle:
                continue
            probed = loop.time()
            async with asyncio.timeout(self._timeout):
                await link.conn.send_command("PING", check_health=False)
            await asyncio.sleep(self._timeout)
            if link.heard < probed:
                raise TimeoutError(f"subscriber connection to {link.shard} silent: no answer to PING within "
                                   f"{self._timeout} s")

    async def _read(self, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        conn = link.conn
        while True:
            # The connection has no socket timeout (see subscriber_pool): this waits for the next reply.
            reply = await conn.read_response()
            link.heard = loop.time()
            if reply == b"PONG":
                continue  # the probe's answer on a connection holding no channel (not in pub/sub mode)
            if not isinstance(reply, list) or len(reply) < 2:
                raise ValueError(f"unexpected reply on the subscriber connection: {reply!r:.80}")
            kind = reply[0]
            if kind == b"smessage":
                try:
                    self._on_message(reply[1], reply[2])
                except Exception:
                    log.exception("cluster bus: message handler failed")
            elif kind == b"ssubscribe":
                self._ack(link)
            elif kind == b"sunsubscribe":
                channel = reply[1]
                if not link.dropping[channel]:
                    raise ConnectionError(f"shard {link.shard} dropped this node's subscriptions (its slots moved: "
                                          "a failover or a resharding)")
                link.dropping[channel] -= 1
                if not link.dropping[channel]:
                    del link.dropping[channel]
                self._ack(link)
            # else: b"pong", the answer to our probe

    def _ack(self, link: _Link) -> None:
        link.acked += 1
        waiters = link.waiters
        while waiters and waiters[0][0] <= link.acked:
            _, waiter = waiters.popleft()
            waiter.remaining -= 1
            if not waiter.remaining and not waiter.future.done():
                waiter.future.set_result(True)
        if not self.subscribed.is_set() and link.acked >= link.initial:
            self._check_subscribed()

    def _check_subscribed(self) -> None:
        if self.subscribed.is_set() or not all(link.acked >= link.initial for link in self._links.values()):
            return
        self.subscribed.set()
        self._outage.recovered()
        self._backoff.reset()
        first, self._first = self._first, False
        self._on_subscribed(first)

    def _lost(self) -> None:
        links, self._links, self._topology = self._links, {}, None
        self.subscribed.clear()
        for link in links.values():
            while link.waiters:
                _, waiter = link.waiters.popleft()
                if not waiter.future.done():
                    waiter.future.set_result(False)

    async def send_loop(self) -> None:
        """Until closed: send the subscription changes made since the last turn."""
        while not self.closed:
            await self._changed.wait()
            self._changed.clear()
            await self._flush()

    async def _flush(self) -> None:
        async with self._send_lock:
            links, topology = self._links, self._topology
            if not links or topology is None:
                return
            drop, add = self._difference()
            try:
                for command, channels in (("SUNSUBSCRIBE", drop), ("SSUBSCRIBE", add)):
                    if not channels:
                        continue
                    routed = self._route(topology, channels)
                    if not routed.keys() <= links.keys():
                        raise ValueError("the topology changed")
                    for shard, some in routed.items():
                        link = links[shard]
                        if command == "SUNSUBSCRIBE":
                            self._asked.difference_update(some)
                            link.dropping.update(some)
                        else:
                            self._asked.update(some)
                        link.sent += len(some)
                        await self._send(link, command, some)
            except ValueError as exc:
                log.info("cluster bus: resubscribing everything: %s", exc)
                self._moved.set()
            except REDIS_ERRORS as exc:
                # The connection is gone (redis-py closed it); its reader notices and everything reconnects, and
                # the new connections subscribe to the whole wanted set.
                log.debug("cluster bus: subscription change not sent: %s", exc)

    async def _send(self, link: _Link, command: str, channels: list[bytes]) -> None:
        by_slot: dict[int, list[bytes]] = {}
        for channel in channels:
            by_slot.setdefault(self._redis.slot(channel), []).append(channel)
        for group in by_slot.values():
            for start in range(0, len(group), _CHANNELS_PER_COMMAND):
                await link.conn.send_command(command, *group[start:start + _CHANNELS_PER_COMMAND],
                                             check_health=False)


async def _connect(link: _Link) -> None:
    await link.conn.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
