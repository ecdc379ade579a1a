"""The Store methods written once, for every SQL backend.

Each method names a transaction (a generator of :mod:`pica.store.txn` steps, from :mod:`pica.store.messages` and its
sibling modules) and hands it to the backend, which runs it through its own driver: SQLite's writer thread or reader
pool, a PostgreSQL write lane or pooled connection. A backend implements the two hooks below, the hot-path appends,
and whatever it has not moved here yet.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TypeVar

from pica.store import messages
from pica.store.base import MessageRecord, Store
from pica.store.txn import Txn

T = TypeVar("T")


class SqlStore(Store):
    @abc.abstractmethod
    async def _read_txn(self, make: Callable[[], Txn[T]], *, snapshot: bool = False) -> T:
        """Run a read-only transaction. ``make`` builds it afresh for every attempt. ``snapshot``: the reads must
        see one point in time (SQLite's reads always do)."""

    @abc.abstractmethod
    async def _write_txn(self, make: Callable[[], Txn[T]]) -> T:
        """Run a transaction that writes, committed before this returns."""

    async def hide_message(self, user_id: int, conversation_id: str, seq: int, ts: int) -> MessageRecord:
        return await self._write_txn(lambda: messages.hide_message(user_id, conversation_id, seq, ts))
