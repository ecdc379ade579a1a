"""SQLite store: the embedded default.

Writes go to the writer (:mod:`pica.store.sqlite_writer`), which owns the only write connection and commits in
batches; by default it runs in a process of its own (:mod:`pica.store.sqlite_process`), so that it and the event loop
each have a core. Operations submitted during one turn of the event loop are handed to it together. Reads run on a
small thread pool, each thread with its own connection; WAL lets them proceed while the writer commits. Two reads of
every connect run on the event loop instead, within a bound of rows: the session states a socket authentication
checks (:meth:`SqliteStore.session_states`) and the presence audiences of users' first devices
(:meth:`SqliteStore.presence_audiences`).
"""

from __future__ import annotations

import asyncio
import fcntl
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import IO, TypeVar

from pica.config import SqliteConfig
from pica.errors import StoreUnavailable
from pica.store import job_rules, jobs, messages, reactions, sessions, social, sql_sqlite
from pica.store import search as fts
from pica.store.append_rules import Append
from pica.store.base import (
    AppendResult,
    CommitObserver,
    DirectAppend,
    EventAppend,
    GroupAppend,
    JobRules,
    LinkedAppend,
    MessageRecord,
    PresenceAudience,
    ReactionAppend,
    SessionState,
)
from pica.store.job_rules import Event
from pica.store.sql_store import SqlStore
from pica.store.sqlite_process import WriterProcess
from pica.store.sqlite_writer import WriteOp, WriterThread, connect, search_value
from pica.store.txn import Txn

T = TypeVar("T")


def _rebuild_lock(path: Path) -> IO[str]:
    """Hold ``<database>.reindex.lock`` (flock: the kernel drops it when the process dies) until the returned file is
    closed. Stores opening one file together (``pica serve --workers N``) check and rebuild a stale search index one
    at a time: SQLite's rebuild inserts FTS5 rows, so two at once would each clear the other's progress and leave
    every message indexed twice; the next to get the lock finds the index current and does nothing."""
    handle = open(f"{path}.reindex.lock", "a")  # noqa: SIM115 - closed by the caller's with
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    except BaseException:
        handle.close()
        raise
    return handle


class SqliteStore(SqlStore):
    def __init__(self, path: Path, config: SqliteConfig | None = None) -> None:
        self.path = path
        self.config = config or SqliteConfig()
        # Operations submitted during one turn of the event loop, handed to the writer together: one wake-up of
        # the writer (and one GIL hand-over, or one socket write) per turn instead of one per message.
        self._outgoing: list[WriteOp] = []
        self._writer: WriterThread | WriterProcess | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._loop_reader: sqlite3.Connection | None = None
        self._audience_rows_per_user = 0.0
        """Rows the last presence audience read took per user (its viewers and setting): the estimate by which
        :meth:`presence_audiences` chooses the event loop or a reader thread."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._observer: CommitObserver | None = None

    # ------------------------------------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.config.writer == "process":
            self._writer = WriterProcess(self.path, self.config)
        else:
            self._writer = WriterThread(self.path, self.config)
        self._writer.observer = self._observer
        await self._writer.start()
        if self._job_rules is not None:
            self._writer.set_rules(self._job_rules)
        self._readers = ThreadPoolExecutor(max_workers=self.config.read_threads, thread_name_prefix="pica-sqlite-read")
        self._loop_reader = connect(self.path, self.config, readonly=True)
        self._loop_reader.execute("PRAGMA busy_timeout = 0")  # never sleeps on a lock: busy goes to a reader thread
        with await asyncio.to_thread(_rebuild_lock, self.path):
            await self.reindex_search(only_if_stale=True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._handoff()
        if self._writer is not None:
            await self._writer.close()
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        with self._reader_lock:
            for conn in self._reader_connections:
                conn.close()
            self._reader_connections.clear()
        if self._loop_reader is not None:
            self._loop_reader.close()
            self._loop_reader = None

    # ------------------------------------------------------------------------------------------------ writer

    def _write(self, make: Callable[[], Txn[T]] | None, append: Append | None = None) -> asyncio.Future[T]:
        if self._closed:
            raise StoreUnavailable("store is closed")
        loop = self._loop
        assert loop is not None, "store not opened"
        future: asyncio.Future[T] = loop.create_future()
        if not self._outgoing:
            loop.call_soon(self._handoff)
        self._outgoing.append(WriteOp(future, make, append))
        return future

    def observe_commits(self, observer: CommitObserver | None) -> None:
        self._observer = observer
        if self._writer is not None:
            self._writer.observer = observer

    def write_backlog(self) -> int:
        return len(self._outgoing) + (self._writer.backlog if self._writer is not None else 0)

    def _handoff(self) -> None:
        if self._outgoing and self._writer is not None:
            ops, self._outgoing = self._outgoing, []
            self._writer.submit(ops)

    # ------------------------------------------------------------------------------------------------ readers

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, self.config, readonly=True)
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

    async def session_states(self, session_ids: Sequence[str]) -> dict[str, SessionState]:
        """Read on the event loop (:meth:`_loop_read`): every socket authentication makes it. It stays a read of the
        store, so revocation is seen at once: a few rows by primary key, pages the sessions table keeps hot."""
        return await self._loop_read(partial(sessions.session_states, session_ids))

    async def presence_audiences(self, user_ids: Sequence[int]) -> dict[int, PresenceAudience]:
        """Read on the event loop (:meth:`_loop_read`) when the batch's audiences look small enough: each user's
        first device makes it. Users' audiences differ in size by orders of magnitude (six peers, or thousands of
        contacts), so a batch goes to a reader thread at once when the last batch's rows per user, times its users,
        would not fit in ``sqlite.loop_read_rows``; one that turns out larger than its estimate is cut at the bound
        and read again there."""
        wanted = list(dict.fromkeys(user_ids))
        make = partial(social.presence_audiences, wanted)
        if len(wanted) * self._audience_rows_per_user > self.config.loop_read_rows:
            found = await self._read_txn(make)
        else:
            found = await self._loop_read(make)
        rows = len(wanted) + sum(len(audience.viewers) for audience in found.values())
        self._audience_rows_per_user = rows / max(len(wanted), 1)
        return found

    async def _loop_read(self, make: Callable[[], Txn[T]]) -> T:
        """A read on the event loop, not on a reader thread: the hop to a thread and back (a queue put, two thread
        wake-ups, a GIL hand-over each way) cost 75-90 µs of CPU against 19 µs for a read of a few rows
        (BENCHMARKS.md, connect cost). In WAL mode a reader never waits for the writer; the connection's busy
        timeout is 0, and a read that finds the database busy anyway (WAL recovery after a crash) is handed to a
        reader thread, as is one that reaches ``sqlite.loop_read_rows`` rows (which bounds how long it holds the
        loop: about 1.5 µs a row)."""
        conn = self._loop_reader
        if conn is None or self._closed:
            raise StoreUnavailable("store is closed")
        if self.config.loop_read_rows == 0:
            return await self._read_txn(make)
        try:
            conn.execute("BEGIN")  # one snapshot for the whole read
            try:
                return sql_sqlite.run_bounded(conn, make(), self.config.loop_read_rows)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        except (sqlite3.OperationalError, sql_sqlite.TooManyRows):
            return await self._read_txn(make)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"read failed: {type(exc).__name__}") from exc

    _search_value = staticmethod(search_value)

    _search_terms = staticmethod(fts.fts5_query)

    async def _read_txn(self, make: Callable[[], Txn[T]], *, snapshot: bool = False) -> T:
        return await self._read(lambda conn: sql_sqlite.run(conn, make()))

    async def search(self, user_id: int, query: str, *, conversation_id: str | None, limit: int,
                     sender: int | None = None, since: int | None = None, until: int | None = None,
                     kind: str | None = None) -> list[MessageRecord]:
        # Every message acked before the search is found: what still waits in the search backlog is indexed first
        # (one short transaction through the writer; nothing to write when the writer flushed it already).
        await self._write_txn(fts.flush_backlog)
        return await super().search(user_id, query, conversation_id=conversation_id, limit=limit, sender=sender,
                                    since=since, until=until, kind=kind)

    async def _write_txn(self, make: Callable[[], Txn[T]]) -> T:
        return await self._write(make)

    # ------------------------------------------------------------------------------------------------ messages

    def set_job_rules(self, rules: JobRules | None, on_jobs: Callable[[], None] | None = None) -> None:
        super().set_job_rules(rules, on_jobs)
        # Not before open(): then open() hands them to the writer it starts.
        if self._writer is not None:
            self._writer.set_rules(self._job_rules)

    def append_direct(self, request: DirectAppend) -> asyncio.Future[AppendResult]:
        future: asyncio.Future[AppendResult] = self._write(None, request)
        if job_rules.wakes(self._job_rules, request):
            future.add_done_callback(self._jobs_written)
        return future

    def append_group(self, request: GroupAppend) -> asyncio.Future[AppendResult]:
        future: asyncio.Future[AppendResult] = self._write(None, request)
        if job_rules.wakes(self._job_rules, request):
            future.add_done_callback(self._jobs_written)
        return future

    def append_event(self, request: EventAppend) -> asyncio.Future[tuple[AppendResult, MessageRecord]]:
        rules = self._job_rules
        future = self._write(jobs.with_jobs(partial(messages.append_event, request, search_value), rules,
                                            jobs.event_events, request.ts))
        if rules is not None and rules.events:  # previews alone make no job of an event
            future.add_done_callback(self._jobs_written)
        return future

    def append_linked(self, request: LinkedAppend) -> asyncio.Future[tuple[AppendResult, MessageRecord]]:
        return self._write_change(partial(reactions.append_linked, request, search_value),
                                  partial(reactions.linked_events, request.message), request.message.ts)

    def append_reaction(self, request: ReactionAppend) -> asyncio.Future[tuple[AppendResult, MessageRecord]]:
        return self._write_change(partial(reactions.append_reaction, request), jobs.event_events, request.ts)

    def _write_change(self, make: Callable[[], Txn[T]], events: Callable[[T], list[Event]],
                      ts: int) -> asyncio.Future[T]:
        """A write in the writer's order with the appends, followed by its jobs."""
        rules = self._job_rules
        future: asyncio.Future[T] = self._write(jobs.with_jobs(make, rules, events, ts))
        if rules is not None:
            future.add_done_callback(self._jobs_written)
        return future

