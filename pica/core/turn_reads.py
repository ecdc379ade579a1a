"""Reads asked for in one turn of the event loop, answered by one store read.

A read that every connect makes (the session a token names, the audience a user's presence goes to) costs a trip to
a reader (a thread hop on SQLite, a round trip on PostgreSQL) that dwarfs the lookup itself. Connects come in bursts
(a node restarts, a load balancer reloads): the keys asked for together share one read of up to ``limit`` keys. A
lone request waits no longer than before: its read starts at the end of the loop turn it arrived in.
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

    __slots__ = ("_limit", "_read_many", "_waiting")

    def __init__(self, read_many: Callable[[list[K]], Awaitable[Mapping[K, V]]], limit: int) -> None:
        self._read_many = read_many
        self._limit = limit
        self._waiting: dict[K, list[asyncio.Future[V | None]]] | None = None

    def get(self, key: K) -> asyncio.Future[V | None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V | None] = loop.create_future()
        waiting = self._waiting
        if waiting is None:
            self._waiting = waiting = {}
            loop.call_soon(self._read, waiting)
        waiting.setdefault(key, []).append(future)
        if len(waiting) >= self._limit:
            self._waiting = None  # full: the next request starts a read of its own
        return future

    def _read(self, waiting: dict[K, list[asyncio.Future[V | None]]]) -> None:
        if self._waiting is waiting:
            self._waiting = None
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
