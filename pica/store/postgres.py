"""PostgreSQL store: the shared store of cluster mode. Same contract as :mod:`pica.store.sqlite` (tests/store runs
against both), for several nodes writing to one database at once.

- **Appends** (messages, recalls, edits) go through write lanes (:mod:`pica.store.postgres_lanes`): ``write_lanes``
  dedicated connections, a conversation always on the same one, each committing what waits in batches (group
  commit). The conversation row's lock, taken by ``UPDATE conversations SET last_seq = last_seq + 1``, is the one seq
  authority across nodes; the unique index on (sender, client_msg_id) is the one de-duplication authority.
- **Everything else** is plain SQL through a connection pool: a transaction per write, a snapshot per multi-statement
  read.
- **Errors**: a lost or refused connection, a timeout, a server shutting down become StoreUnavailable (retryable, 503);
  domain refusals are the same errors SQLite raises; anything else is logged and becomes InternalError.
- **Schema**: everything lives in ``postgres.schema``; numbered migrations (``migrations/postgresql``) are applied by
  :func:`migrate`, by ``open()`` and by ``pica migrate``, each in its own transaction under an advisory lock so that
  nodes starting together apply each one exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Final, TypeVar

import asyncpg

from pica.config import PostgresConfig
from pica.errors import InternalError, PicaError, StoreUnavailable
from pica.store import job_rules, jobs, messages, reactions, sql_postgres
from pica.store import search as fts
from pica.store.base import (
    AppendResult,
    CommitObserver,
    DirectAppend,
    EventAppend,
    GroupAppend,
    JobRules,
    LinkedAppend,
    MessageRecord,
    ReactionAppend,
)
from pica.store.job_rules import Event
from pica.store.postgres_lanes import DISCONNECTS, RETRYABLE, Lane, LaneOp
from pica.store.schema import POSTGRES, Applied, Migrations, Progress, announce, bundled, plan
from pica.store.sql_store import SqlStore
from pica.store.sqlite_files import Probe
from pica.store.txn import Txn

log = logging.getLogger(__name__)

T = TypeVar("T")

_LOCK_NAMESPACE: Final = 0x7069_6361  # "pica": the high half of the advisory lock key that serializes migrations
_RETRIES: Final = 5


def quote_ident(name: str) -> str:
    """An identifier as SQL text (schema names cannot be query parameters)."""
    return '"' + name.replace('"', '""') + '"'


def _lock_key(schema: str) -> int:
    return (_LOCK_NAMESPACE << 32) | zlib.crc32(schema.encode())


async def _apply_migrations(conn: Any, schema: str, report: Progress | None, migrations: Migrations | None) -> int:
    sequence = migrations or bundled()
    key = _lock_key(schema)
    name = quote_ident(schema)
    async with conn.transaction():
        # Concurrent CREATE SCHEMA IF NOT EXISTS can still fail on the catalog's unique index: serialize it too.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {name}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {name}.schema_migrations"
            " (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        # name and checksum came with the shared sequence; rows of earlier releases have neither (they are adopted).
        await conn.execute(
            f"ALTER TABLE {name}.schema_migrations ADD COLUMN IF NOT EXISTS name TEXT,"
            " ADD COLUMN IF NOT EXISTS checksum TEXT"
        )
    await conn.execute(f"SET search_path = {name}")
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
            rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
            todo = plan(sequence, POSTGRES, [Applied(row["version"], row["checksum"]) for row in rows])
            for step in todo.adopt:
                await conn.execute("UPDATE schema_migrations SET name = $2, checksum = $3 WHERE version = $1",
                                   step.version, step.name, step.checksum)
            started = time.perf_counter()
            if todo.pending:
                step = todo.pending[0]
                await conn.execute(step.sql)
                await conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                                   step.version, step.name, step.checksum)
        if not todo.pending:
            return todo.version
        announce(report, step, time.perf_counter() - started, schema=schema)


async def probe(dsn: str, config: PostgresConfig) -> Probe:
    """Connect and look, changing nothing: the server's version and clock, and the schema version (``pica doctor``).
    Raises StoreUnavailable when the database cannot be reached."""
    try:
        conn = await asyncpg.connect(dsn, timeout=config.connect_timeout)
    except (*DISCONNECTS, asyncpg.PostgresError) as exc:
        raise StoreUnavailable(f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}") from exc
    try:
        version = await conn.fetchval("SHOW server_version")
        now_ms = int(await conn.fetchval("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint"))
        table = f"{config.schema}.schema_migrations"
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
        schema = int(await conn.fetchval(f"SELECT COALESCE(MAX(version), 0) FROM {table}")) if exists else 0
    except (*DISCONNECTS, asyncpg.PostgresError) as exc:
        raise StoreUnavailable(f"PostgreSQL answered badly: {type(exc).__name__}: {exc}") from exc
    finally:
        with contextlib.suppress(*DISCONNECTS, asyncpg.PostgresError):
            await conn.close(timeout=config.connect_timeout)
    return Probe(schema, f"PostgreSQL {version}, schema {config.schema!r}", now_ms=now_ms)


async def migrate(dsn: str, config: PostgresConfig, report: Progress | None = None,
                  migrations: Migrations | None = None) -> int:
    """Create the schema if missing and apply pending migrations (:mod:`pica.store.schema`), each in its own
    transaction under an advisory lock and recorded with its checksum; returns the schema version. Safe to run from
    several nodes at once. Raises StoreUnavailable when the database cannot be reached, MigrationError when the
    database and the migration files do not fit together."""
    try:
        conn = await asyncpg.connect(dsn, timeout=config.connect_timeout)
    except (*DISCONNECTS, asyncpg.PostgresError) as exc:
        raise StoreUnavailable(f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}") from exc
    try:
        return await _apply_migrations(conn, config.schema, report, migrations)
    except DISCONNECTS as exc:
        raise StoreUnavailable(f"migration interrupted: {type(exc).__name__}: {exc}") from exc
    finally:
        try:
            await conn.close(timeout=config.connect_timeout)
        except (*DISCONNECTS, asyncpg.PostgresError):
            conn.terminate()


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool connection handed back without asyncpg's reset statement (advisory unlock, CLOSE ALL, UNLISTEN,
    RESET ALL): one round trip per release, 17 % of a cluster worker's samples while connects poured in
    (BENCHMARKS.md, "Connections per machine"). The store leaves no session state behind to reset: its locks are
    transaction-scoped (``pg_advisory_xact_lock``), its cursors live inside a transaction, it never LISTENs, and its
    settings are the connection's startup parameters; an open transaction is still rolled back on release."""

    def get_reset_query(self) -> str:
        return ""


class PostgresStore(SqlStore):
    def __init__(self, dsn: str, config: PostgresConfig | None = None) -> None:
        self.dsn = dsn
        self.config = config or PostgresConfig()
        self._pool: Any = None
        self._lanes: list[Lane] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._observer: CommitObserver | None = None

    # ------------------------------------------------------------------------------------------------ lifecycle

    def _server_settings(self, role: str) -> dict[str, str]:
        # The schema in application_name tells deployments sharing a server apart in pg_stat_activity (63 bytes max).
        name = f"pica-{role} {self.config.schema}".encode()[:63].decode(errors="ignore")
        # Batch statements join unnest()ed arrays to indexed tables. A generic plan, cached after five executions,
        # is costed while the tables may still be small (a new deployment, a new schema) and then keeps hash-joining
        # over a table that has grown: measured, find_originals alone took most of PostgreSQL's CPU and cluster
        # throughput fell to a third. Planning each execution costs less than that (PostgreSQL's CPU per message
        # went down with it).
        return {"search_path": quote_ident(self.config.schema), "application_name": name,
                "plan_cache_mode": "force_custom_plan"}

    async def _connect_lane(self, index: int) -> Any:
        return await asyncpg.connect(
            self.dsn,
            timeout=self.config.connect_timeout,
            command_timeout=self.config.command_timeout,
            server_settings=self._server_settings(f"lane-{index}"),
        )

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        version = await migrate(self.dsn, self.config)
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.config.pool_size,
                timeout=self.config.connect_timeout,
                command_timeout=self.config.command_timeout,
                server_settings=self._server_settings("pool"),
                connection_class=PooledConnection,
            )
            lanes = [Lane(i, self._connect_lane, self.config.max_batch, self._current_rules)
                     for i in range(self.config.write_lanes)]
            for lane in lanes:
                lane.observer = self._observer
                await lane.start()
                self._lanes.append(lane)
        except (*DISCONNECTS, asyncpg.PostgresError) as exc:
            await self._release()
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {type(exc).__name__}: {exc}") from exc
        await self.reindex_search(only_if_stale=True)
        log.info("postgresql store open", extra={"schema": self.config.schema, "version": version,
                                                 "write_lanes": len(self._lanes)})

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._release()

    async def _release(self) -> None:
        for lane in self._lanes:
            await lane.close()
        self._lanes.clear()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                async with asyncio.timeout(self.config.command_timeout):
                    await pool.close()
            except (TimeoutError, *DISCONNECTS):
                pool.terminate()

    def observe_commits(self, observer: CommitObserver | None) -> None:
        self._observer = observer
        for lane in self._lanes:
            lane.observer = observer

    def write_backlog(self) -> int:
        return sum(lane.backlog for lane in self._lanes)

    def lane_backend_pids(self) -> list[int | None]:
        """Server process ids of the write lanes' connections (None while one is reconnecting)."""
        return [lane.backend_pid for lane in self._lanes]

    # ------------------------------------------------------------------------------------------------ plumbing

    def _submit(self, op: LaneOp) -> None:
        if self._closed:
            raise StoreUnavailable("store is closed")
        assert self._lanes, "store not opened"
        lane = self._lanes[zlib.crc32(op.conversation_id.encode()) % len(self._lanes)]
        lane.submit(op)

    def _future(self) -> asyncio.Future[Any]:
        if self._closed:
            raise StoreUnavailable("store is closed")
        assert self._loop is not None, "store not opened"
        return self._loop.create_future()

    async def _call(self, fn: Callable[[Any], Awaitable[T]], *, write: bool = False, snapshot: bool = False) -> T:
        """Run ``fn`` on a pooled connection: in a transaction (``write``), in a read-only snapshot (``snapshot``) or
        as it is. Driver errors become StoreUnavailable or InternalError; reads are retried once after a lost
        connection (they change nothing), on a fresh one, writes never (their outcome is unknown)."""
        if self._closed or self._pool is None:
            raise StoreUnavailable("store is closed")
        pool = self._pool
        attempt = 1
        while True:
            try:
                async with pool.acquire(timeout=self.config.command_timeout) as conn:
                    try:
                        if write:
                            async with conn.transaction():
                                return await fn(conn)
                        if snapshot:
                            async with conn.transaction(isolation="repeatable_read", readonly=True):
                                return await fn(conn)
                        return await fn(conn)
                    except DISCONNECTS:
                        # Never hand a broken connection back to the pool: its reset could fail the same way.
                        conn.terminate()
                        raise
            except PicaError:
                raise
            except RETRYABLE as exc:
                if attempt >= _RETRIES:
                    raise StoreUnavailable("database busy; retry") from exc
            except DISCONNECTS as exc:
                if write or attempt > 1:
                    raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc
                # What cut this connection (a restart, a failover, backends terminated) most likely cut its idle
                # siblings too: the retry must not take one of them.
                await pool.expire_connections()
            except asyncpg.PostgresError as exc:
                log.exception("store operation failed")
                raise InternalError(f"store error: {type(exc).__name__}") from exc
            attempt += 1

    async def _write(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        return await self._call(fn, write=True)

    async def _read(self, fn: Callable[[Any], Awaitable[T]], *, snapshot: bool = False) -> T:
        return await self._call(fn, snapshot=snapshot)

    _search_value = staticmethod(fts.tsvector_literal)
    _search_terms = staticmethod(fts.tsquery_literal)

    async def _read_txn(self, make: Callable[[], Txn[T]], *, snapshot: bool = False) -> T:
        return await self._read(lambda conn: sql_postgres.run(conn, make()), snapshot=snapshot)

    async def _write_txn(self, make: Callable[[], Txn[T]]) -> T:
        return await self._write(lambda conn: sql_postgres.run(conn, make()))

    # ------------------------------------------------------------------------------------------------ messages

    def _current_rules(self) -> JobRules | None:
        return self._job_rules

    def append_direct(self, request: DirectAppend) -> asyncio.Future[AppendResult]:
        future = self._future()
        self._submit(LaneOp(request.conversation_id, future, append=request,
                            search=self._search_value(request.search_text)))
        if job_rules.wakes(self._job_rules, request):
            future.add_done_callback(self._jobs_written)
        return future

    def append_group(self, request: GroupAppend) -> asyncio.Future[AppendResult]:
        future = self._future()
        self._submit(LaneOp(request.conversation_id, future, append=request,
                            search=self._search_value(request.search_text)))
        if job_rules.wakes(self._job_rules, request):
            future.add_done_callback(self._jobs_written)
        return future

    def append_event(self, request: EventAppend) -> asyncio.Future[tuple[AppendResult, MessageRecord]]:
        future = self._future()
        make = jobs.with_jobs(partial(messages.append_event, request, self._search_value), self._job_rules,
                              jobs.event_events, request.ts)
        txn = lambda conn: sql_postgres.run(conn, make())  # noqa: E731
        self._submit(LaneOp(request.conversation_id, future, run=txn))
        if self._job_rules is not None and self._job_rules.events:  # previews alone make no job of an event
            future.add_done_callback(self._jobs_written)
        return future

    def append_linked(self, request: LinkedAppend) -> asyncio.Future[tuple[AppendResult, MessageRecord]]:
        message = request.message
        return self._write_change(message.conversation_id,
                                  partial(reactions.append_linked, request, self._search_value),
                                  partial(reactions.linked_events, message), message.ts)

    def append_reaction(self, request: ReactionAppend) -> asyncio.Future[tuple[AppendResult, MessageRecord]]:
        return self._write_change(request.conversation_id, partial(reactions.append_reaction, request),
                                  jobs.event_events, request.ts)

    def _write_change(self, conversation_id: str, make: Callable[[], Txn[T]], events: Callable[[T], list[Event]],
                      ts: int) -> asyncio.Future[T]:
        """A write on the conversation's lane, in order with its appends, followed by its jobs."""
        future: asyncio.Future[T] = self._future()
        with_jobs = jobs.with_jobs(make, self._job_rules, events, ts)
        self._submit(LaneOp(conversation_id, future, run=lambda conn: sql_postgres.run(conn, with_jobs())))
        if self._job_rules is not None:
            future.add_done_callback(self._jobs_written)
        return future
