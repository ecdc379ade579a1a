"""SQLite store: the embedded default.

Writes go to one writer thread that owns the only write connection. It takes every operation waiting in its queue
(up to ``max_batch``), runs them in one transaction, each inside a savepoint so that one failing operation (an
unknown recipient) does not undo the others, commits once, and only then resolves the callers' futures: group commit,
one fsync for many messages, and an ack never precedes durability. Reads run on a small thread pool, each thread
with its own connection; WAL lets them proceed while the writer commits. Nothing here runs SQL on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import msgspec

from pica.config import SqliteConfig
from pica.errors import (
    ConversationNotFound,
    InternalError,
    PicaError,
    StoreUnavailable,
    UsernameTaken,
    UserNotFound,
)
from pica.store.base import (
    AppendResult,
    ConversationSummary,
    DirectAppend,
    MessageRecord,
    Page,
    Store,
    UserRecord,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
_json_decode_body: Final = msgspec.json.Decoder(dict[str, Any]).decode
_BUSY_TIMEOUT_MS: Final = 10_000


@dataclass(slots=True)
class _WriteOp(Generic[T]):
    fn: Callable[[sqlite3.Connection], T]
    future: asyncio.Future[T]


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


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("pica.store").joinpath("migrations/sqlite")
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql"):
            found.append((int(name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending numbered migrations; returns the schema version. Versions are kept in PRAGMA user_version."""
    (current,) = conn.execute("PRAGMA user_version").fetchone()
    for version, sql in _migrations():
        if version <= current:
            continue
        log.info("applying sqlite migration", extra={"version": version})
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in sql.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {int(version)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        current = version
    return int(current)


class SqliteStore(Store):
    def __init__(self, path: Path, config: SqliteConfig | None = None) -> None:
        self.path = path
        self.config = config or SqliteConfig()
        self._queue: queue.SimpleQueue[_WriteOp[Any] | None] = queue.SimpleQueue()
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
            batch: list[_WriteOp[Any]] = [first]
            while len(batch) < max_batch:
                try:
                    op = get_nowait()
                except queue.Empty:
                    break
                if op is None:
                    stopping = True
                    break
                batch.append(op)
            outcomes = self._run_batch(conn, batch)
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve_batch, outcomes)
        conn.close()

    def _run_batch(
        self, conn: sqlite3.Connection, batch: list[_WriteOp[Any]]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        """Run a batch in one transaction. Operations raise domain errors (PicaError) only before their first
        write, so the fast path needs no savepoints; an unexpected database error in one operation rolls the batch
        back and replays it with a savepoint around each operation, so that only the faulty one fails."""
        try:
            return self._commit(conn, batch, isolate=False)
        except sqlite3.Error:
            log.warning("batch of %d failed; replaying with one savepoint per operation", len(batch), exc_info=True)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        try:
            return self._commit(conn, batch, isolate=True)
        except sqlite3.Error as exc:
            log.error("commit failed; failing %d operations", len(batch), exc_info=True)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            failure = StoreUnavailable(f"commit failed: {type(exc).__name__}")
            return [(op.future, None, failure) for op in batch]

    def _commit(
        self, conn: sqlite3.Connection, batch: list[_WriteOp[Any]], *, isolate: bool
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        conn.execute("BEGIN IMMEDIATE")
        for op in batch:
            if isolate:
                conn.execute("SAVEPOINT op")
            try:
                result = op.fn(conn)
            except PicaError as exc:
                outcomes.append((op.future, None, exc))
            except sqlite3.Error as exc:
                if not isolate:
                    raise
                conn.execute("ROLLBACK TO op")
                log.exception("write operation failed")
                outcomes.append((op.future, None, InternalError(f"store error: {type(exc).__name__}")))
            else:
                outcomes.append((op.future, result, None))
            if isolate:
                conn.execute("RELEASE op")
        conn.execute("COMMIT")
        return outcomes

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        if self._closed:
            raise StoreUnavailable("store is closed")
        loop = self._loop
        assert loop is not None, "store not opened"
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_WriteOp(fn, future))
        return future

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

    # ------------------------------------------------------------------------------------------------ messages

    def append_direct(self, request: DirectAppend) -> asyncio.Future[AppendResult]:
        return self._write(lambda conn: _append_direct(conn, request))

    async def history(
        self, user_id: int, conversation_id: str, *, after: int | None, before: int | None, limit: int
    ) -> Page:
        def op(conn: sqlite3.Connection) -> Page:
            row = conn.execute(
                "SELECT joined_seq FROM members WHERE conversation_id = ? AND user_id = ?",
                (conversation_id, user_id),
            ).fetchone()
            if row is None:
                raise ConversationNotFound()
            floor = max(row[0], after or 0)
            if before is None and after is not None:
                rows = conn.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND seq > ?"
                    " ORDER BY seq LIMIT ?",
                    (conversation_id, floor, limit + 1),
                ).fetchall()
                more = len(rows) > limit
                return Page([_message(r) for r in rows[:limit]], more)
            ceiling = before if before is not None else 2**62
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND seq > ? AND seq < ?"
                " ORDER BY seq DESC LIMIT ?",
                (conversation_id, floor, ceiling, limit + 1),
            ).fetchall()
            more = len(rows) > limit
            return Page([_message(r) for r in reversed(rows[:limit])], more)

        return await self._read(op)

    async def sync(self, user_id: int, cursors: Mapping[str, int], limit: int) -> Page:
        def op(conn: sqlite3.Connection) -> Page:
            pending = []
            for conversation_id, joined, last_seq in conn.execute(
                "SELECT m.conversation_id, m.joined_seq, c.last_seq FROM members m"
                " JOIN conversations c ON c.conversation_id = m.conversation_id"
                " WHERE m.user_id = ? ORDER BY m.conversation_id",
                (user_id,),
            ):
                start = max(joined, cursors.get(conversation_id, 0))
                if last_seq > start:
                    pending.append((conversation_id, start))
            messages: list[MessageRecord] = []
            for conversation_id, start in pending:
                room = limit - len(messages)
                rows = conn.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND seq > ?"
                    " ORDER BY seq LIMIT ?",
                    (conversation_id, start, room + 1),
                ).fetchall()
                if len(rows) > room:
                    messages.extend(_message(r) for r in rows[:room])
                    return Page(messages, True)
                messages.extend(_message(r) for r in rows)
                if len(messages) == limit and conversation_id != pending[-1][0]:
                    return Page(messages, True)
            return Page(messages, False)

        return await self._read(op)

    async def mark_delivered(self, user_id: int, conversation_id: str, seq: int) -> int | None:
        def op(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "UPDATE members SET delivered_seq ="
                " min(?, (SELECT last_seq FROM conversations WHERE conversation_id = ?))"
                " WHERE conversation_id = ? AND user_id = ? AND delivered_seq < ?"
                " AND delivered_seq < (SELECT last_seq FROM conversations WHERE conversation_id = ?)"
                " RETURNING delivered_seq",
                (seq, conversation_id, conversation_id, user_id, seq, conversation_id),
            ).fetchone()
            return None if row is None else int(row[0])

        return await self._write(op)

    async def conversation_members(self, conversation_id: str) -> list[int]:
        return await self._read(
            lambda conn: [
                r[0]
                for r in conn.execute(
                    "SELECT user_id FROM members WHERE conversation_id = ? ORDER BY user_id", (conversation_id,)
                )
            ]
        )

    async def list_conversations(self, user_id: int) -> list[ConversationSummary]:
        return await self._read(
            lambda conn: [
                ConversationSummary(*row)
                for row in conn.execute(
                    "SELECT c.conversation_id, c.kind, c.last_seq, c.last_ts, m.delivered_seq, m.read_seq"
                    " FROM members m JOIN conversations c ON c.conversation_id = m.conversation_id"
                    " WHERE m.user_id = ? ORDER BY c.last_ts DESC, c.conversation_id",
                    (user_id,),
                )
            ]
        )


_MESSAGE_COLUMNS: Final = "conversation_id, seq, sender, client_msg_id, ts, body"


def _message(row: tuple[Any, ...]) -> MessageRecord:
    return MessageRecord(row[0], row[1], row[2], row[3], row[4], _json_decode_body(row[5]))


def _user(conn: sqlite3.Connection, where: str, value: object) -> UserRecord | None:
    row = conn.execute(
        f"SELECT user_id, username, password_hash, created_at FROM users WHERE {where}", (value,)
    ).fetchone()
    return None if row is None else UserRecord(*row)


def _append_direct(conn: sqlite3.Connection, request: DirectAppend) -> AppendResult:
    existing = conn.execute(
        "SELECT conversation_id, seq, ts FROM messages WHERE sender = ? AND client_msg_id = ?",
        (request.sender, request.client_msg_id),
    ).fetchone()
    if existing is not None:
        return AppendResult(existing[0], existing[1], existing[2], duplicate=True)
    if conn.execute("SELECT 1 FROM users WHERE user_id = ?", (request.recipient,)).fetchone() is None:
        raise UserNotFound(f"user {request.recipient} does not exist")
    (seq,) = conn.execute(
        "INSERT INTO conversations (conversation_id, kind, last_seq, last_ts, created_at)"
        " VALUES (?, 'direct', 1, ?, ?)"
        " ON CONFLICT (conversation_id) DO UPDATE SET last_seq = last_seq + 1, last_ts = excluded.last_ts"
        " RETURNING last_seq",
        (request.conversation_id, request.ts, request.ts),
    ).fetchone()
    if seq == 1:
        conn.executemany(
            "INSERT OR IGNORE INTO members (conversation_id, user_id) VALUES (?, ?)",
            [(request.conversation_id, request.sender), (request.conversation_id, request.recipient)],
        )
    conn.execute(
        "INSERT INTO messages (conversation_id, seq, sender, client_msg_id, ts, body) VALUES (?, ?, ?, ?, ?, ?)",
        (request.conversation_id, seq, request.sender, request.client_msg_id, request.ts, request.body_json.decode()),
    )
    return AppendResult(request.conversation_id, seq, request.ts, duplicate=False)
