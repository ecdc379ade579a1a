"""SQLite store: the embedded default.

Writes go to one writer thread that owns the only write connection. It takes every operation waiting in its queue
(up to ``max_batch``), runs them in one transaction, commits once, and only then resolves the callers' futures: group
commit, one fsync for many messages, and an ack never precedes durability. An operation refused for a domain reason
(an unknown recipient) raises before writing anything, so it needs no savepoint; an unexpected error replays the
batch with a savepoint per operation so that only the faulty one fails. Reads run on a small thread pool, each thread
with its own connection; WAL lets them proceed while the writer commits. Nothing here runs SQL on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

from pica.config import SqliteConfig
from pica.errors import InternalError, PicaError, StoreUnavailable
from pica.store import messages, sql_sqlite
from pica.store import search as fts
from pica.store.append_rules import Append
from pica.store.base import (
    AppendResult,
    DirectAppend,
    EventAppend,
    GroupAppend,
    MessageRecord,
)
from pica.store.schema import SQLITE, Applied, Migrations, Progress, announce, bundled, legacy_sqlite_rows, plan
from pica.store.sql_store import SqlStore
from pica.store.txn import Txn

log = logging.getLogger(__name__)

T = TypeVar("T")
_BUSY_TIMEOUT_MS: Final = 10_000


@dataclass(slots=True)
class _WriteOp(Generic[T]):
    fn: Callable[[sqlite3.Connection], T] | None
    future: asyncio.Future[T]
    append: Append | None = None
    """A client's message (``fn`` None): consecutive ones run as one batch transaction (messages.append_batch)."""


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; the write stands regardless
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _resolve_batch(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        _resolve(future, result, error)


_MIGRATIONS_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT, checksum TEXT,"
    " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
)


def migrate(conn: sqlite3.Connection, report: Progress | None = None, migrations: Migrations | None = None) -> int:
    """Apply pending migrations (:mod:`pica.store.schema`), each in its own transaction, recorded with its checksum
    in schema_migrations (created when missing). A file of an earlier release, which kept only PRAGMA user_version,
    is adopted: its versions are recorded with the files' checksums. user_version still follows the version.
    Returns the schema version; raises MigrationError when the database and the files do not fit together."""
    sequence = migrations or bundled()
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_MIGRATIONS_TABLE)
            applied = [Applied(v, c) for v, c in conn.execute("SELECT version, checksum FROM schema_migrations")]
            if not applied:
                applied = legacy_sqlite_rows(int(conn.execute("PRAGMA user_version").fetchone()[0]))
            todo = plan(sequence, SQLITE, applied)
            for step in todo.adopt:
                conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?) ON CONFLICT"
                             " (version) DO UPDATE SET name = excluded.name, checksum = excluded.checksum",
                             (step.version, step.name, step.checksum))
            started = time.perf_counter()
            if todo.pending:
                step = todo.pending[0]
                for statement in step.sql.split(";\n"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)",
                             (step.version, step.name, step.checksum))
                conn.execute(f"PRAGMA user_version = {int(step.version)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if not todo.pending:
            return todo.version
        announce(report, step, time.perf_counter() - started)


class SqliteStore(SqlStore):
    def __init__(self, path: Path, config: SqliteConfig | None = None) -> None:
        self.path = path
        self.config = config or SqliteConfig()
        self._queue: queue.SimpleQueue[list[_WriteOp[Any]] | None] = queue.SimpleQueue()
        # Operations submitted during one turn of the event loop, handed to the writer together: one wake-up of
        # the writer thread (and one GIL hand-over) per turn instead of one per message.
        self._outgoing: list[_WriteOp[Any]] = []
        self._writer: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()

    # ------------------------------------------------------------------------------------------------ lifecycle

    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.config.synchronous}")
        if readonly:
            conn.execute("PRAGMA query_only = ON")
        return conn

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ready: asyncio.Future[None] = self._loop.create_future()
        self._writer = threading.Thread(target=self._writer_main, args=(ready,), name="pica-sqlite-writer", daemon=True)
        self._writer.start()
        await ready
        self._readers = ThreadPoolExecutor(max_workers=self.config.read_threads, thread_name_prefix="pica-sqlite-read")
        if self.config.checkpoint_interval > 0:
            self._checkpointer = threading.Thread(target=self._checkpoint_main, name="pica-sqlite-checkpoint",
                                                  daemon=True)
            self._checkpointer.start()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._handoff()
        self._queue.put(None)
        if self._writer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._checkpointer.join)
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        with self._reader_lock:
            for conn in self._reader_connections:
                conn.close()
            self._reader_connections.clear()

    # ------------------------------------------------------------------------------------------------ writer

    def _checkpoint_main(self) -> None:
        """Copy the WAL back into the database every ``checkpoint_interval`` seconds, from a connection of its own.
        SQLite's automatic checkpoint would run inside a committing transaction, and every send waiting on that
        commit would wait for the checkpoint's copying and fsync too. PASSIVE never waits for the writer or a
        reader; what it cannot copy yet, the next round does."""
        try:
            conn = self._connect(readonly=False)
        except sqlite3.Error:
            log.exception("checkpoint thread cannot open the database; SQLite's own checkpoints are off")
            return
        try:
            while not self._stop_checkpoints.wait(self.config.checkpoint_interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    log.warning("checkpoint failed; retrying next round", exc_info=True)
        finally:
            conn.close()

    def _writer_main(self, ready: asyncio.Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        try:
            conn = self._connect(readonly=False)
            migrate(conn)
            if self.config.checkpoint_interval > 0:  # the checkpoint thread does it, off the commit path
                conn.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException as exc:  # report to open(), then stop; a MigrationError keeps its type and message
            error = exc if isinstance(exc, PicaError) else StoreUnavailable(f"cannot open database: {exc}")
            loop.call_soon_threadsafe(_resolve, ready, None, error)
            return
        loop.call_soon_threadsafe(_resolve, ready, None, None)
        max_batch = self.config.max_batch
        delay = self.config.commit_delay_ms / 1000
        get = self._queue.get
        last_commit = 0.0
        stopping = False
        while not stopping:
            first = get()
            if first is None:
                break
            waiting: list[_WriteOp[Any]] = first
            # Under steady traffic (the last commit ended less than `delay` ago) wait up to `delay` for more
            # operations: one fsync then serves several loop turns' worth. After a pause, commit at once.
            now = time.monotonic()
            deadline = now + delay if now - last_commit < delay else now
            while len(waiting) < max_batch:
                try:
                    more = get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                waiting.extend(more)
            for start in range(0, len(waiting), max_batch):
                outcomes = self._run_batch(conn, waiting[start : start + max_batch])
                with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                    loop.call_soon_threadsafe(_resolve_batch, outcomes)
            last_commit = time.monotonic()
        conn.close()

    def _run_batch(
        self, conn: sqlite3.Connection, batch: list[_WriteOp[Any]]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        """Run a batch in one transaction. Operations raise domain errors (PicaError) only before their first
        write, so the fast path needs no savepoints; any other error in one operation rolls the batch back and
        replays it with a savepoint around each operation, so that only the faulty one fails. Never raises: the
        writer thread must outlive any operation."""
        try:
            return self._commit(conn, batch, isolate=False)
        except Exception:
            log.warning("batch of %d failed; replaying with one savepoint per operation", len(batch), exc_info=True)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        try:
            return self._commit(conn, batch, isolate=True)
        except Exception as exc:
            log.error("commit failed; failing %d operations", len(batch), exc_info=True)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            failure = StoreUnavailable(f"commit failed: {type(exc).__name__}")
            return [(op.future, None, failure) for op in batch]

    def _commit(
        self, conn: sqlite3.Connection, batch: list[_WriteOp[Any]], *, isolate: bool
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        """One transaction for the batch. Consecutive appends run as one batch transaction (one query per kind of
        fact, one executemany per table); other operations run one by one in between, in submission order. With
        ``isolate`` every operation (every append too) runs alone under a savepoint."""
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        conn.execute("BEGIN IMMEDIATE")
        start = 0
        while start < len(batch):
            end = start + 1
            if batch[start].append is not None and not isolate:
                while end < len(batch) and batch[end].append is not None:
                    end += 1
            ops = batch[start:end]
            start = end
            if isolate:
                conn.execute("SAVEPOINT op")
            try:
                if ops[0].append is not None:
                    requests = [op.append for op in ops if op.append is not None]
                    searches = [self._search_value(r.search_text) for r in requests]
                    results = sql_sqlite.run(conn, messages.append_batch(requests, searches))
                    outcomes.extend((op.future, None, r) if isinstance(r, PicaError) else (op.future, r, None)
                                    for op, r in zip(ops, results, strict=True))
                else:
                    fn = ops[0].fn
                    assert fn is not None
                    outcomes.append((ops[0].future, fn(conn), None))
            except PicaError as exc:
                outcomes.append((ops[0].future, None, exc))
            except Exception as exc:
                if not isolate:
                    raise
                conn.execute("ROLLBACK TO op")
                log.exception("write operation failed")
                outcomes.append((ops[0].future, None, InternalError(f"store error: {type(exc).__name__}")))
            if isolate:
                conn.execute("RELEASE op")
        conn.execute("COMMIT")
        return outcomes

    def _write(self, fn: Callable[[sqlite3.Connection], T] | None, append: Append | None = None) -> asyncio.Future[T]:
        if self._closed:
            raise StoreUnavailable("store is closed")
        loop = self._loop
        assert loop is not None, "store not opened"
        future: asyncio.Future[T] = loop.create_future()
        if not self._outgoing:
            loop.call_soon(self._handoff)
        self._outgoing.append(_WriteOp(fn, future, append))
        return future

    def _handoff(self) -> None:
        if self._outgoing:
            ops, self._outgoing = self._outgoing, []
            self._queue.put(ops)

    # ------------------------------------------------------------------------------------------------ readers

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(readonly=True)
            self._local.conn = conn
            with self._reader_lock:
                self._reader_connections.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed or self._readers is None:
            raise StoreUnavailable("store is closed")

        def run() -> T:
            conn = self._reader()
            conn.execute("BEGIN")  # one snapshot for the whole read
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, run)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"read failed: {type(exc).__name__}") from exc

    @staticmethod
    def _search_value(text: str) -> str | None:
        return text or None  # FTS5 indexes the text itself

    _search_terms = staticmethod(fts.fts5_query)

    async def _read_txn(self, make: Callable[[], Txn[T]], *, snapshot: bool = False) -> T:
        return await self._read(lambda conn: sql_sqlite.run(conn, make()))

    async def _write_txn(self, make: Callable[[], Txn[T]]) -> T:
        return await self._write(lambda conn: sql_sqlite.run(conn, make()))

    # ------------------------------------------------------------------------------------------------ messages

    def append_direct(self, request: DirectAppend) -> asyncio.Future[AppendResult]:
        return self._write(None, request)

    def append_group(self, request: GroupAppend) -> asyncio.Future[AppendResult]:
        return self._write(None, request)

    def append_event(self, request: EventAppend) -> asyncio.Future[tuple[AppendResult, MessageRecord]]:
        return self._write(lambda conn: sql_sqlite.run(conn, messages.append_event(request, self._search_value)))

