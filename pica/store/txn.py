"""Transactions written once, run by either SQL dialect.

A store transaction is a generator: it yields *steps* (a named statement and its arguments) and receives each step's
answer; it returns the operation's result. It never touches a connection, so the same code runs on SQLite's writer
thread (a synchronous driver) and on an asyncpg connection (an asynchronous one), the way the ``h11`` and
``websockets`` libraries keep their protocol free of I/O. What differs between the dialects is the statement text
(:mod:`pica.store.sql_sqlite`, :mod:`pica.store.sql_postgres`) and the driver loop, nothing else.

Steps take *columns*: a list per parameter, one entry per row. A :class:`Read` answers rows (sequences indexed by
position); a :class:`Write` runs its statement for every row (``executemany`` on SQLite, one ``unnest`` statement on
PostgreSQL) and answers how many rows it changed. A write of zero rows is not sent at all. Domain refusals are
``PicaError`` raised by the transaction before its first write; :class:`Retry` asks the driver to roll back and run
the transaction again (a concurrent transaction won a race that a new attempt will see).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Read:
    statement: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Write:
    statement: str
    columns: tuple[Sequence[Any], ...]

    @property
    def rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0


Step = Read | Write
Txn = Generator[Step, Any, T]
"""A transaction: yields steps, receives their answers, returns its result."""


class Retry(Exception):
    """Roll back and run the transaction again: a concurrent transaction committed what this one raced it for."""


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a dialect. ``sql`` None: this dialect has nothing to do for the step (its answer is empty).
    ``pick``: which of the step's arguments the statement binds, in order (default: all)."""

    sql: str | None
    pick: tuple[int, ...] | None = None
    rows: bool = False
    """SQLite reads only: bind the picked columns as ONE parameter, a JSON array of rows (``json_each``)."""
    run: Callable[[Any, tuple[Any, ...]], list[Any]] | None = None
    """A read the dialect's SQL cannot say in one statement, as a function of (connection, args) that runs ``sql``
    as often as it needs (SQLite has no LATERAL join)."""

    def select(self, args: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(args) if self.pick is None else tuple(args[i] for i in self.pick)


Dialect = dict[str, Statement]


def merge(*parts: Dialect) -> Dialect:
    """One dialect's statements from every module that writes transactions; a name defined twice is a bug."""
    merged: Dialect = {}
    for part in parts:
        clash = merged.keys() & part.keys()
        if clash:
            raise ValueError(f"statements defined twice: {sorted(clash)}")
        merged.update(part)
    return merged


def drive(txn: Txn[T], run_step: Callable[[Step], Any]) -> T:
    """Run a transaction with a synchronous step runner (SQLite); the asynchronous twin is in the PostgreSQL store."""
    try:
        step = next(txn)
        while True:
            step = txn.send(run_step(step))
    except StopIteration as stop:
        result: T = stop.value
        return result
