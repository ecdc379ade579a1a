"""How a step's arguments are bound to a SQLite statement: list arguments as JSON text (for ``json_each``), or, for a
statement marked ``rows``, its columns as one JSON array of rows. The driver (:mod:`pica.store.sql_sqlite`) binds
every step this way, and so does a ``Statement(run=...)`` that runs statements of its own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from pica.store.txn import Statement

_json_encode: Final = msgspec.json.Encoder().encode


def bind(statement: Statement, args: Sequence[Any]) -> tuple[Any, ...]:
    picked = statement.select(args)
    if statement.rows:
        return (_json_encode(list(zip(*picked, strict=True))).decode(),)
    return tuple(_json_encode(a).decode() if isinstance(a, list) else a for a in picked)
