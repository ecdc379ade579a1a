"""The node registry: heartbeats, the cached set of live nodes, and reaping of dead ones.

Every ``heartbeat_interval`` the HEARTBEAT script pushes this node's expiry (Redis time + ``node_ttl``) in
``{prefix}nodes``, rewrites its hash, and returns the live nodes (cached here for dispatch) and up to 8 dead ones.
A dead node (no heartbeat for ``node_ttl``) is reaped by one survivor: the REAP script takes a lock
``{prefix}reap:{dead}`` (expiring, so a reaper that dies is replaced), removes the dead node from its users'
presence in chunks, and reports the users left with no node, whose "offline" the reaper then announces. The
dead node's registry entry goes last, so an unfinished reap is resumed at the next heartbeat by whoever wins the
lock.

The heartbeat also detects that Redis lost this node: the ZADD added a new member (Redis restarted empty, or this
node was reaped after a long pause, which leaves a ``reaped:{id}`` marker). Either way presence re-registers every
local user (see :mod:`pica.cluster.presence`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

from pica.cluster import scripts
from pica.cluster.driver import Commands
from pica.cluster.keys import Keys
from pica.cluster.link import REDIS_ERRORS, Outage
from pica.cluster.node import NodeInfo
from pica.core.ports import Clock, LocalSessions

log = logging.getLogger(__name__)

REAP_CHUNK = 1_000
"""Users removed per REAP call (one call holds Redis for about a millisecond per 1,000 users)."""
_REAP_CALLS_PER_BEAT = 20
"""Bound on reaping work per heartbeat, so that reaping a huge node never delays this node's own heartbeat past
its TTL; the rest is taken up at the next beat."""


class LiveNodes:
    """The live nodes as the bus last listed them (for dispatch), with this node's own entry always current; older
    than a node TTL, only this node (the list may name dead ones)."""

    def __init__(self, node: NodeInfo, sessions: LocalSessions, clock: Clock, ttl: float) -> None:
        self._node = node
        self._sessions = sessions
        self._clock = clock
        self._ttl = ttl
        self._live: list[NodeInfo] = []
        self._live_at: float | None = None

    def me(self) -> NodeInfo:
        return dataclasses.replace(self._node, connections=self._sessions.connection_count)

    def update(self, live: list[NodeInfo]) -> None:
        self._live, self._live_at = live, self._clock.monotonic()

    def forget(self) -> None:
        self._live_at = None

    @property
    def fresh(self) -> bool:
        return self._live_at is not None and self._clock.monotonic() - self._live_at < self._ttl

    def listed(self) -> list[NodeInfo]:
        me = self.me()
        if not self.fresh:
            return [me]
        return [me if node.node_id == me.node_id else node for node in self._live]


class Registry:
    def __init__(self, redis: Commands, keys: Keys, node: NodeInfo, sessions: LocalSessions, clock: Clock,
                 interval: float, ttl: float, outage: Outage, on_lost: Callable[[bool], None],
                 on_gone: Callable[[list[int]], None]) -> None:
        self._redis = redis
        self._prefix = keys.registry
        self._route = [keys.nodes]
        """KEYS of every script call: the slot of the registry, which holds every key the scripts touch."""
        self._node = node
        self._interval = interval
        self._ttl_ms = max(1, round(ttl * 1000))
        self._outage = outage
        self._on_lost = on_lost
        self._on_gone = on_gone
        self._heartbeat = redis.register_script(scripts.HEARTBEAT)
        self._reap = redis.register_script(scripts.REAP)
        self._nodes = LiveNodes(node, sessions, clock, ttl)
        self._joined = False
        self.closed = False
        self.joined = asyncio.Event()
        """Set after the first successful heartbeat."""

    @property
    def fresh(self) -> bool:
        """Whether the cached live set is younger than a node TTL (older, it may list dead nodes)."""
        return self._nodes.fresh

    def live_nodes(self) -> list[NodeInfo]:
        return self._nodes.listed()

    def close(self) -> None:
        """No heartbeat starts after this (one in flight may finish)."""
        self.closed = True

    async def run(self) -> None:
        while not self.closed:
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except (*REDIS_ERRORS, ValueError) as exc:
                self._outage.failed(exc)
            else:
                self._outage.recovered()
            await asyncio.sleep(self._interval)

    async def beat(self) -> None:
        if not self._joined:
            # A previous process with this node id may have left entries behind (it crashed, and its users are
            # gone with it): clear them before claiming the id.
            await self._reap_all(self._node.node_id, force=True)
        node = self._nodes.me()
        args: list[str | int] = [self._prefix, node.node_id, self._ttl_ms]
        for field, value in node.to_fields().items():
            args += (field, value)
        added, reaped, _ids, hashes, dead = await self._heartbeat(keys=self._route, args=args)
        live: list[NodeInfo] = []
        for flat in hashes:
            try:
                live.append(NodeInfo.from_fields(dict(zip(flat[::2], flat[1::2], strict=True))))
            except ValueError:
                continue  # expiring this very millisecond (hash and score share the TTL), or another version's
        self._nodes.update(live)
        if reaped or (added and self._joined):
            log.warning("cluster bus: Redis had lost this node (%s); registering its users again",
                        "declared dead and reaped" if reaped else "Redis restarted, or its keys were deleted")
            self._on_lost(bool(reaped))
        if not self._joined:
            self._joined = True
            self.joined.set()
        budget = _REAP_CALLS_PER_BEAT
        for raw in dead:
            dead_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            if dead_id != node.node_id and budget > 0:
                budget -= await self._reap_some(dead_id, budget)

    async def _reap_some(self, dead_id: str, budget: int) -> int:
        calls = 0
        while calls < budget:
            calls += 1
            status, gone = await self._reap(
                keys=self._route, args=[self._prefix, dead_id, self._node.node_id, REAP_CHUNK, self._ttl_ms * 2, 0]
            )
            self._report_gone(gone)
            if status != 0:
                if status == 1:
                    log.warning("cluster bus: reaped dead node %s", dead_id)
                break
        return calls

    async def _reap_all(self, node_id: str, force: bool) -> None:
        while True:
            status, gone = await self._reap(
                keys=self._route, args=[self._prefix, node_id, self._node.node_id, REAP_CHUNK, self._ttl_ms * 2,
                               1 if force else 0]
            )
            self._report_gone(gone)
            if status != 0:
                return

    def _report_gone(self, gone: list[bytes]) -> None:
        if gone:
            self._on_gone([int(user_id) for user_id in gone])

    async def leave(self) -> None:
        """Remove this node at once (registry and presence), announcing the users it held alone."""
        self._nodes.forget()
        await self._reap_all(self._node.node_id, force=True)
