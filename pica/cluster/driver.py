"""What differs between one Redis and a Redis Cluster, and nothing else: the command client, which slot a name
hashes to, which shard (primary) owns a slot, and how to open the subscriber's connection to a shard.

Everything above this (the publisher, the subscriber, the scripts) is the same code on both: on a single Redis
there is one shard owning every slot and :meth:`BusRedis.slot` is always 0, so "group by slot, one connection per
shard" degenerates to today's one batch and one connection.

A cluster is named by ``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://`` for
TLS): the seed nodes, any of which tells the client the whole topology (``CLUSTER SLOTS``). Only primaries are used:
sharded pub/sub messages are served by the primary owning the channel's slot, and presence must be read where it
is written.
"""

from __future__ import annotations

import bisect
import contextlib
from typing import Any, Final

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot

from pica.cluster.link import REDIS_ERRORS, command_client, connection_kwargs, subscriber_pool
from pica.config import ClusterUrl, RedisConfig, is_cluster_url

Commands = Redis | RedisCluster
"""The command client: ``Redis`` or ``RedisCluster`` (same methods for what the bus uses)."""


class Topology:
    """Which shard (a primary, named ``host:port``) owns which slots."""

    def __init__(self, ranges: list[tuple[int, int, str]]) -> None:
        self.ranges = sorted(ranges)
        self._starts = [start for start, _, _ in self.ranges]
        self.shards = sorted({shard for _, _, shard in self.ranges})

    def shard_of(self, slot: int) -> str | None:
        """None for a slot no shard serves (a cluster being resharded or missing a primary)."""
        i = bisect.bisect_right(self._starts, slot) - 1
        if i < 0:
            return None
        start, end, shard = self.ranges[i]
        return shard if start <= slot <= end else None


_SINGLE: Final = "redis"


class BusRedis:
    """This node's Redis, single or clustered. No I/O in the constructor (redis-py connects on first use)."""

    def __init__(self, url: str, config: RedisConfig) -> None:
        self.clustered = is_cluster_url(url)
        self._config = config
        self._pools: dict[str, ConnectionPool] = {}
        self.commands: Commands
        if self.clustered:
            self._cluster = ClusterUrl.parse(url)
            kwargs = connection_kwargs(config)
            self.commands = RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in self._cluster.seeds],
                username=self._cluster.username, password=self._cluster.password, ssl=self._cluster.tls,
                require_full_coverage=False, **kwargs,
            )
        else:
            self.commands = command_client(url, config)
            self._pools[_SINGLE] = subscriber_pool(url, config)

    def slot(self, name: bytes) -> int:
        """The hash slot of a key or shard channel; 0 for every name on a single Redis."""
        return key_slot(name) if self.clustered else 0

    async def topology(self) -> Topology:
        """The primaries and their slots, asked of the cluster now (not the client's cache, which learns a
        failover only when a command fails)."""
        if not self.clustered:
            return Topology([(0, 16383, _SINGLE)])
        assert isinstance(self.commands, RedisCluster)
        reply: dict[tuple[int, int], dict[str, Any]] = await self.commands.execute_command(
            "CLUSTER SLOTS", target_nodes=RedisCluster.RANDOM)
        ranges = []
        for (start, end), owners in reply.items():
            host, port = owners["primary"][:2]
            ranges.append((int(start), int(end), f"{host}:{int(port)}"))
        return Topology(ranges)

    def connection(self, shard: str) -> AbstractConnection:
        """A new, unconnected connection to a shard for the subscriber (no socket timeout, see
        :func:`pica.cluster.link.subscriber_pool`)."""
        pool = self._pools.get(shard)
        if pool is None:
            host, _, port = shard.rpartition(":")
            pool = self._pools[shard] = subscriber_pool(self._cluster.node_url(host, int(port)), self._config)
        # redis-py leaves this method unannotated.
        return pool.make_connection()  # type: ignore[no-untyped-call,no-any-return]

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.commands.aclose()
        for pool in self._pools.values():
            with contextlib.suppress(Exception):
                await pool.aclose()


async def probe(url: str, config: RedisConfig) -> tuple[str, int]:
    """Redis's version and clock (ms), for ``pica doctor`` (of the first seed of a cluster that answers); raises one
    of REDIS_ERRORS when it cannot be reached."""
    if not is_cluster_url(url):
        return await _probe_one(url, config)
    parsed = ClusterUrl.parse(url)
    failure: BaseException | None = None
    for host, port in parsed.seeds:
        try:
            return await _probe_one(parsed.node_url(host, port), config)
        except REDIS_ERRORS as exc:
            failure = exc
    assert failure is not None  # a parsed URL has a seed
    raise failure


async def _probe_one(url: str, config: RedisConfig) -> tuple[str, int]:
    client = command_client(url, config)
    try:
        info = await client.info("server")
        seconds, micros = await client.time()
        return str(info.get("redis_version", "?")), int(seconds) * 1000 + int(micros) // 1000
    finally:
        await client.aclose()
