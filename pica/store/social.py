"""Accounts, administration of users, contacts, blocks, settings and presence: transactions written once for both
dialects (see :mod:`pica.store.txn`), each statement's text for SQLite and PostgreSQL side by side.
"""

from __future__ import annotations

from typing import Final

from pica.store.txn import Dialect

SQLITE: Final[Dialect] = {}

POSTGRES: Final[Dialect] = {}
