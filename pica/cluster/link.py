"""Connections to Redis, reconnect pacing and outage logging shared by the bus's loops."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from pica.config import RedisConfig
from pica.core.ports import Clock

log = logging.getLogger(__name__)

REDIS_ERRORS: Final = (RedisError, RedisClusterException, OSError, TimeoutError, EOFError)
"""What a Redis call can raise when Redis is down, slow or restarting (redis-py wraps most socket errors, not all;
on a Redis Cluster, no reachable seed or a slot without a primary raise ``RedisClusterException``, which is not a
``RedisError``)."""


def connection_kwargs(config: RedisConfig) -> dict[str, Any]:
    """Every connection: bounded connect and socket times (a command never hangs), and no retries inside redis-py:
    a retried PUBLISH whose reply was lost would be published twice, and retry pacing belongs to our loops, which
    know what a failure means (queue, resubscribe, resync). RESP2, so replies have the same shapes on every
    redis-py version (redis-py 8 defaults to RESP3, where pub/sub messages become push frames)."""
    return {
        "protocol": 2,
        "socket_timeout": config.timeout,
        "socket_connect_timeout": config.timeout,
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }


def command_client(url: str, config: RedisConfig) -> Redis:
    return Redis.from_url(url, **connection_kwargs(config))


def subscriber_pool(url: str, config: RedisConfig) -> ConnectionPool:
    """Only used to make the subscriber's own connection (with the URL's host, credentials, TLS or socket path).
    No socket timeout: a subscriber waits for messages indefinitely, and its watchdog bounds silence instead
    (connecting is still bounded by ``socket_connect_timeout``)."""
    kwargs = connection_kwargs(config)
    kwargs["socket_timeout"] = None
    return ConnectionPool.from_url(url, **kwargs)


class WorkSignal:
    """Between the callers that queue work (synchronously, on the event loop) and the one writer task that does it:
    ``kick`` wakes the writer, ``idle`` waits for it to sleep with nothing left (shutdown drains with it)."""

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def kick(self) -> None:
        if not self._wake.is_set():
            self._wake.set()
            self._idle.clear()

    def stop(self) -> None:
        """Wake the writer so that it sees it must stop (it checks its own flag)."""
        self._wake.set()

    async def sleep(self) -> None:
        """The writer has nothing to do: report idle, wait for the next kick."""
        self._idle.set()
        self._wake.clear()
        await self._wake.wait()

    async def idle(self, timeout: float) -> bool:
        """Whether the writer went idle within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


class Wants:
    """A subscriber's channels: those it should hold and those it has asked the bus for. ``want``/``unwant`` only
    edit the first (no await: the local sessions' presence listener calls them) and wake the subscriber's sender,
    which sends the difference; a user who connects and leaves within one loop turn costs nothing."""

    def __init__(self, static: Iterable[bytes]) -> None:
        self._wanted: set[bytes] = set(static)
        self._asked: set[bytes] = set()
        self._changed = asyncio.Event()
        self.subscribed = asyncio.Event()
        """Set while the current connection(s) hold every channel they were asked for at connect time."""

    @property
    def connected(self) -> bool:
        return self.subscribed.is_set()

    def want(self, channel: bytes) -> None:
        if channel not in self._wanted:
            self._wanted.add(channel)
            self._changed.set()

    def unwant(self, channel: bytes) -> None:
        if channel in self._wanted:
            self._wanted.discard(channel)
            self._changed.set()

    def wants(self, channel: bytes) -> bool:
        return channel in self._wanted

    def _difference(self) -> tuple[list[bytes], list[bytes]]:
        """(channels to drop, channels to add), in a stable order."""
        return sorted(self._asked - self._wanted), sorted(self._wanted - self._asked)


class Backoff:
    """Exponential backoff with full jitter (against reconnect storms; AWS's "Exponential Backoff And Jitter"), from
    ``base`` up to ``cap`` seconds."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = max(cap, base)
        self._attempt = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self._attempt, 30)))
        self._attempt += 1
        return random.uniform(self.base, ceiling)

    def reset(self) -> None:
        self._attempt = 0


class Outage:
    """Logs one link's outage loudly once, then a reminder every ``repeat`` seconds, then its end: an outage of
    minutes must be visible without writing a line per retry."""

    def __init__(self, what: str, clock: Clock, repeat: float = 30.0) -> None:
        self.what = what
        self._clock = clock
        self._repeat = repeat
        self._since: float | None = None
        self._last_log = 0.0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        now = self._clock.monotonic()
        if self._since is None:
            self._since = self._last_log = now
            log.error("cluster bus: %s failed (%s: %s); serving local traffic only, retrying in the background",
                      self.what, type(exc).__name__, exc)
        elif now - self._last_log >= self._repeat:
            self._last_log = now
            log.error("cluster bus: %s still failing after %.0f s (%s: %s)", self.what, now - self._since,
                      type(exc).__name__, exc)

    def recovered(self) -> None:
        if self._since is not None:
            log.warning("cluster bus: %s recovered after %.1f s", self.what, self._clock.monotonic() - self._since)
            self._since = None


async def supervise(name: str, loop_factory: Callable[[], Coroutine[Any, Any, None]], running: Callable[[], bool],
                    pause: float = 1.0) -> None:
    """Run a background loop while ``running()``, restarting it after an unexpected exception (a bug here or in
    redis-py): a dead loop would silently stop publishing, subscribing or heartbeating, which is worse than a
    logged restart."""
    while running():
        try:
            await loop_factory()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("cluster bus: %s crashed; restarting it in %.1f s", name, pause)
            await asyncio.sleep(pause)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], timeout: float) -> None:
    """Cancel tasks and wait for them to end, cancelling again while they still run.

    Python 3.11's ``asyncio.wait_for`` returns the result instead of raising when a cancellation arrives just as
    the awaited operation completes (fixed in 3.12); redis-py wraps every socket write in it. A loop whose
    cancellation was swallowed like that runs on, and a single ``cancel(); await task`` then hangs forever (seen
    once in about 60 shutdowns under load, and reproduced at will with a 1 ms heartbeat). So every loop also checks
    a ``closed`` flag, set before this is called, and this cancels again until the tasks end, bounded by
    ``timeout``: a shutdown must end."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.error("cluster bus: %d background tasks did not stop within %.1f s", len(pending), timeout)
            return
        # Long enough for a task's own cleanup (closing its connection), which a second cancel would interrupt.
        _, pending = await asyncio.wait(pending, timeout=min(0.5, remaining))
