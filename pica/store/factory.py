"""Builds the configured store from its URL: the embedded SQLite default, or PostgreSQL for cluster mode."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from pica.config import Config, ConfigError
from pica.store.base import Store
from pica.store.schema import Progress


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def sqlite_path(config: Config) -> Path:
    """``sqlite:///abs/path.db`` → /abs/path.db; ``sqlite://rel/path.db`` → rel/path.db; no URL → data_dir."""
    if not config.store:
        return Path(config.data_dir) / "pica.db"
    path = config.store.removeprefix("sqlite://")
    if not path:
        raise ConfigError("store: a sqlite:// URL needs a file path")
    return Path(path)


def build_store(config: Config, *, one_shot: bool = False) -> Store:
    """The store the configuration names. ``one_shot``: for a command that runs a few operations and exits (the
    admin commands), where SQLite's writer runs as a thread: starting a writer process costs more than it saves."""
    if is_postgres(config.store):
        from pica.store.postgres import PostgresStore  # asyncpg is imported only when it is used

        return PostgresStore(config.store, config.postgres)
    from pica.store.sqlite import SqliteStore

    sqlite = dataclasses.replace(config.sqlite, writer="thread") if one_shot else config.sqlite
    return SqliteStore(sqlite_path(config), sqlite)


async def migrate_store(config: Config, report: Progress | None = None) -> int:
    """Bring the configured store's schema up to date; returns its version. ``report`` is called after each
    migration applied (for SQLite, from a worker thread)."""
    if is_postgres(config.store):
        from pica.store.postgres import migrate

        return await migrate(config.store, config.postgres, report)
    return await asyncio.to_thread(_migrate_sqlite, sqlite_path(config), report)


def _migrate_sqlite(path: Path, report: Progress | None) -> int:
    import sqlite3

    from pica.store.sqlite_writer import migrate as migrate_sqlite

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        return migrate_sqlite(conn, report)
    finally:
        conn.close()
