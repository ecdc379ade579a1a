"""The SQLite driver of store transactions (:mod:`pica.store.txn`): binds a step's columns and runs it.

A read's arguments are bound as :mod:`pica.store.sqlite_binding` says; a write runs as one ``executemany``.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Final, TypeVar

from pica.store import (
    admin,
    bots,
    devices,
    groups,
    invites,
    jobs,
    lifecycle,
    links,
    media,
    messages,
    pins,
    previews,
    reactions,
    scram,
    search,
    sessions,
    social,
)
from pica.store.sqlite_binding import bind
from pica.store.txn import Dialect, Read, Step, Txn, drive, merge

T = TypeVar("T")

STATEMENTS: Final[Dialect] = merge(
    messages.SQLITE, groups.SQLITE, social.SQLITE, invites.SQLITE, sessions.SQLITE, lifecycle.SQLITE, search.SQLITE,
    jobs.SQLITE, media.SQLITE, bots.SQLITE, devices.SQLITE, admin.SQLITE,
    pins.SQLITE, scram.SQLITE, reactions.SQLITE, links.SQLITE, previews.SQLITE,
)
"""Every statement SQLite knows, gathered from the modules that write transactions."""

def run_step(conn: sqlite3.Connection, step: Step) -> Any:
    """Answer one step of a transaction on ``conn``: rows for a read, rows changed for a write."""
    statement = STATEMENTS[step.statement]
    if isinstance(step, Read):
        if statement.run is not None:
            return statement.run(conn, statement.select(step.args))
        if statement.sql is None:
            return []
        return conn.execute(statement.sql, bind(statement, step.args)).fetchall()
    if statement.sql is None or not step.rows:
        return 0
    return conn.executemany(statement.sql, zip(*statement.select(step.columns), strict=True)).rowcount


def run(conn: sqlite3.Connection, txn: Txn[T]) -> T:
    """Run a transaction's steps on ``conn`` (already inside BEGIN) and return its result."""
    return drive(txn, lambda step: run_step(conn, step))


class TooManyRows(Exception):
    """A bounded read (:func:`run_bounded`) reached its budget of rows; what it read is dropped."""


def run_bounded(conn: sqlite3.Connection, txn: Txn[T], max_rows: int) -> T:
    """:func:`run` of a read-only transaction that fetches at most ``max_rows`` rows over all its reads, else raises
    :class:`TooManyRows` having fetched one more. The bound limits the work only for statements whose rows stream
    (no sort or grouping over the whole result): SQLite produces rows as they are fetched."""
    left = max_rows

    def step(step: Step) -> Any:
        nonlocal left
        statement = STATEMENTS[step.statement]
        if not isinstance(step, Read) or statement.run is not None or statement.sql is None:
            raise TypeError(f"not a bounded read: {step.statement}")
        rows = conn.execute(statement.sql, bind(statement, step.args)).fetchmany(left + 1)
        if len(rows) > left:
            raise TooManyRows(step.statement)
        left -= len(rows)
        return rows

    return drive(txn, step)
