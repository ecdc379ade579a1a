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
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

from pica.config import SqliteConfig
from pica.errors import InternalError, PicaError, StoreUnavailable, UsernameTaken
from pica.store import sqlite_admin as admin
from pica.store import sqlite_groups as groups
from pica.store import sqlite_messages as messages
from pica.store import sqlite_social as social
from pica.store.base import (
    AppendResult,
    ContactRecord,
    ConversationSummary,
    DirectAppend,
    EventAppend,
    GroupAction,
    GroupAppend,
    GroupChange,
    GroupRecord,
    MemberRecord,
    MessageRecord,
    Page,
    PresenceRecord,
    Store,
    UserRecord,
)
from pica.store.schema import SQLITE, Applied, Migrations, Progress, bundled, legacy_sqlite_rows, plan

log = logging.getLogger(__name__)

T = TypeVar("T")
_BUSY_TIMEOUT_MS: Final = 10_000


@dataclass(slots=True)
class _WriteOp(Generic[T]):
    fn: Callable[[sqlite3.Connection], T]
    future: asyncio.Future[T]
    appends: bool = False
    """A message append: its secondary rows may be deferred to the end of the batch (messages.Deferred)."""


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
        elapsed = time.perf_counter() - started
        if report is not None:
            report(step, elapsed)
        else:
            log.info("applied sqlite migration", extra={"version": step.version, "migration": step.filename,
                                                         "seconds": round(elapsed, 3)})


class SqliteStore(Store):
    def __init__(self, path: Path, config: SqliteConfig | None = None) -> None:
        self.path = path
        self.config = config or SqliteConfig()
        self._queue: queue.SimpleQueue[list[_WriteOp[Any]] | None] = queue.SimpleQueue()
        # Operations submitted during one turn of the event loop, handed to the writer together: one wake-up of
        # the writer thread (and one GIL hand-over) per turn instead of one per message.
        self._outgoing: list[_WriteOp[Any]] = []
        self._deferred = messages.Deferred()  # used by the writer thread only
        self._writer: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_connections: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

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

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._handoff()
        self._queue.put(None)
        if self._writer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        with self._reader_lock:
            for conn in self._reader_connections:
                conn.close()
            self._reader_connections.clear()

    # ------------------------------------------------------------------------------------------------ writer

    def _writer_main(self, ready: asyncio.Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        try:
            conn = self._connect(readonly=False)
            migrate(conn)
        except BaseException as exc:  # report to open(), then stop
            loop.call_soon_threadsafe(_resolve, ready, None, StoreUnavailable(f"cannot open database: {exc}"))
            return
        loop.call_soon_threadsafe(_resolve, ready, None, None)
        max_batch = self.config.max_batch
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        stopping = False
        while not stopping:
            first = get()
            if first is None:
                break
            waiting: list[_WriteOp[Any]] = first
            while len(waiting) < max_batch:
                try:
                    more = get_nowait()
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
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        deferred = self._deferred
        deferred.clear()
        deferred.enabled = not isolate
        conn.execute("BEGIN IMMEDIATE")
        for op in batch:
            if not op.appends:
                deferred.flush(conn)
            if isolate:
                conn.execute("SAVEPOINT op")
            try:
                result = op.fn(conn)
            except PicaError as exc:
                outcomes.append((op.future, None, exc))
            except Exception as exc:
                if not isolate:
                    raise
                conn.execute("ROLLBACK TO op")
                log.exception("write operation failed")
                outcomes.append((op.future, None, InternalError(f"store error: {type(exc).__name__}")))
            else:
                outcomes.append((op.future, result, None))
            if isolate:
                conn.execute("RELEASE op")
        deferred.flush(conn)
        conn.execute("COMMIT")
        return outcomes

    def _write(self, fn: Callable[[sqlite3.Connection], T], *, appends: bool = False) -> asyncio.Future[T]:
        if self._closed:
            raise StoreUnavailable("store is closed")
        loop = self._loop
        assert loop is not None, "store not opened"
        future: asyncio.Future[T] = loop.create_future()
        if not self._outgoing:
            loop.call_soon(self._handoff)
        self._outgoing.append(_WriteOp(fn, future, appends))
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

    # ------------------------------------------------------------------------------------------------ accounts

    async def create_user(self, username: str, password_hash: str, now_ms: int) -> int:
        def op(conn: sqlite3.Connection) -> int:
            try:
                cur = conn.execute(
                    "INSERT INTO users (username, password_hash, created_at) VALUES (?, ?, ?)",
                    (username, password_hash, now_ms),
                )
            except sqlite3.IntegrityError:
                raise UsernameTaken(f"username {username!r} is taken") from None
            assert cur.lastrowid is not None
            return cur.lastrowid

        return await self._write(op)

    async def get_user_by_name(self, username: str) -> UserRecord | None:
        return await self._read(lambda conn: _user(conn, "username = ?", username))

    async def get_user(self, user_id: int) -> UserRecord | None:
        return await self._read(lambda conn: _user(conn, "user_id = ?", user_id))

    # ------------------------------------------------------------------------------------------------ administration

    async def list_users(self, limit: int, after_id: int = 0, *, banned_only: bool = False) -> list[UserRecord]:
        return await self._read(lambda conn: admin.list_users(conn, limit, after_id, banned_only))

    async def set_banned(self, user_id: int, banned: bool) -> None:
        await self._write(lambda conn: admin.set_banned(conn, user_id, banned))

    async def list_all_groups(self, limit: int, after_id: int = 0) -> list[GroupRecord]:
        return await self._read(lambda conn: admin.list_all_groups(conn, limit, after_id))

    # ------------------------------------------------------------------------------------------------ messages

    def append_direct(self, request: DirectAppend) -> asyncio.Future[AppendResult]:
        deferred = self._deferred
        return self._write(lambda conn: messages.append_direct(conn, request, deferred),
                           appends=True)

    def append_group(self, request: GroupAppend) -> asyncio.Future[AppendResult]:
        deferred = self._deferred
        return self._write(lambda conn: messages.append_group(conn, request, deferred),
                           appends=True)

    def append_event(self, request: EventAppend) -> asyncio.Future[tuple[AppendResult, MessageRecord]]:
        return self._write(lambda conn: messages.append_event(conn, request))

    async def history(
        self, user_id: int, conversation_id: str, *, after: int | None, before: int | None, limit: int
    ) -> Page:
        return await self._read(lambda conn: messages.history(conn, user_id, conversation_id, after, before, limit))

    async def sync(self, user_id: int, cursors: Mapping[str, int], limit: int) -> Page:
        return await self._read(lambda conn: messages.sync(conn, user_id, cursors, limit))

    async def mark_delivered(self, user_id: int, conversation_id: str, seq: int) -> int | None:
        return await self._write(lambda conn: messages.mark_delivered(conn, user_id, conversation_id, seq))

    async def mark_read(self, user_id: int, conversation_id: str, seq: int) -> int | None:
        return await self._write(lambda conn: messages.mark_read(conn, user_id, conversation_id, seq))

    async def hide_message(self, user_id: int, conversation_id: str, seq: int, ts: int) -> MessageRecord:
        return await self._write(lambda conn: messages.hide_message(conn, user_id, conversation_id, seq, ts))

    async def conversation_members(self, conversation_id: str) -> list[int]:
        return await self._read(
            lambda conn: [
                r[0]
                for r in conn.execute(
                    "SELECT user_id FROM members WHERE conversation_id = ? ORDER BY user_id", (conversation_id,)
                )
            ]
        )

    async def group_fanout(self, conversation_id: str) -> tuple[int, dict[int, int]]:
        return await self._read(lambda conn: groups.members_with_version(conn, conversation_id))

    async def member_cursors(self, user_id: int, conversation_id: str) -> list[MemberRecord]:
        return await self._read(lambda conn: messages.member_cursors(conn, user_id, conversation_id))

    async def list_conversations(
        self, user_id: int, *, limit: int, before_ts: int | None, before_id: str = ""
    ) -> list[ConversationSummary]:
        return await self._read(
            lambda conn: messages.list_conversations(conn, user_id, limit, before_ts, before_id)
        )

    async def search(
        self, user_id: int, query: str, *, conversation_id: str | None, limit: int
    ) -> list[MessageRecord]:
        return await self._read(lambda conn: messages.search(conn, user_id, query, conversation_id, limit))

    # ------------------------------------------------------------------------------------------------ groups

    async def create_group(
        self, owner: int, name: str, members: list[int], ts: int, max_members: int
    ) -> GroupChange:
        return await self._write(lambda conn: groups.create_group(conn, owner, name, members, ts, max_members))

    async def group_action(self, action: GroupAction) -> GroupChange:
        return await self._write(lambda conn: groups.group_action(conn, action))

    async def get_group(self, user_id: int, group_id: int) -> GroupRecord:
        return await self._read(lambda conn: groups.get_group(conn, user_id, group_id))

    async def list_groups(self, user_id: int) -> list[GroupRecord]:
        return await self._read(lambda conn: groups.list_groups(conn, user_id))

    async def group_members(self, user_id: int, group_id: int) -> list[MemberRecord]:
        return await self._read(lambda conn: groups.group_members(conn, user_id, group_id))

    # ------------------------------------------------------------------------------------------------ social

    async def contact_request(self, user_id: int, peer_id: int, ts: int) -> str:
        return await self._write(lambda conn: social.contact_request(conn, user_id, peer_id, ts))

    async def contact_respond(self, user_id: int, peer_id: int, accept: bool, ts: int) -> str:
        return await self._write(lambda conn: social.contact_respond(conn, user_id, peer_id, accept, ts))

    async def contact_remove(self, user_id: int, peer_id: int) -> None:
        await self._write(lambda conn: social.contact_remove(conn, user_id, peer_id))

    async def list_contacts(self, user_id: int) -> list[ContactRecord]:
        return await self._read(lambda conn: social.list_contacts(conn, user_id))

    async def set_blocked(self, user_id: int, peer_id: int, blocked: bool, ts: int) -> None:
        await self._write(lambda conn: social.set_blocked(conn, user_id, peer_id, blocked, ts))

    async def list_blocked(self, user_id: int) -> list[int]:
        return await self._read(lambda conn: social.list_blocked(conn, user_id))

    async def set_only_contacts(self, user_id: int, only_contacts: bool) -> None:
        await self._write(lambda conn: social.set_only_contacts(conn, user_id, only_contacts))

    async def get_only_contacts(self, user_id: int) -> bool:
        return await self._read(lambda conn: social.get_only_contacts(conn, user_id))

    async def presence_audience(self, user_id: int) -> list[int]:
        return await self._read(lambda conn: social.presence_audience(conn, user_id))

    async def presence_of(self, viewer: int, user_ids: list[int]) -> list[PresenceRecord]:
        return await self._read(lambda conn: social.presence_of(conn, viewer, user_ids))

    async def set_last_seen(self, user_id: int, ts: int) -> None:
        await self._write(lambda conn: social.set_last_seen(conn, user_id, ts))


def _user(conn: sqlite3.Connection, where: str, value: object) -> UserRecord | None:
    row = conn.execute(f"SELECT {admin.USER_COLUMNS} FROM users WHERE {where}", (value,)).fetchone()
    return None if row is None else admin.user_row(row)
