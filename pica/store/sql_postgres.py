"""The PostgreSQL driver of store transactions (:mod:`pica.store.txn`): runs each step on an asyncpg connection.

Statements take one array per column and ``unnest`` them, so a step is one round trip however many rows it has.
"""

from __future__ import annotations

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
from pica.store.txn import Dialect, Read, Txn, merge

T = TypeVar("T")

STATEMENTS: Final[Dialect] = merge(
    messages.POSTGRES, groups.POSTGRES, social.POSTGRES, invites.POSTGRES, sessions.POSTGRES, lifecycle.POSTGRES,
    search.POSTGRES,
    jobs.POSTGRES, media.POSTGRES, bots.POSTGRES, devices.POSTGRES, admin.POSTGRES,
    pins.POSTGRES, scram.POSTGRES, reactions.POSTGRES, links.POSTGRES, previews.POSTGRES,
)
"""Every statement PostgreSQL knows, gathered from the modules that write transactions."""



def _changed(status: str) -> int:
    """Rows changed, from a command tag such as ``INSERT 0 5`` or ``UPDATE 3``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


async def run(conn: Any, txn: Txn[T]) -> T:
    """Run a transaction's steps on an asyncpg connection (already inside BEGIN) and return its result."""
    answer: Any = None
    try:
        while True:
            step = txn.send(answer)
            statement = STATEMENTS[step.statement]
            if isinstance(step, Read):
                answer = [] if statement.sql is None else await conn.fetch(statement.sql, *statement.select(step.args))
            elif statement.sql is None or not step.rows:
                answer = 0
            else:
                answer = _changed(await conn.execute(statement.sql, *statement.select(step.columns)))
    except StopIteration as stop:
        result: T = stop.value
        return result
