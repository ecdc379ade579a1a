"""Write lanes: the PostgreSQL store's hot path for appends (messages, recalls, edits).

A lane owns one connection and an in-order queue. A conversation always maps to the same lane (a stable hash of its
id), so its appends commit, take seqs and resolve in the order they were submitted. A lane takes every operation
waiting (up to ``max_batch``), runs them in ONE transaction and resolves the futures only after COMMIT returned:
group commit, one WAL flush for many messages, and never an ack before durability. When more operations wait, the
next batch's BEGIN is sent in one query string with this batch's COMMIT (a round trip fewer per batch under load).

Inside the transaction the operations run sorted by conversation id (a stable sort: a conversation's own order is
kept), so that concurrent batches, of other lanes or other nodes, lock conversation rows in one global order and do
not deadlock. Runs of plain appends go through :func:`pica.store.messages.append_batch`, the batch transaction SQLite
runs too: one statement for the facts and locks, one for group senders (if any), one that stores, for the whole run,
not per message.

Failures: a deadlock, a serialization failure or a lost client-id race (Retry) retries the batch; any other error
rolls back and replays the batch with one transaction per operation, so that only the faulty one fails. A lost
connection (or a timeout, after which the outcome of a COMMIT is unknown) fails the whole batch with
StoreUnavailable: the client retries with the same ``client_msg_id`` and de-duplication makes the retry
exactly-once. The lane then reconnects by itself, with a short
capped backoff; while it cannot, new appends fail at once instead of queueing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from pica.errors import (
    InternalError,
    PicaError,
    StoreUnavailable,
)
from pica.store import jobs
from pica.store import sql_postgres as sql
from pica.store.base import CommitObserver, DirectAppend, GroupAppend, JobRules
from pica.store.txn import Retry

log = logging.getLogger(__name__)

DISCONNECTS: Final = (
    asyncpg.PostgresConnectionError,  # class 08: the connection failed or is gone
    asyncpg.InterfaceError,  # closed connection or pool, protocol state lost
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, restart, cancelled statement
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, out of memory or disk
    # The driver's own state is lost: "cannot switch to state ...; another operation is in progress" when the
    # server ended the backend mid-query, protocol errors, a type cache outdated by a schema change.
    asyncpg.exceptions.InternalClientError,
    OSError,  # sockets, refused connections, and TimeoutError (command or connect timeout)
)
"""Errors after which a connection cannot be trusted: the store cannot answer now, a retry later can succeed. The
one list both the pool's callers (postgres.py) and the write lanes use."""

RETRYABLE: Final = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError, Retry)
"""Errors that roll a transaction back through no fault of its own: running it again can succeed (Retry: a
concurrent transaction committed a client id this one was about to store)."""
_RETRY_LIMIT: Final = 5
_BACKOFF_FIRST: Final = 0.05
_BACKOFF_MAX: Final = 2.0

Connect = Callable[[int], Awaitable[Any]]
"""Opens a lane's connection (the argument is the lane number, for the connection's application_name)."""


@dataclass(slots=True)
class LaneOp:
    """One write of a lane: a plain append (``append`` set) or a function run inside the batch transaction (``run``:
    it may raise PicaError only before its first write, like every write of the SQLite backend)."""

    conversation_id: str
    future: asyncio.Future[Any]
    append: DirectAppend | GroupAppend | None = None
    search: str | None = None
    """The append's tsvector literal (computed on submission, outside the lane)."""
    run: Callable[[Any], Awaitable[Any]] | None = None
    result: Any = None
    error: BaseException | None = None
    committed: bool = False
    """Its transaction committed: the outcome stands even if the connection is lost right after."""


def resolve(op: LaneOp) -> None:
    future = op.future
    if future.done():  # the caller gave up; the write stands regardless
        return
    if op.error is not None:
        future.set_exception(op.error)
    else:
        future.set_result(op.result)


async def _append_run(conn: Any, ops: list[LaneOp], rules: JobRules | None) -> None:
    """Plain appends as one batch transaction (messages.append_batch, and their jobs: jobs.appends): the same few
    round trips however many there are."""
    requests = [op.append for op in ops if op.append is not None]
    if len(requests) != len(ops):
        raise RuntimeError("an op without an append in a run of appends")
    outcomes = await sql.run(conn, jobs.appends(requests, [op.search for op in ops], rules))
    for op, outcome in zip(ops, outcomes, strict=True):
        if isinstance(outcome, PicaError):
            op.error = outcome
        else:
            op.result = outcome


class _NotStarted(Exception):
    """The connection died while idle: nothing of the batch reached the server, so it may run on a new one."""


_LOST: Final = (*DISCONNECTS, _NotStarted)


def _never() -> bool:
    return False


async def _commit(conn: Any, ops: list[LaneOp], rules: JobRules | None, more: Callable[[], bool] = _never) -> float:
    """Run ``ops`` (already in lock order) in one transaction and commit; outcomes land on the ops. Returns the
    COMMIT's seconds (the WAL flush, for /metrics).

    ``more()`` true when the COMMIT is sent: another batch waits, so its BEGIN goes in the same query string as this
    COMMIT (one round trip fewer per batch under load), and that batch finds its transaction begun. Only then: a
    lane is never left idle in a transaction (an open transaction's ``now()`` stands still, and it shows as "idle in
    transaction" to the tools that watch for them). Until its first statement that transaction holds no snapshot, no
    lock and no transaction id."""
    for op in ops:
        op.result = op.error = None
    if not conn.is_in_transaction():  # else the previous batch's COMMIT began it
        try:
            await conn.execute("BEGIN")
        except DISCONNECTS as exc:
            # BEGIN alone changes nothing: whatever became of it, none of the batch ran.
            raise _NotStarted(str(exc)) from exc
    start = 0
    while start < len(ops):
        if ops[start].run is None:
            end = start
            while end < len(ops) and ops[end].run is None:
                end += 1
            await _append_run(conn, ops[start:end], rules)
            start = end
            continue
        op = ops[start]
        assert op.run is not None
        try:
            op.result = await op.run(conn)
        except PicaError as exc:
            op.error = exc
        start += 1
    committing = time.perf_counter()
    # A simple query of two statements: BEGIN runs only if COMMIT succeeded.
    await conn.execute("COMMIT; BEGIN" if more() else "COMMIT")
    seconds = time.perf_counter() - committing
    for op in ops:
        op.committed = True
    return seconds


async def _rollback(conn: Any) -> None:
    if not conn.is_closed() and conn.is_in_transaction():
        with contextlib.suppress(*DISCONNECTS, asyncpg.PostgresError):
            await conn.execute("ROLLBACK")


async def _transact(conn: Any, ops: list[LaneOp], rules: JobRules | None = None,
                    more: Callable[[], bool] = _never) -> float:
    """Commit ``ops`` in one transaction, retrying deadlocks and serialization failures; other errors propagate after
    a rollback. Returns the COMMIT's seconds. ``more``: see :func:`_commit`."""
    attempt = 1
    while True:
        try:
            return await _commit(conn, ops, rules, more)
        except RETRYABLE:
            await _rollback(conn)
            if attempt >= _RETRY_LIMIT:
                raise
            log.info("write batch hit a deadlock or serialization failure; retrying", extra={"attempt": attempt})
            await asyncio.sleep(random.uniform(0, 0.01 * attempt))
            attempt += 1
        except BaseException:
            await _rollback(conn)
            raise


class Lane:
    """One write lane. ``submit`` queues an op; the lane's task commits queued ops in batches."""

    def __init__(self, index: int, connect: Connect, max_batch: int,
                 rules: Callable[[], JobRules | None] = lambda: None) -> None:
        self.index = index
        self._rules = rules
        self._connect = connect
        self._max_batch = max_batch
        self._queue: collections.deque[LaneOp] = collections.deque()
        self._wake = asyncio.Event()
        self._conn: Any = None
        self._down = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._inflight: list[LaneOp] = []
        self.observer: CommitObserver | None = None

    @property
    def backlog(self) -> int:
        """Operations submitted and not yet answered."""
        return len(self._queue) + len(self._inflight)

    @property
    def backend_pid(self) -> int | None:
        """The server process id of the lane's connection (diagnostics and fault-injection tests)."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else int(conn.get_server_pid())

    async def start(self) -> None:
        """Connect (failing loudly if the database is unreachable) and start the lane's task."""
        self._conn = await self._connect(self.index)
        self._task = asyncio.create_task(self._main(), name=f"pica-pg-lane-{self.index}")

    def submit(self, op: LaneOp) -> None:
        if self._down:
            # Waiting for a reconnect would only delay the client's own retry.
            op.error = StoreUnavailable("database unreachable")
            resolve(op)
            return
        self._queue.append(op)
        self._wake.set()

    async def close(self) -> None:
        """Commit every op already submitted (or fail them if the database is gone), then close."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _main(self) -> None:
        backoff = _BACKOFF_FIRST
        try:
            while True:
                try:
                    if self._conn is None or self._conn.is_closed():
                        if await self._reconnect():
                            backoff = _BACKOFF_FIRST
                        else:
                            self._fail_queued(StoreUnavailable("database unreachable"))
                            if self._closing:
                                return
                            await self._sleep(backoff)
                            backoff = min(backoff * 2, _BACKOFF_MAX)
                        continue
                    if not self._queue:
                        if self._closing:
                            return
                        self._wake.clear()
                        await self._wake.wait()
                        continue
                    take = min(len(self._queue), self._max_batch)
                    await self._run([self._queue.popleft() for _ in range(take)])
                except Exception:
                    # A bug must not end the lane (its conversations could never be written again): fail what was
                    # in flight, start over on a new connection.
                    log.exception("write lane %d failed unexpectedly", self.index)
                    self._fail_inflight(StoreUnavailable("store error; retry"))
                    if self._conn is not None:
                        self._conn.terminate()
                    await self._sleep(backoff)
        finally:
            # Never leave a future unresolved, whatever ended the task (a cancellation mid-batch included).
            self._fail_inflight(StoreUnavailable("store is closed"))
            self._fail_queued(StoreUnavailable("store is closed"))
            if self._conn is not None and not self._conn.is_closed():
                with contextlib.suppress(*DISCONNECTS, asyncpg.PostgresError):
                    await self._conn.close(timeout=2)

    def _fail_inflight(self, error: StoreUnavailable) -> None:
        inflight, self._inflight = self._inflight, []
        for op in inflight:
            if not op.committed:
                op.result, op.error = None, error
            resolve(op)

    async def _reconnect(self) -> bool:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None
        try:
            self._conn = await self._connect(self.index)
        except (*DISCONNECTS, asyncpg.PostgresError) as exc:
            if not self._down:
                log.warning("write lane %d cannot connect: %s", self.index, exc)
            self._down = True
            return False
        if self._down:
            log.info("write lane %d reconnected", self.index)
        self._down = False
        return True

    async def _sleep(self, seconds: float) -> None:
        """Back off, but wake early for close()."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds * random.uniform(0.5, 1.0)):
                await self._wake.wait()

    def _fail_queued(self, error: StoreUnavailable) -> None:
        while self._queue:
            op = self._queue.popleft()
            op.error = error
            resolve(op)

    async def _run(self, batch: list[LaneOp]) -> None:
        self._inflight = batch
        ordered = sorted(batch, key=_lock_order)
        conn = self._conn
        began = time.perf_counter()
        timing: tuple[int, float, float] | None = None
        try:
            try:
                try:
                    fsync = await _transact(conn, ordered, self._rules(), self._more)
                except _NotStarted as exc:
                    # Safe to run on a new connection: the server saw nothing of this batch.
                    log.info("write lane %d connection was gone before its batch (%s); reconnecting", self.index, exc)
                    conn.terminate()
                    self._conn = conn = await self._connect(self.index)
                    began = time.perf_counter()
                    fsync = await _transact(conn, ordered, self._rules(), self._more)
                timing = (len(batch), time.perf_counter() - began, fsync)
            except _LOST:
                raise
            except Exception:
                if conn.is_closed():
                    raise
                log.warning("write batch of %d failed; replaying one transaction per operation", len(batch),
                            exc_info=True)
                for op in batch:
                    await self._run_alone(conn, op)
        except Exception as exc:  # a lost connection (the other errors were handled above)
            log.warning("write lane %d lost its connection (%s: %s)", self.index, type(exc).__name__, exc)
            conn.terminate()
            failure = StoreUnavailable("database connection lost; retry")
            for op in batch:
                if not op.committed:
                    op.result, op.error = None, failure
        self._inflight = []
        if timing is not None and self.observer is not None:
            try:
                self.observer(*timing)
            except Exception:  # metrics must never fail a write
                log.exception("commit observer failed")
        for op in batch:
            resolve(op)

    def _more(self) -> bool:
        """Another batch will follow this one at once (its BEGIN can go with this COMMIT)."""
        return bool(self._queue)

    async def _run_alone(self, conn: Any, op: LaneOp) -> None:
        """Commit one op on its own; an unexpected error fails it alone (a lost connection propagates)."""
        try:
            await _transact(conn, [op], self._rules())
        except _LOST:
            raise
        except Exception as exc:
            if conn.is_closed():
                raise
            log.exception("write operation failed")
            op.result, op.error = None, InternalError(f"store error: {type(exc).__name__}")


def _lock_order(op: LaneOp) -> str:
    return op.conversation_id
