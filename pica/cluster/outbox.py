"""The node's publisher: every SPUBLISH goes through one ordered, bounded queue and one task.

``publish`` only appends (no await, no error: the caller is a delivery on the commit path). The task wakes once per
loop turn with work, sends everything queued in one round trip (a whole group commit's worth of frames), and keeps
the order because it is the only writer. The round trip is a pipeline of PUBLISH_MANY script calls, each
publishing a few hundred envelopes in order, rather than one PUBLISH per envelope: redis-py spends tens of
microseconds of Python per pipelined command and per reply, which capped a node at about 60,000 envelopes per
second; one call per 256 envelopes raised it to about 160,000 (measured with both nodes in one process). The script
is sent with EVAL, not EVALSHA: no NOSCRIPT after a Redis restart, and no SCRIPT EXISTS round trip, which redis-py
adds before every pipeline that holds registered scripts. A script may publish to channels of one hash slot only on
Redis Cluster, so the batch is split by slot (order kept within each slot, hence within each channel) and each
script is routed by its first channel; channels share slots by bucket (:mod:`pica.cluster.keys`), so a batch of a
few thousand envelopes still takes a few hundred calls at most, sent to every shard at once by the cluster
pipeline. On a single Redis every channel is "slot 0": one group, as before. When Redis fails, the batch goes back
to the head of the queue and the task retries with backoff; new envelopes keep queuing up to ``limit``. Beyond it
they are dropped and, once the queue has drained, a ``resync`` control envelope tells every other node that its
clients may have missed frames. A batch whose fate is unknown (the connection died after sending it; on Redis
Cluster, one shard of several failed) is sent again whole: a duplicate push is harmless (clients de-duplicate by
conversation and seq, protocol 8.6), a lost one costs a resync.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from pica.cluster import scripts
from pica.cluster.driver import BusRedis
from pica.cluster.link import REDIS_ERRORS, Backoff, Outage, WorkSignal

log = logging.getLogger(__name__)

_PER_SCRIPT = 256
"""Publishes per PUBLISH_MANY call: Redis serves other clients between calls, so one call must stay short (a few
hundred microseconds)."""
_PER_ROUND_TRIP = 4_096
"""Publishes per pipeline (one round trip)."""


Send = Callable[[list[tuple[bytes, bytes]]], Awaitable[None]]
"""Publishes a batch of (channel, data) in order, or raises one of REDIS_ERRORS (the batch is then sent again)."""


def redis_sender(redis: BusRedis) -> Send:
    async def send(batch: list[tuple[bytes, bytes]]) -> None:
        slot = redis.slot
        by_slot: dict[int, list[tuple[bytes, bytes]]] = {}
        for item in batch:
            by_slot.setdefault(slot(item[0]), []).append(item)
        pipe = redis.commands.pipeline(transaction=False)
        for items in by_slot.values():
            for start in range(0, len(items), _PER_SCRIPT):
                chunk = items[start:start + _PER_SCRIPT]
                args: list[bytes] = [chunk[0][0]]  # KEYS[1]: routes the call to the shard owning the slot
                for channel, data in chunk:
                    args += (channel, data)
                pipe.eval(scripts.PUBLISH_MANY, 1, *args)
        await pipe.execute()

    return send


class Outbox:
    def __init__(self, send: Send, limit: int, backoff: Backoff, outage: Outage,
                 resync_message: tuple[bytes, bytes]) -> None:
        self._send = send
        self._limit = limit
        self._backoff = backoff
        self._outage = outage
        self._resync_message = resync_message
        self._queue: deque[tuple[bytes, bytes]] = deque()
        self._signal = WorkSignal()
        self._overflowed = False
        self.closed = False
        self.published = 0
        self.dropped = 0

    @property
    def connected(self) -> bool:
        return not self._outage.down

    def __len__(self) -> int:
        return len(self._queue)

    def publish(self, channel: bytes, data: bytes) -> None:
        if len(self._queue) >= self._limit:
            self.dropped += 1
            if not self._overflowed:
                self._overflowed = True
                log.error("cluster bus: outbox full (%d envelopes); dropping, other nodes will be told to resync",
                          self._limit)
            return
        self._queue.append((channel, data))
        self._signal.kick()

    def close(self) -> None:
        self.closed = True
        self._signal.stop()

    async def run(self) -> None:
        queue = self._queue
        while not self.closed:
            if not queue:
                if self._overflowed:
                    # Everything kept has gone out: now tell the others what was not kept.
                    self._overflowed = False
                    queue.append(self._resync_message)
                    continue
                await self._signal.sleep()
                continue
            batch = [queue.popleft() for _ in range(min(len(queue), _PER_ROUND_TRIP))]
            try:
                await self._send(batch)
            except asyncio.CancelledError:
                queue.extendleft(reversed(batch))
                raise
            except REDIS_ERRORS as exc:
                queue.extendleft(reversed(batch))
                self._outage.failed(exc)
                await asyncio.sleep(self._backoff.next())
                continue
            self.published += len(batch)
            if self._outage.down:
                self._outage.recovered()
                self._backoff.reset()

    async def drain(self, timeout: float) -> bool:
        """Wait until the queue is empty (at shutdown); False if it did not empty in time, or at once while Redis
        is failing (stopping must not wait for an outage to end)."""
        if self._outage.down:
            return False
        return await self._signal.idle(timeout)
