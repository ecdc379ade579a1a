"""Rate-limit buckets in Redis: one atomic script per check (:data:`pica.cluster.scripts.BUCKET`), so that every
node spends from the same bucket and time comes from one clock (Redis's). Keys: ``{prefix}rl:{bucket}``."""

from __future__ import annotations

from abc import ABC, abstractmethod

from pica.cluster import scripts
from pica.cluster.driver import Commands


class BusBuckets(ABC):
    """:class:`pica.core.ports.SharedBuckets` kept by the bus: each check is one call, ``mode`` being ``take``,
    ``wait`` or ``charge``, answered with the seconds to wait."""

    @abstractmethod
    async def _run(self, bucket: str, count: float, per: float, cost: float, mode: str) -> float: ...

    async def take(self, bucket: str, count: float, per: float, cost: float) -> float:
        return await self._run(bucket, count, per, cost, "take")

    async def wait(self, bucket: str, count: float, per: float) -> float:
        return await self._run(bucket, count, per, 0, "wait")

    async def charge(self, bucket: str, count: float, per: float, cost: float) -> None:
        await self._run(bucket, count, per, cost, "charge")


class RedisBuckets(BusBuckets):
    """The buckets on the cluster's Redis."""

    def __init__(self, redis: Commands, prefix: str) -> None:
        self._prefix = f"{prefix}rl:"
        self._script = redis.register_script(scripts.BUCKET)

    async def _run(self, bucket: str, count: float, per: float, cost: float, mode: str) -> float:
        answer = await self._script(keys=[self._prefix + bucket], args=[count, per * 1000, cost, mode])
        return float(answer) / 1000
