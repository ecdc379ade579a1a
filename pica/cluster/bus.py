"""The cluster facade the composition root builds: one object owning this node's link to the Redis bus.

It wires the parts together (see the package docstring for the design) and owns their lifecycle:

- :class:`~pica.cluster.outbox.Outbox`: every PUBLISH, ordered, batched per loop turn, bounded while Redis is away;
- :class:`~pica.cluster.subscriber.Subscriber`: the pub/sub connection (user, group and control channels);
- :class:`~pica.cluster.presence.ClusterPresence`: cluster-wide presence and its transitions;
- :class:`~pica.cluster.registry.Registry`: heartbeats, live nodes, reaping;
- :class:`~pica.cluster.routing.ClusterDelivery` / :class:`~pica.cluster.routing.ClusterFanout`: what the core
  calls to deliver; the latter keeps the node's group subscriptions (:class:`~pica.cluster.groups.GroupIndex`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from pica.cluster.driver import BusRedis
from pica.cluster.envelope import RESYNC, BadEnvelope, decode_control, encode_control
from pica.cluster.hub_link import HubBuckets, HubLink, HubRegistry, HubSubscriber, hub_presence, hub_sender
from pica.cluster.keys import Keys
from pica.cluster.link import Backoff, Outage, cancel_and_wait, supervise
from pica.cluster.node import NodeInfo
from pica.cluster.outbox import Outbox, redis_sender
from pica.cluster.presence import ClusterPresence, redis_presence
from pica.cluster.ratelimit import RedisBuckets
from pica.cluster.registry import Registry
from pica.cluster.routing import ClusterDelivery, ClusterFanout
from pica.cluster.subscriber import Subscriber
from pica.config import HUB_SCHEME, RedisConfig, is_hub_url
from pica.core.fanout import GroupFanout
from pica.core.ports import Clock, LocalSessions, PresenceListener
from pica.logs import redact_url
from pica.protocol import frames as f
from pica.protocol.outbound import OutboundFrame
from pica.store.base import Store

log = logging.getLogger(__name__)

_BACKOFF_BASE = 0.05
"""First reconnect delay, seconds; it doubles (with full jitter) up to twice the heartbeat interval."""


class Cluster:
    """This node's membership of the cluster: deliveries to other nodes, cluster presence, the node registry.

    Nothing here blocks or raises into the caller while Redis is away: deliveries queue (bounded), presence
    queries fall back to local knowledge, and background loops reconnect forever. ``on_resync`` (set by the
    composition root) is called whenever this node's clients may have missed live frames.
    """

    def __init__(self, url: str, config: RedisConfig, node: NodeInfo, sessions: LocalSessions, store: Store,
                 clock: Clock) -> None:
        self.node = node
        self.on_resync: Callable[[], None] | None = None
        self._url = url
        self._config = config
        self._sessions = sessions
        self._clock = clock
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._heartbeats: asyncio.Task[None] | None = None
        self._store = store
        self._pins: dict[int, int] = {}
        """Users whose channels ``before_ready`` holds while their connection is not yet registered."""
        self._loading: set[int] = set()
        """Users whose group list a task started by the presence listener is reading."""
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._resyncs = 0
        self._received = 0
        self._bad_control = 0

        prefix = config.prefix
        self.keys = keys = Keys(prefix, config.channel_buckets)
        self._channel_control = keys.control
        node_id = node.node_id
        cap = max(_BACKOFF_BASE, 2 * config.heartbeat_interval)


        def backoff() -> Backoff:
            return Backoff(_BACKOFF_BASE, cap)

        def outage(what: str) -> Outage:
            return Outage(f"{what} of node {node_id}", clock)

        resync = (self._channel_control, encode_control(node_id, RESYNC, "outbox overflow"))
        self._presence: ClusterPresence
        self._subscriber: Subscriber | HubSubscriber
        self._registry: Registry | HubRegistry
        self._buckets: RedisBuckets | HubBuckets
        self._close_bus: Callable[[], Awaitable[None]]
        if is_hub_url(url):  # the workers of one node on the embedded store (pica.cluster.hub)
            link = HubLink(url.removeprefix(HUB_SCHEME))
            self._outbox = Outbox(hub_sender(link), config.outbox_size, backoff(), outage("publishing"), resync)
            self._presence = ClusterPresence(*hub_presence(link), sessions, config.timeout, backoff(),
                                             outage("presence writes"))
            self._registry = HubRegistry(link, node, sessions, clock, config.heartbeat_interval, config.node_ttl,
                                         outage("heartbeat"), on_lost=self._presence.reregister, on_gone=self._gone)
            self._subscriber = HubSubscriber(link, (self._channel_control,), self._on_message, self._on_subscribed,
                                             self._registry, config.timeout, backoff(), outage("subscription"))
            self._buckets = HubBuckets(link)
            self._close_bus = _closer(link.close)
        else:
            # No I/O here: redis-py connects lazily, on first use.
            bus = BusRedis(url, config)
            self._outbox = Outbox(redis_sender(bus), config.outbox_size, backoff(), outage("publishing"), resync)
            self._subscriber = Subscriber(
                bus, (self._channel_control,), self._on_message, self._on_subscribed, timeout=config.timeout,
                idle=max(config.heartbeat_interval, 0.05), backoff=backoff(), outage=outage("subscription"),
            )
            self._presence = ClusterPresence(*redis_presence(bus.commands, keys, node_id), sessions,
                                             config.timeout, backoff(), outage("presence writes"))
            self._registry = Registry(
                bus.commands, keys, node, sessions, clock, config.heartbeat_interval, config.node_ttl,
                outage("heartbeat"), on_lost=self._presence.reregister, on_gone=self._gone,
            )
            self._buckets = RedisBuckets(bus.commands, prefix)
            self._close_bus = bus.aclose
        self._delivery = ClusterDelivery(sessions, self._outbox, node_id, keys)
        self._fanout = ClusterFanout(GroupFanout(store, sessions), self._outbox, node_id, keys, self._subscriber,
                                     sessions, config.timeout)
        self._fanout.is_local = self._is_local
        self._delivery.on_join = self._fanout.receive_join
        sessions.add_presence_listener(self._on_local_presence)

    # ------------------------------------------------------------------------------------------ what the core uses

    @property
    def buckets(self) -> RedisBuckets | HubBuckets:
        """Rate-limit buckets every node shares (logins, registrations)."""
        return self._buckets

    @property
    def delivery(self) -> ClusterDelivery:
        return self._delivery

    @property
    def fanout(self) -> ClusterFanout:
        return self._fanout

    @property
    def presence(self) -> ClusterPresence:
        return self._presence

    def set_presence_listener(self, listener: PresenceListener) -> None:
        """``listener(user_id, online)`` for cluster-wide transitions only: the user's first device anywhere came
        online, or their last device anywhere went away (possibly announced by the node that reaped a dead one)."""
        self._presence.listener = listener

    async def live_nodes(self) -> list[NodeInfo]:
        """Live nodes from the registry, as of the last heartbeat (this node alone while Redis is unreachable)."""
        return self._registry.live_nodes()

    @property
    def healthy(self) -> bool:
        """Subscribed, registered within a TTL, and publishing without errors."""
        return self._subscriber.connected and self._registry.fresh and self._outbox.connected

    def stats(self) -> dict[str, int]:
        """Counters and gauges for /metrics."""
        return {
            "published": self.published,
            "received": self.received,
            "dropped": self.dropped,
            "resyncs": self.resyncs,
            "outbox": len(self._outbox),
            "presence_fallbacks": self._presence.fallbacks,
            "live_nodes": len(self._registry.live_nodes()),
            "subscriber_shards": self._subscriber.shards,
        }

    @property
    def published(self) -> int:
        """Envelopes Redis accepted (PUBLISH commands that returned)."""
        return self._outbox.published

    @property
    def received(self) -> int:
        """Messages read from the subscriber connection (own-origin echoes included)."""
        return self._received

    @property
    def dropped(self) -> int:
        """Envelopes lost here: outbox overflow while Redis was away or slow, and undecodable ones received."""
        return self._outbox.dropped + self._delivery.dropped + self._fanout.dropped + self._bad_control

    @property
    def resyncs(self) -> int:
        """Times this node asked its clients to resync."""
        return self._resyncs

    # ------------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the background loops and wait, at most ``timeout`` seconds, to be registered and subscribed.
        With Redis down this returns after the timeout (logged loudly): the node serves local traffic and the
        loops keep reconnecting."""
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        loops: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = [
            ("subscriber", self._subscriber.run),
            ("subscription sender", self._subscriber.send_loop),
            ("publisher", self._outbox.run),
            ("presence writer", self._presence.run),
        ]
        for name, factory in loops:
            self._tasks.append(loop.create_task(supervise(name, factory, self._running)))
        self._heartbeats = loop.create_task(supervise("heartbeat", self._registry.run, self._beating))
        self._tasks.append(self._heartbeats)
        waits = [loop.create_task(self._registry.joined.wait()), loop.create_task(self._subscriber.subscribed.wait())]
        _, pending = await asyncio.wait(waits, timeout=self._config.timeout)
        for task in pending:
            task.cancel()
        if pending:
            log.error("cluster bus: Redis at %s is not reachable yet; this node serves its own clients only until it "
                      "is (retrying in the background)", redact_url(self._url))
        else:
            log.info("cluster bus: node %s joined at %s", self.node.node_id, redact_url(self._url))

    async def stop(self) -> None:
        """Leave the cluster at once: flush what is queued (bounded by ``timeout``), remove this node and its
        presence from Redis (announcing "offline" for users it held alone, through the presence listener), close.
        Call it before the service behind the presence listener shuts down."""
        if self._stopping:
            return
        self._stopping = True
        timeout = self._config.timeout
        self._registry.close()
        if self._heartbeats is not None:  # no heartbeat may re-register the node after it left
            await cancel_and_wait([self._heartbeats], timeout)
        if self._tasks:
            await self._presence.drain(timeout)
            await self._outbox.drain(timeout)
        try:
            async with asyncio.timeout(timeout):
                await self._registry.leave()
        except Exception as exc:
            log.warning("cluster bus: could not deregister node %s (%s); other nodes will reap it after %.1f s",
                        self.node.node_id, exc, self._config.node_ttl)
        self._subscriber.close()
        self._fanout.close()
        for task in self._side_tasks:
            task.cancel()
        self._outbox.close()
        self._presence.close()
        await cancel_and_wait(self._tasks, timeout)
        self._tasks.clear()
        await self._close_bus()
        log.info("cluster bus: node %s left", self.node.node_id)

    def _running(self) -> bool:
        return not self._stopping

    def _beating(self) -> bool:
        return not self._registry.closed

    # ------------------------------------------------------------------------------------------ connections

    async def before_ready(self, user_id: int) -> None:
        """Awaited by the gateway between authentication and ``ready``: return once Redis confirmed this node's
        subscriptions to the user's channel and to the channels of the user's groups, so a frame published after
        the client's first sync reaches it. Never raises; bounded by ``timeout``. If the subscriber is down it
        returns without waiting: its resubscription is followed by a resync of every local client, which covers
        the gap."""
        channel = self._delivery.channel(user_id)
        self._pins[user_id] = self._pins.get(user_id, 0) + 1
        self._subscriber.want(channel)
        try:
            async with asyncio.timeout(self._config.timeout):
                confirmed = await self._subscriber.confirm()
                if not self._fanout.index.loaded(user_id):
                    # Read only once the user channel is live: a member added after this read is announced by a
                    # join on that channel, and one added before is in the list.
                    await self._load_groups(user_id)
                # Unconditionally: a join received meanwhile may have asked for a group channel too.
                confirmed = await self._subscriber.confirm() and confirmed
            if not confirmed:
                log.debug("before_ready: bus not subscribed, a resync will follow", extra={"user_id": user_id})
        except Exception as exc:
            # The presence listener reads the group list again when the connection registers.
            log.warning("before_ready: subscriptions not confirmed in time (%s)", type(exc).__name__,
                        extra={"user_id": user_id})
        finally:
            left = self._pins[user_id] - 1
            if left:
                self._pins[user_id] = left
            else:
                del self._pins[user_id]
                if not self._sessions.is_online(user_id):
                    # The gateway registers the connection after this returns, possibly some loop turns later (a
                    # WebSocket handshake is written in between): releasing now would drop the subscriptions just
                    # confirmed, and a group list cannot be read again synchronously. If the client never
                    # registers, its channels go after ``timeout``.
                    asyncio.get_running_loop().call_later(self._config.timeout, self._release, user_id)

    async def _load_groups(self, user_id: int) -> None:
        groups = await self._store.list_groups(user_id)
        if self._is_local(user_id):  # not if the client left while the store answered
            # Dissolved groups are read-only: nothing will be published on their channels.
            self._fanout.load(user_id, [g.conversation_id for g in groups if not g.dissolved])

    def _is_local(self, user_id: int) -> bool:
        return user_id in self._pins or self._sessions.is_online(user_id)

    def _release(self, user_id: int) -> None:
        if self._stopping or self._is_local(user_id):
            return
        self._subscriber.unwant(self._delivery.channel(user_id))
        self._fanout.drop(user_id)

    def _on_local_presence(self, user_id: int, online: bool) -> None:
        if self._stopping:
            return
        if online:
            self._subscriber.want(self._delivery.channel(user_id))
            if not self._fanout.index.loaded(user_id) and user_id not in self._loading:
                self._start(self._load_late(user_id))
        elif user_id not in self._pins:
            self._release(user_id)
        self._presence.local_change(user_id, online)

    async def _load_late(self, user_id: int) -> None:
        """A user registered whose groups ``before_ready`` could not read (the store was slow or failing): read
        them now, and once subscribed make the user sync, since group frames may have passed by meanwhile."""
        self._loading.add(user_id)
        try:
            async with asyncio.timeout(self._config.timeout):
                await self._load_groups(user_id)
                await self._subscriber.confirm()
        except Exception as exc:
            log.warning("cluster bus: could not subscribe to the user's groups (%s); they get group frames by sync "
                        "only until they reconnect", type(exc).__name__, extra={"user_id": user_id})
            return
        finally:
            self._loading.discard(user_id)
        if self._fanout.index.groups_of(user_id):
            self._sessions.deliver((user_id,), OutboundFrame(f.Resync(reason="group subscriptions late")))

    def _start(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # ------------------------------------------------------------------------------------------ bus events

    def _on_message(self, channel: bytes, data: bytes) -> None:
        self._received += 1
        keys = self.keys
        if channel.startswith(keys.user_prefix):
            user_id = keys.user_of(channel)
            if user_id is not None:
                self._delivery.receive(user_id, data)
        elif channel.startswith(keys.group_prefix):
            self._fanout.receive(data)
        elif channel == self._channel_control:
            self._control(data)

    def _control(self, data: bytes) -> None:
        try:
            envelope = decode_control(data)
        except BadEnvelope as exc:
            self._bad_control += 1
            log.warning("cluster bus: undecodable control envelope dropped: %s", exc)
            return
        if envelope.origin != self.node.node_id and envelope.kind == RESYNC:
            log.warning("cluster bus: node %s dropped envelopes (%s)", envelope.origin, envelope.reason)
            self._resync()

    def _on_subscribed(self, first: bool) -> None:
        # The first subscription of a node that has no clients yet missed nothing; any later one, or a first one
        # reached after clients connected (Redis was down at boot), may have.
        if not first or self._sessions.online_users:
            self._resync()

    def _resync(self) -> None:
        self._resyncs += 1
        callback = self.on_resync
        if callback is None:
            return
        try:
            callback()
        except Exception:
            log.exception("on_resync failed")

    def _gone(self, user_ids: list[int]) -> None:
        for user_id in user_ids:
            self._presence.fire(user_id, False)

    def __repr__(self) -> str:
        return f"Cluster(node={self.node.node_id!r}, url={redact_url(self._url)!r})"


def _closer(close: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def aclose() -> None:
        close()

    return aclose
