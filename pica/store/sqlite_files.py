"""The embedded store's files, whole: an online backup, a restore, and the lock that keeps one server per database.

Backup uses SQLite's online backup API in one step, so it reads one snapshot (WAL mode: a read transaction, which
never blocks the server's writer and is never restarted by it): every commit before the snapshot is in the copy,
none after it. The copy is checked (``PRAGMA integrity_check``), fsynced and renamed into place, so a backup file
either is complete or does not exist. A restore checks the backup the same way, then replaces the database file
atomically and removes the old write-ahead log, with the server stopped: it takes the server's lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pica.errors import StartupError


@dataclass(frozen=True, slots=True)
class BackupInfo:
    path: Path
    size: int
    """Bytes."""
    messages: int
    schema_version: int


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check(path: Path) -> BackupInfo:
    """Open a database file read-only and prove it whole; ValueError says what is wrong."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                raise ValueError(f"{path} is damaged: {verdict}")
            version = int(db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0])
            messages = int(db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path} is not a Pica database: {exc}") from None
    return BackupInfo(path, path.stat().st_size, messages, version)


@dataclass(frozen=True, slots=True)
class Probe:
    """What ``pica doctor`` learns of a database without changing it."""

    schema_version: int
    """0: no schema yet (the server creates it at its first start)."""
    detail: str
    """One line: the engine's version, the size, the check made."""
    now_ms: int | None = None
    """The database server's clock (PostgreSQL), to compare with this machine's."""
    held_by: str = ""
    """SQLite: the pid of the server holding the database's lock, if one runs."""


def probe(database: Path) -> Probe:
    """Look at an embedded database without writing to it: its schema version, a quick integrity check, and whether
    a server holds it. ValueError says what is wrong."""
    if not database.exists():
        return Probe(0, f"no database yet at {database} (created at the first start)")
    lock = Path(f"{database}.lock")
    held_by = ""
    if lock.exists():
        with open(lock) as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                held_by = handle.read().strip() or "?"
    try:
        with contextlib.closing(sqlite3.connect(database)) as db:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise ValueError(f"{database} is damaged: {verdict}")
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = 0
            if "schema_migrations" in tables:
                version = int(db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{database} is not a Pica database: {exc}") from None
    size = database.stat().st_size + (Path(f"{database}-wal").stat().st_size
                                      if Path(f"{database}-wal").exists() else 0)
    return Probe(version, f"SQLite {sqlite3.sqlite_version}, {size:,} bytes, quick_check ok", held_by=held_by)


def backup(database: Path, destination: Path) -> BackupInfo:
    """Copy a live database to ``destination`` (a new file), consistently, while the server runs."""
    if not database.exists():
        raise ValueError(f"no database at {database}")
    if destination.exists():
        raise ValueError(f"{destination} exists already: choose a new file")
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        # Not opened read-only: a read-only connection to a WAL database cannot start when no -shm file exists yet.
        with contextlib.closing(sqlite3.connect(database)) as source, \
                contextlib.closing(sqlite3.connect(partial)) as copy:
            source.backup(copy)  # all pages in one step: one snapshot
            copy.execute("PRAGMA journal_mode = DELETE")  # a single self-contained file
        info = _check(partial)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        partial.rename(destination)
        _fsync_directory(destination.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupInfo(destination, info.size, info.messages, info.schema_version)


def restore(backup_file: Path, database: Path) -> BackupInfo:
    """Replace ``database`` with a checked copy of ``backup_file``. The server must be stopped (its lock is taken:
    StartupError if it runs)."""
    info = _check(backup_file)
    database.parent.mkdir(parents=True, exist_ok=True)
    with server_lock(database):
        partial = database.with_name(database.name + ".restoring")
        shutil.copyfile(backup_file, partial)  # streamed: a database may be larger than memory
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        for stale in (Path(f"{database}-wal"), Path(f"{database}-shm")):
            stale.unlink(missing_ok=True)  # the old file's log: replayed onto the new file, it would corrupt it
        partial.rename(database)
        _fsync_directory(database.parent)
    return BackupInfo(database, info.size, info.messages, info.schema_version)


@contextlib.contextmanager
def server_lock(database: Path) -> Iterator[int]:
    """Hold ``<database>.lock`` exclusively (flock: released by the kernel when the process dies, even by kill -9).
    Two servers on one SQLite file would each push live frames only to their own clients, and a restore under a
    running server would pull the file from under it. StartupError when another process holds it.

    Yields the lock file's descriptor: a child process that inherits it holds the same lock (it belongs to the open
    file, not to the process) until it exits too, so the workers of ``pica serve --workers N`` keep their file from
    a second server even after their supervisor is gone."""
    path = Path(f"{database}.lock")
    handle = open(path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise StartupError(f"database {database} is in use by pica serve (pid {holder}): stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield handle.fileno()
    finally:
        handle.close()
