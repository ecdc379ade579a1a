"""Reads asked for in one turn of the event loop, answered by one store read.

A read that every connect makes (the session a token names, the audience a user's presence goes to) costs a trip to
a reader (a thread hop on SQLite, a round trip on PostgreSQL) that dwarfs the lookup itself. Connects come in bursts
(a node restarts, a load balancer reloads): the keys asked for together share one read of up to ``limit`` keys. A
lone request waits no longer than before: its read starts at the end of the loop turn it arrived in.

A read nobody waits on in a hurry (a presence announcement) may wait ``delay`` seconds for company: the connects of a
storm arrive a few per loop turn, so a read per turn still paid its trip for one or two keys. A read that reaches
``limit`` keys starts at the end of its turn, without waiting out the delay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from functools import partial
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TurnReads(Generic[K, V]):
    """Batches ``get(key)`` calls of one loop turn into one ``read_many(keys)``; a key the read does not answer
    resolves to None, and a failed read fails every waiter with its error."""

    __slots__ = ("_delay", "_limit", "_read_many", "_timer", "_waiting")

    def __init__(self, read_many: Callable[[list[K]], Awaitable[Mapping[K, V]]], limit: int,
                 delay: float = 0.0) -> None:
        self._read_many = read_many
        self._limit = limit
        self._delay = delay
        self._waiting: dict[K, list[asyncio.Future[V | None]]] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def get(self, key: K) -> asyncio.Future[V | None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V | None] = loop.create_future()
        waiting = self._waiting
        if waiting is None:
            self._waiting = waiting = {}
            if self._delay > 0:
                self._timer = loop.call_later(self._delay, self._read, waiting)
            else:
                loop.call_soon(self._read, waiting)
        waiting.setdefault(key, []).append(future)
        if len(waiting) >= self._limit:
            self._waiting = None  # full: the next request starts a read of its own
            if self._timer is not None:  # and this one need not wait out the delay
                self._timer.cancel()
                self._timer = None
                loop.call_soon(self._read, waiting)
        return future

    def _read(self, waiting: dict[K, list[asyncio.Future[V | None]]]) -> None:
        if self._waiting is waiting:
            self._waiting = None
            self._timer = None
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
