"""Group transactions (create, change, read), written once for both dialects (see :mod:`pica.store.txn`).

The rules are in :mod:`pica.store.group_rules`; here is the order of reads and writes, and each statement's text for
SQLite and PostgreSQL side by side.
"""

from __future__ import annotations

from typing import Final

from pica.store.txn import Dialect

SQLITE: Final[Dialect] = {}

POSTGRES: Final[Dialect] = {}
