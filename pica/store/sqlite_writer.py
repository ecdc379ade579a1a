"""The SQLite writer: the one connection that writes, and its group commit.

It takes every operation waiting (up to ``max_batch``), runs them in one transaction, commits once, and only then
hands back their outcomes: group commit, one fsync for many messages, and an ack never precedes durability. An
operation refused for a domain reason (an unknown recipient) raises before writing anything, so it needs no
savepoint; an unexpected error replays the batch with a savepoint per operation so that only the faulty one fails.
The same loop runs on a thread of the server (:class:`WriterThread`) or in a process of its own
(:mod:`pica.store.sqlite_process`); a checkpoint thread beside it copies the WAL into the database file.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pica.config import SqliteConfig
from pica.errors import InternalError, PicaError, StoreUnavailable
from pica.store import jobs, search, sql_sqlite
from pica.store.append_rules import Append
from pica.store.base import CommitObserver, JobRules
from pica.store.schema import SQLITE, Applied, Migrations, Progress, announce, bundled, legacy_sqlite_rows, plan
from pica.store.txn import Txn

log = logging.getLogger(__name__)

_BUSY_TIMEOUT_MS: Final = 10_000


Outcome = tuple[Any, Any, BaseException | None]
"""A write operation's token (its caller's future, or its number across the writer process's socket), its result
and its error."""

Timing = tuple[int, float, float]
"""A committed batch's operations, seconds from BEGIN to the end of COMMIT, and seconds of the COMMIT alone (the
fsync): what :data:`pica.store.base.CommitObserver` is told. Three numbers, so that crossing the writer process's
socket costs a few bytes per batch, nothing per message."""

Emit = Callable[[list[Outcome], Timing | None], None]
"""Where the writer hands a batch's outcomes after its commit, with its timing (None: the batch failed)."""


@dataclass(slots=True)
class WriteOp:
    token: Any
    """What the outcome is delivered to: the caller's future in this process, a number in the writer process."""
    make: Callable[[], Txn[Any]] | None
    """Builds the transaction (a module-level function or a partial of one: the writer process receives it pickled).
    None for a client's message."""
    append: Append | None = None
    """A client's message: consecutive ones run as one batch transaction (messages.append_batch)."""


def resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; the write stands regardless
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _resolve_batch(outcomes: list[Outcome]) -> None:
    for future, result, error in outcomes:
        resolve(future, result, error)


def report(observer: CommitObserver | None, timing: Timing | None) -> None:
    if observer is not None and timing is not None:
        try:
            observer(*timing)
        except Exception:  # metrics must never fail a write
            log.exception("commit observer failed")


def search_value(text: str) -> str | None:
    """What SQLite indexes for a message's searchable text: FTS5 indexes the text itself."""
    return text or None


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


def _wal_mode(conn: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode = WAL``, retried while the file is busy. Switching a fresh file to WAL needs its
    exclusive lock, and SQLite answers SQLITE_BUSY at once, without its busy handler, when another connection holds
    a lock meanwhile: two processes opening a new file together (``pica serve --workers N``, each worker with a
    writer of its own) failed half the time with "database is locked"."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    pause = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(2 * pause, 0.05)


def connect(path: Path, config: SqliteConfig, *, readonly: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    _wal_mode(conn)
    conn.execute(f"PRAGMA synchronous = {config.synchronous}")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    return conn


def open_writer(path: Path, config: SqliteConfig) -> sqlite3.Connection:
    """The only write connection, on a migrated database. Raises a PicaError (a MigrationError keeps its type and
    message) when the database cannot be opened."""
    try:
        conn = connect(path, config, readonly=False)
        migrate(conn)
        if config.checkpoint_interval > 0:  # the checkpoint thread does it, off the commit path
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        if config.wal_max_mb > 0:  # a WAL file grown by a burst shrinks back (with room) when the WAL starts over
            conn.execute(f"PRAGMA journal_size_limit = {2 * int(config.wal_max_mb) * 1024 * 1024}")
    except PicaError:
        raise
    except Exception as exc:
        raise StoreUnavailable(f"cannot open database: {exc}") from exc
    return conn


class Checkpoints:
    """The WAL's way back into the database file, shared by a thread of its own and the writer.

    The thread copies the WAL into the database every ``checkpoint_interval`` seconds from a connection of its own:
    SQLite's automatic checkpoint would run inside a committing transaction, and every send waiting on that commit
    would wait for the copying and its fsync too. PASSIVE never waits for the writer or a reader; what it cannot copy
    yet, the next round does.

    That alone never lets SQLite start the WAL over under steady writes: SQLite rewinds the WAL only when a write
    begins after *every* frame was copied, and the writer commits new frames while the thread copies, so the WAL
    grew by every commit for as long as the traffic lasted (937 MiB after 25 s of a load test, 20 MiB a second at
    5,000 msg/s; BENCHMARKS.md). So once the thread sees the WAL past ``wal_max_mb``, the writer, between two
    batches, copies the few frames committed since the thread's round itself (:meth:`complete`): with no commit
    running beside it, that copy is complete, and the next transaction starts the WAL over from its beginning.
    The writer pays one short checkpoint per ``wal_max_mb`` of WAL, instead of the disk filling up."""

    def __init__(self, path: Path, config: SqliteConfig) -> None:
        self._path = path
        self._config = config
        self._stop = threading.Event()
        self._complete = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (unless ``checkpoint_interval`` is 0: SQLite's own checkpoints then)."""
        if self._config.checkpoint_interval <= 0:
            return
        self._thread = threading.Thread(target=self._loop, name="pica-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def complete(self, conn: sqlite3.Connection) -> None:
        """Run by the writer between batches: when the thread asked for it, copy what is left of the WAL, so that
        the next transaction starts the WAL over."""
        if not self._complete.is_set():
            return
        self._complete.clear()
        started = time.perf_counter()
        frames = _passive(conn)
        log.debug("writer completed a checkpoint of a %s-frame WAL in %.1f ms", frames,
                  (time.perf_counter() - started) * 1000)

    def _loop(self) -> None:
        config = self._config
        try:
            conn = connect(self._path, config, readonly=False)
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        except sqlite3.Error:
            log.exception("checkpoint thread cannot open the database; SQLite's own checkpoints are off")
            return
        limit = config.wal_max_mb * 1024 * 1024 // page_size
        try:
            while not self._stop.wait(config.checkpoint_interval):
                frames = _passive(conn)
                if limit and frames is not None and frames > limit:
                    self._catch_up(conn, frames)
        finally:
            conn.close()

    def _catch_up(self, conn: sqlite3.Connection, frames: int) -> None:
        """Rounds back to back, each copying what was committed during the one before, until a round finds little
        new; then the writer copies the rest. Its share is then a few frames, not a round's worth (a round of a
        second of heavy traffic copies tens of MiB, and the writer copying what was committed meanwhile held every
        send for 30-40 ms)."""
        for _ in range(_CATCH_UP_ROUNDS):
            now = _passive(conn)
            if now is None:
                return
            grown, frames = now - frames, now
            if grown <= _WRITER_SHARE_FRAMES:
                break
        self._complete.set()


_CATCH_UP_ROUNDS: Final = 8
_WRITER_SHARE_FRAMES: Final = 64
"""Frames (256 KiB at SQLite's default page size) committed during a checkpoint round little enough for the writer
to copy between two batches."""


def _passive(conn: sqlite3.Connection) -> int | None:
    """One PASSIVE checkpoint: the frames in the WAL (None when it failed)."""
    try:
        return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
    except sqlite3.Error:
        log.warning("checkpoint failed; retrying next round", exc_info=True)
        return None


Take = Callable[[float | None], list[WriteOp] | None]
"""The writer's source of operations: waits up to the given seconds (None: for ever) for what was submitted, and
returns it ([] when nothing came in time), or None once the store is closing and everything was taken."""

Rules = Callable[[], JobRules | None]
"""The job rules in force (set by the server through the same channel as the operations, so in order with them)."""


def _no_rules() -> JobRules | None:
    return None


def write_loop(
    conn: sqlite3.Connection, config: SqliteConfig, take: Take, emit: Emit, rules: Rules = _no_rules,
    checkpoints: Checkpoints | None = None,
) -> None:
    """The writer: take what was submitted, commit it in batches of at most ``max_batch``, emit each batch's
    outcomes after its commit (then, when asked, complete a checkpoint: :class:`Checkpoints`). Returns once
    ``take`` says the store is closing."""
    max_batch = config.max_batch
    delay = config.commit_delay_ms / 1000
    index_delay = config.search_delay_ms / 1000
    index_due: float | None = time.monotonic()  # a backlog a crash left behind is indexed at the first chance
    last_commit = 0.0
    stopping = False
    while not stopping:
        first = take(None if index_due is None else max(0.0, index_due - time.monotonic()))
        if first is None:
            break
        waiting = first
        # Under steady traffic (the last commit ended less than `delay` ago) wait up to `delay` for more
        # operations: one fsync then serves several loop turns' worth. After a pause, commit at once.
        now = time.monotonic()
        deadline = now + delay if now - last_commit < delay else now
        while waiting and len(waiting) < max_batch:
            more = take(max(0.0, deadline - time.monotonic()))
            if more is None:
                stopping = True
                break
            if not more:
                break
            waiting.extend(more)
        for start in range(0, len(waiting), max_batch):
            emit(*run_batch(conn, waiting[start : start + max_batch], rules()))
        if waiting:
            last_commit = time.monotonic()
            if index_due is None and any(op.append is not None for op in waiting):
                index_due = last_commit + index_delay
        if index_due is not None and not stopping and time.monotonic() >= index_due:
            # A part at a time, one per turn between batches: what is left waits for the next turn, not for
            # another delay.
            waits = index_backlog(conn, config.search_batch, config.search_merge_pages)
            index_due = time.monotonic() if waits else None
        if checkpoints is not None:
            checkpoints.complete(conn)
    if index_due is not None:
        index_backlog(conn)


def index_backlog(conn: sqlite3.Connection, limit: int | None = None, merge_pages: int = 0) -> bool:
    """Index the search backlog (at most ``limit`` documents, then ``merge_pages`` of merging; None: all of it) in a
    transaction of its own, after the acks of the messages in it (search.py, flush_backlog_part). Returns whether
    more may wait. Never raises: a
    failed round leaves the backlog for the next one (and says nothing waits, so that a failing index is not
    retried in a tight loop)."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        more = False
        if limit is None:
            sql_sqlite.run(conn, search.flush_backlog())
        else:
            more = sql_sqlite.run(conn, search.flush_backlog_part(limit, merge_pages))
        conn.execute("COMMIT")
        return more
    except Exception:
        log.exception("indexing the search backlog failed; the next round retries")
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        return False


def run_batch(conn: sqlite3.Connection, batch: list[WriteOp],
              rules: JobRules | None = None) -> tuple[list[Outcome], Timing | None]:
    """Run a batch in one transaction. Operations raise domain errors (PicaError) only before their first write, so
    the fast path needs no savepoints; any other error in one operation rolls the batch back and replays it with a
    savepoint around each operation, so that only the faulty one fails. Never raises: the writer must outlive any
    operation."""
    try:
        return _commit(conn, batch, rules, isolate=False)
    except Exception:
        log.warning("batch of %d failed; replaying with one savepoint per operation", len(batch), exc_info=True)
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
    try:
        return _commit(conn, batch, rules, isolate=True)
    except Exception as exc:
        log.error("commit failed; failing %d operations", len(batch), exc_info=True)
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        failure = StoreUnavailable(f"commit failed: {type(exc).__name__}")
        return [(op.token, None, failure) for op in batch], None


def _commit(conn: sqlite3.Connection, batch: list[WriteOp], rules: JobRules | None, *,
            isolate: bool) -> tuple[list[Outcome], Timing]:
    """One transaction for the batch. Consecutive appends run as one batch transaction (one query per kind of fact,
    one executemany per table); other operations run one by one in between, in submission order. With ``isolate``
    every operation (every append too) runs alone under a savepoint."""
    outcomes: list[Outcome] = []
    began = time.perf_counter()
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
                searches = [search_value(r.search_text) for r in requests]
                results = sql_sqlite.run(conn, jobs.appends(requests, searches, rules))
                outcomes.extend((op.token, None, r) if isinstance(r, PicaError) else (op.token, r, None)
                                for op, r in zip(ops, results, strict=True))
            else:
                make = ops[0].make
                assert make is not None
                outcomes.append((ops[0].token, sql_sqlite.run(conn, make()), None))
        except PicaError as exc:
            outcomes.append((ops[0].token, None, exc))
        except Exception as exc:
            if not isolate:
                raise
            conn.execute("ROLLBACK TO op")
            log.exception("write operation failed")
            outcomes.append((ops[0].token, None, InternalError(f"store error: {type(exc).__name__}")))
        if isolate:
            conn.execute("RELEASE op")
    committing = time.perf_counter()
    conn.execute("COMMIT")
    done = time.perf_counter()
    return outcomes, (len(batch), done - began, done - committing)


class WriterThread:
    """The writer on a thread of this process, which owns the only write connection (``sqlite.writer = "thread"``)."""

    def __init__(self, path: Path, config: SqliteConfig) -> None:
        self._path = path
        self._config = config
        self._queue: queue.SimpleQueue[list[WriteOp] | JobRules | None] = queue.SimpleQueue()
        self._rules: JobRules | None = None
        """Read by the writer thread only, set from the queue: in order with the operations."""
        self._thread: threading.Thread | None = None
        self._checkpoints = Checkpoints(path, config)
        self.observer: CommitObserver | None = None
        self.backlog = 0
        """Operations submitted and not yet answered (read and written on the event loop only)."""

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(target=self._main, args=(loop, ready), name="pica-sqlite-writer", daemon=True)
        self._thread.start()
        await ready
        self._checkpoints.start()

    def submit(self, ops: list[WriteOp]) -> None:
        self.backlog += len(ops)
        self._queue.put(ops)

    def _answer(self, outcomes: list[Outcome], timing: Timing | None) -> None:
        self.backlog -= len(outcomes)
        report(self.observer, timing)
        _resolve_batch(outcomes)

    def set_rules(self, rules: JobRules | None) -> None:
        self._queue.put(rules if rules is not None else JobRules())

    async def close(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        await asyncio.get_running_loop().run_in_executor(None, self._checkpoints.stop)

    def _take(self, timeout: float | None) -> list[WriteOp] | None:
        while True:
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                return []
            if not isinstance(item, JobRules):
                return item
            self._rules = None if item.empty else item

    def _current_rules(self) -> JobRules | None:
        return self._rules

    def _main(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            conn = open_writer(self._path, self._config)
        except PicaError as exc:  # report to start(), then stop
            loop.call_soon_threadsafe(resolve, ready, None, exc)
            return
        loop.call_soon_threadsafe(resolve, ready, None, None)

        def emit(outcomes: list[Outcome], timing: Timing | None) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                loop.call_soon_threadsafe(self._answer, outcomes, timing)

        try:
            write_loop(conn, self._config, self._take, emit, self._current_rules, self._checkpoints)
        finally:
            conn.close()
