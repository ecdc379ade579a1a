"""The node's subscriber: one Redis connection in pub/sub mode, owned outright.

redis-py's ``PubSub`` reconnects and resubscribes by itself, silently; a node that does not know its subscription
was cut cannot know its clients may have missed frames. Here the connection is ours: when it breaks, the loop
reconnects with backoff, subscribes to every channel it should hold, waits for Redis to confirm them all, and then
reports ``on_subscribed`` (the cluster turns it into a resync of the local clients).

Channels change as users come and go. ``want``/``unwant`` only edit the wanted set (no await: they are called from
the local sessions' presence listener); a sender task then sends the difference between wanted and asked. A user who
connects and disconnects within one loop turn costs nothing, and commands go out in order on the one connection.

``confirm`` answers "has Redis processed every SUBSCRIBE sent so far?" by counting the confirmations Redis sends
back in order, one per channel. Messages published after Redis processed a SUBSCRIBE reach this connection; that is
what lets the gateway send ``ready`` only once nothing committed after the client's first sync can be missed.

Silence is probed: after ``idle`` seconds without traffic a watchdog sends PING; no answer within ``timeout`` and
the connection is treated as dead (a half-open TCP connection would otherwise look like a quiet bus forever).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable

from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection

from pica.cluster.link import REDIS_ERRORS, Backoff, Outage, cancel_and_wait

log = logging.getLogger(__name__)

MessageHandler = Callable[[bytes, bytes], None]

_CHANNELS_PER_COMMAND = 5_000
"""A node holding 100,000 users resubscribes in 20 commands, not one command with 100,000 arguments."""


class Subscriber:
    def __init__(self, pool: ConnectionPool, static: Iterable[bytes], on_message: MessageHandler,
                 on_subscribed: Callable[[bool], None], timeout: float, idle: float, backoff: Backoff,
                 outage: Outage) -> None:
        self._pool = pool
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self._timeout = timeout
        self._idle = idle
        self._backoff = backoff
        self._outage = outage
        self._wanted: set[bytes] = set(static)
        self._asked: set[bytes] = set()
        self._conn: AbstractConnection | None = None
        self._changed = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._sent = 0
        """Confirmations expected on the current connection (one per channel per SUBSCRIBE/UNSUBSCRIBE)."""
        self._acked = 0
        self._waiters: deque[tuple[int, asyncio.Future[bool]]] = deque()
        self._first = True
        self.closed = False
        self._heard = 0.0
        """Loop time of the last reply read on the current connection."""
        self.subscribed = asyncio.Event()
        """Set while the current connection holds every channel it was asked for at connect time."""

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

    async def confirm(self) -> bool:
        """Wait until Redis confirmed every subscription change made so far. False at once if the subscriber is
        not connected (its next (re)subscription is followed by a resync, which covers the gap). The caller
        bounds the wait."""
        if not self.connected:
            return False
        # Shielded: a caller giving up must not cancel a write half-way, which would cost the connection (redis-py
        # closes a connection whose write was interrupted) and a resync of every local client.
        await asyncio.shield(self._flush())
        if self._conn is None:
            return False
        target = self._sent
        if self._acked >= target:
            return True
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        return await future

    # ------------------------------------------------------------------------------------------ tasks

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    async def run(self) -> None:
        """Until closed: connect, subscribe, read; on any failure, back off and start again."""
        while not self.closed:
            # redis-py leaves these two methods unannotated.
            conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
            try:
                await asyncio.wait_for(conn.connect(), self._timeout)  # type: ignore[no-untyped-call]
                async with self._send_lock:  # no change goes out on a half-set-up connection
                    channels = sorted(self._wanted)
                    self._asked = set(channels)
                    self._sent, self._acked = len(channels), 0
                    await asyncio.wait_for(_send(conn, "SUBSCRIBE", channels), self._timeout)
                    self._conn = conn
                self._changed.set()  # changes made while connecting
                await self._serve(conn, len(channels))
            except asyncio.CancelledError:
                raise
            except (*REDIS_ERRORS, ValueError) as exc:
                self._outage.failed(exc)
            finally:
                self._lost()
                await conn.disconnect(nowait=True)
            await asyncio.sleep(self._backoff.next())

    async def _serve(self, conn: AbstractConnection, initial: int) -> None:
        """Read until the connection fails, while a watchdog probes silence. Reads carry no timeout of their own:
        a timer per message would cost more than the message (measured: a third of the receive path)."""
        loop = asyncio.get_running_loop()
        self._heard = loop.time()
        serving = [True]
        reader = loop.create_task(self._read(conn, initial))
        watchdog = loop.create_task(self._watch(conn, serving))
        try:
            done, _ = await asyncio.wait((reader, watchdog), return_when=asyncio.FIRST_COMPLETED)
        finally:
            serving[0] = False
            await cancel_and_wait((reader, watchdog), self._timeout)
        for task in done:
            task.result()

    async def _watch(self, conn: AbstractConnection, serving: list[bool]) -> None:
        loop = asyncio.get_running_loop()
        while serving[0]:
            await asyncio.sleep(self._idle)
            if loop.time() - self._heard < self._idle:
                continue
            probed = loop.time()
            await asyncio.wait_for(conn.send_command("PING", check_health=False), self._timeout)
            await asyncio.sleep(self._timeout)
            if self._heard < probed:
                raise TimeoutError(f"subscriber connection silent: no answer to PING within {self._timeout} s")

    async def _read(self, conn: AbstractConnection, initial: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # The connection has no socket timeout (see subscriber_pool): this waits for the next reply.
            reply = await conn.read_response()
            self._heard = loop.time()
            if not isinstance(reply, list) or len(reply) < 2:
                raise ValueError(f"unexpected reply on the subscriber connection: {reply!r:.80}")
            kind = reply[0]
            if kind == b"message":
                try:
                    self._on_message(reply[1], reply[2])
                except Exception:
                    log.exception("cluster bus: message handler failed")
            elif kind in (b"subscribe", b"unsubscribe"):
                self._acked += 1
                while self._waiters and self._waiters[0][0] <= self._acked:
                    _, future = self._waiters.popleft()
                    if not future.done():
                        future.set_result(True)
                if not self.subscribed.is_set() and self._acked >= initial:
                    self.subscribed.set()
                    self._outage.recovered()
                    self._backoff.reset()
                    first, self._first = self._first, False
                    self._on_subscribed(first)
            # else: b"pong", the answer to our probe

    def _lost(self) -> None:
        self._conn = None
        self.subscribed.clear()
        while self._waiters:
            _, future = self._waiters.popleft()
            if not future.done():
                future.set_result(False)

    async def send_loop(self) -> None:
        """Until closed: send the subscription changes made since the last turn."""
        while not self.closed:
            await self._changed.wait()
            self._changed.clear()
            await self._flush()

    async def _flush(self) -> None:
        async with self._send_lock:
            conn = self._conn
            if conn is None:
                return
            drop = sorted(self._asked - self._wanted)
            add = sorted(self._wanted - self._asked)
            try:
                if drop:
                    self._asked.difference_update(drop)
                    self._sent += len(drop)
                    await _send(conn, "UNSUBSCRIBE", drop)
                if add:
                    self._asked.update(add)
                    self._sent += len(add)
                    await _send(conn, "SUBSCRIBE", add)
            except REDIS_ERRORS as exc:
                # The connection is gone (redis-py closed it); the reader notices and reconnects, and the new
                # connection subscribes to the whole wanted set.
                log.debug("cluster bus: subscription change not sent: %s", exc)


async def _send(conn: AbstractConnection, command: str, channels: list[bytes]) -> None:
    for start in range(0, len(channels), _CHANNELS_PER_COMMAND):
        await conn.send_command(command, *channels[start:start + _CHANNELS_PER_COMMAND], check_health=False)
