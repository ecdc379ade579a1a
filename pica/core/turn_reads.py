"""Work asked for in one turn of the event loop, done once for all of it.

A read that every connect makes (the session a token names, the audience a user's presence goes to) costs a trip to
a reader (a thread hop on SQLite, a round trip on PostgreSQL) that dwarfs the lookup itself. Connects come in bursts
(a node restarts, a load balancer reloads): the keys asked for together share one read of up to ``limit`` keys. A
lone request waits no longer than before: its read starts at the end of the loop turn it arrived in.

Work nobody waits on in a hurry (a presence announcement) may wait ``delay`` seconds for company: the connects of a
storm arrive a few per loop turn, so a read per turn still paid its trip for one or two keys. A batch that reaches
``limit`` keys starts at the end of its turn, without waiting out the delay.

Work someone does wait on (a socket's authentication) may wait ``busy_delay`` seconds, and only while requests come
in a stream: when the last batch started less than ``busy_delay`` ago. A storm's connects arrive one per loop turn
more often than not, so a read per turn held a single session; now they share reads, while a lone request after
a quiet moment still starts at the end of its turn. The SQLite writer follows the same rule: it waits for company
only under steady traffic (``sqlite.commit_delay_ms``).

:class:`TurnBatch` is that rule; :class:`TurnReads` puts a future per caller on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from functools import partial
from typing import Generic, TypeVar

from pica.core.loopref import LoopRef

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
E = TypeVar("E")


class TurnBatch(Generic[K, E]):
    """Entries (a key and what its callers added to it) gathered in one loop turn, or within ``delay`` seconds,
    handed to ``start`` together: one dict of up to ``limit`` keys, in the order they were first added."""

    __slots__ = ("_busy_delay", "_delay", "_gathering", "_handle", "_last_start", "_limit", "_start", "_waits",
                 "loop")

    def __init__(self, start: Callable[[dict[K, E]], object], limit: int, delay: float = 0.0,
                 busy_delay: float = 0.0) -> None:
        self._start = start
        self._limit = limit
        self._delay = delay
        self._busy_delay = busy_delay
        self.loop = LoopRef()
        """The loop the batches run on, for their callers' futures too."""
        self._gathering: dict[K, E] | None = None
        self._handle: asyncio.Handle | None = None
        """The scheduled start of the batch now gathering."""
        self._waits = False
        """Whether the batch now gathering waits out a delay (rather than starting at the end of its turn)."""
        self._last_start = float("-inf")
        """The loop's time when the last batch started."""

    def gathering(self) -> dict[K, E]:
        """The batch now gathering (a new one, its start scheduled, when none is). Add to it, then call
        :meth:`added`."""
        batch = self._gathering
        if batch is None:
            self._gathering = batch = {}
            loop = self.loop()
            wait = self._delay
            if wait <= 0 and self._busy_delay > 0 and loop.time() - self._last_start < self._busy_delay:
                wait = self._busy_delay  # requests are coming in a stream: this one waits for company
            self._waits = wait > 0
            if self._waits:
                self._handle = loop.call_later(wait, self._run, batch)
            else:
                self._handle = loop.call_soon(self._run, batch)
        return batch

    def added(self, batch: dict[K, E]) -> None:
        """A key was added to ``batch``: when it is full, the next key starts a batch of its own, and this one
        starts at the end of this turn rather than after the delay."""
        if len(batch) < self._limit or batch is not self._gathering:
            return
        if self._waits:
            self._cancel()
            self.loop().call_soon(self._run, batch)
        else:
            self._gathering = None  # its start at the end of this turn stays scheduled

    def start_now(self) -> None:
        """Start the batch now gathering, if any, at once (at shutdown). A full batch already detached starts at
        the end of the turn it filled in."""
        batch = self._gathering
        if batch is not None:
            self._cancel()
            self._start(batch)

    def _cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._gathering = None

    def _run(self, batch: dict[K, E]) -> None:
        if self._gathering is batch:
            self._gathering = None
            self._handle = None
        self._last_start = self.loop().time()
        self._start(batch)


class TurnReads(Generic[K, V]):
    """Batches ``get(key)`` calls of one loop turn into one ``read_many(keys)``; a key the read does not answer
    resolves to None, and a failed read fails every waiter with its error."""

    __slots__ = ("_batch", "_read_many")

    def __init__(self, read_many: Callable[[list[K]], Awaitable[Mapping[K, V]]], limit: int,
                 delay: float = 0.0, busy_delay: float = 0.0) -> None:
        self._read_many = read_many
        self._batch: TurnBatch[K, list[asyncio.Future[V | None]]] = TurnBatch(self._read, limit, delay, busy_delay)

    def get(self, key: K) -> asyncio.Future[V | None]:
        future: asyncio.Future[V | None] = self._batch.loop().create_future()
        waiting = self._batch.gathering()
        waiting.setdefault(key, []).append(future)
        self._batch.added(waiting)
        return future

    def _read(self, waiting: dict[K, list[asyncio.Future[V | None]]]) -> None:
        read = asyncio.ensure_future(self._read_many(list(waiting)))
        read.add_done_callback(partial(_answer, waiting))


def _answer(waiting: dict[K, list[asyncio.Future[V | None]]], read: asyncio.Future[Mapping[K, V]]) -> None:
    error = read.exception() if not read.cancelled() else asyncio.CancelledError()
    found = read.result() if error is None else {}
    for key, futures in waiting.items():
        for future in futures:
            if future.done():  # its caller gave up (the client left)
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(found.get(key))
