"""Several SQLite stores on ONE database file, as ``pica serve --workers N`` runs them: each worker a store of its own,
writing through one writer process they share (what the supervisor starts), or each through a writer of its own,
serialised by SQLite's write lock alone (what a store does by default). Either way nothing a store keeps in memory
may stand in for what another process committed: seqs and duplicates are decided inside the write transaction,
reads see every commit, and stores starting together on a new file all start."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from pica.config import SqliteConfig
from pica.protocol.tokens import document
from pica.store import search
from pica.store.base import AppendResult, DirectAppend, GroupAppend, SessionRecord
from pica.store.sqlite import SqliteStore
from pica.store.sqlite_process import SharedWriter
from pica.store.sqlite_writer import open_writer

SENDERS = 4
"""Senders per store, each awaiting its ack before its next message: the writers contend for SQLite's lock all along
(not necessarily in turns: SQLite's lock is not fair, a writer may wait while the other commits many times)."""
EACH = 25


def body(text: str) -> bytes:
    return json.dumps({"text": text}).encode()


OWN, ONE = "a writer each", "one shared writer"


@pytest.fixture(params=[OWN, ONE])
def writers(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


@contextlib.asynccontextmanager
async def shared(path: Path, count: int = 2, writers: str = OWN) -> AsyncIterator[list[SqliteStore]]:
    """``count`` stores on one file opened together, each with its default writer (a process of its own), or all
    through one :class:`SharedWriter`."""
    config = SqliteConfig(max_batch=64)
    writer, folder = None, None
    if writers == ONE:
        folder = Path(tempfile.mkdtemp(prefix="pica-writer-"))  # short: a Unix socket's path is at most 108 bytes
        writer = SharedWriter(path, config, folder / "writer.sock")
        await asyncio.to_thread(writer.start)
        config = dataclasses.replace(config, writer_socket=str(writer.address))
    stores = [SqliteStore(path, config) for _ in range(count)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        yield stores
    finally:
        await asyncio.gather(*(store.close() for store in stores))
        if writer is not None:
            await asyncio.to_thread(writer.stop)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


async def burst(stores: list[SqliteStore],
                send: Callable[[SqliteStore, str], Awaitable[AppendResult]]) -> list[list[AppendResult]]:
    """SENDERS senders per store, each sending EACH messages one after the other; the acks, per store."""

    async def sender(store: SqliteStore, name: str) -> list[AppendResult]:
        return [await send(store, f"{name}-{i}") for i in range(EACH)]

    per_sender = await asyncio.gather(*(sender(store, f"s{n}w{k}") for n, store in enumerate(stores)
                                        for k in range(SENDERS)))
    return [[r for results in per_sender[n * SENDERS:(n + 1) * SENDERS] for r in results]
            for n in range(len(stores))]


def assert_gap_free(per_store: list[list[AppendResult]], first: int = 1) -> None:
    seqs = [r.seq for results in per_store for r in results]
    assert not any(r.duplicate for results in per_store for r in results)
    assert sorted(seqs) == list(range(first, first + len(seqs)))  # unique and gap-free across the writers


async def test_stores_opened_together_on_a_new_file_all_start(tmp_path: Path) -> None:
    """Their writers migrate the new file at the same moment (each step BEGIN IMMEDIATE), and set it to WAL: SQLite
    answers that pragma "database is locked" at once, without waiting, while another connection holds a lock."""
    for attempt in range(3):
        async with shared(tmp_path / f"new{attempt}.db", 3) as stores:
            alice = await stores[0].create_user("alice", "hash", 0)
            assert all([(await s.get_user(alice)) is not None for s in stores])
    with sqlite3.connect(tmp_path / "new0.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [v for (v,) in db.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == list(range(1, len(versions) + 1))  # every migration applied once


def test_writers_opening_a_new_file_at_the_same_instant_all_open(tmp_path: Path) -> None:
    """The same, with the start of each writer (open_writer: WAL, then the migrations) released at one instant by a
    barrier, on ten new files: before the WAL pragma was retried, about one file in three failed."""
    for attempt in range(10):
        path = tmp_path / f"race{attempt}.db"
        start = threading.Barrier(3)
        failures: list[BaseException] = []

        def open_one(path: Path = path, start: threading.Barrier = start,
                     failures: list[BaseException] = failures) -> None:
            start.wait()
            try:
                open_writer(path, SqliteConfig()).close()
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []


async def test_two_writers_append_to_one_direct_conversation_gap_free(tmp_path: Path, writers: str) -> None:
    async with shared(tmp_path / "pica.db", writers=writers) as (a, b):
        alice = await a.create_user("alice", "hash", 0)
        bob = await b.create_user("bob", "hash", 0)  # a user made through the other store
        conversation = f"d:{alice}:{bob}"

        async def send(store: SqliteStore, cmid: str) -> AppendResult:
            sender, recipient = (alice, bob) if store is a else (bob, alice)
            return await store.append_direct(DirectAppend(conversation, sender, recipient, cmid, body(cmid), 1))

        per_store = await burst([a, b], send)
        assert_gap_free(per_store)
        total = 2 * SENDERS * EACH
        # Each store reads every message, the other writer's included, at the seq its writer was told.
        for store, reader in ((a, alice), (b, bob)):
            page = await store.history(reader, conversation, after=None, before=None, limit=1000)
            assert [m.seq for m in page.messages] == list(range(1, total + 1))
            acked = {r.seq: r for results in per_store for r in results}
            assert all(acked[m.seq].ts == m.ts for m in page.messages)
        summary = (await b.list_conversations(bob, limit=10, before_ts=None))[0]
        assert (summary.conversation_id, summary.last_seq) == (conversation, total)


async def test_two_writers_append_to_one_group_gap_free(tmp_path: Path, writers: str) -> None:
    async with shared(tmp_path / "pica.db", writers=writers) as (a, b):
        alice, bob = [await a.create_user(name, "hash", 0) for name in ("alice", "bob")]
        change = await a.create_group(alice, "team", [bob], 1, 10)
        assert change.notice is not None
        group = change.notice.conversation_id
        base = change.notice.seq  # the creation notice holds the first seqs

        async def send(store: SqliteStore, cmid: str) -> AppendResult:
            return await store.append_group(GroupAppend(group, alice if store is a else bob, cmid, body(cmid), 2))

        per_store = await burst([a, b], send)
        assert_gap_free(per_store, base + 1)
        page = await b.history(bob, group, after=base, before=None, limit=1000)
        assert [m.seq for m in page.messages] == list(range(base + 1, base + 1 + 2 * SENDERS * EACH))


async def test_one_client_id_through_both_stores_is_stored_once(tmp_path: Path, writers: str) -> None:
    """A client retrying on another worker (its connection moved) while the first send is in flight: the same
    (sender, client id) through both writers at once is one message; the later commit answers the original."""
    async with shared(tmp_path / "pica.db", writers=writers) as (a, b):
        alice, bob = [await a.create_user(name, "hash", 0) for name in ("alice", "bob")]
        conversation = f"d:{alice}:{bob}"

        def retry(cmid: str) -> DirectAppend:
            return DirectAppend(conversation, alice, bob, cmid, body(cmid), 5)

        pairs = await asyncio.gather(*(asyncio.gather(a.append_direct(retry(f"m{i}")), b.append_direct(retry(f"m{i}")))
                                       for i in range(100)))
        for first, second in pairs:
            assert (first.seq, first.ts) == (second.seq, second.ts)
            assert sorted([first.duplicate, second.duplicate]) == [False, True]
        assert sorted(first.seq for first, _ in pairs) == list(range(1, 101))
        page = await b.history(bob, conversation, after=None, before=None, limit=1000)
        assert sorted(m.client_msg_id for m in page.messages) == sorted(f"m{i}" for i in range(100))
        # Both a retry answered by the other writer and a late one: still the original.
        again = await b.append_direct(retry("m7"))
        assert again.duplicate and again.seq == pairs[7][0].seq


async def test_a_store_reads_what_the_other_committed_at_once(tmp_path: Path, writers: str) -> None:
    """No read is served from a snapshot or a cache older than the other writer's last ack: the reader threads and
    the event loop's reader (sessions) each see it at once."""
    async with shared(tmp_path / "pica.db", writers=writers) as (a, b):
        alice, bob = [await a.create_user(name, "hash", 0) for name in ("alice", "bob")]
        conversation = f"d:{alice}:{bob}"
        for i in range(20):
            writer, reader = (a, b) if i % 2 else (b, a)
            sent = await writer.append_direct(DirectAppend(conversation, alice, bob, f"r{i}", body(f"r{i}"), i))
            page = await reader.history(bob, conversation, after=sent.seq - 1, before=None, limit=10)
            assert [m.client_msg_id for m in page.messages] == [f"r{i}"]
            session = f"session-{i}"
            await writer.create_session(SessionRecord(session, alice, i, i, 10**15, "", ""), 100, 0)
            assert session in await reader.session_states([session])
            await writer.revoke_session(alice, session, i, "test")
            state = (await reader.session_states([session]))[session]
            assert state.revoked


async def test_stores_opened_together_rebuild_a_stale_search_index_once(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A file whose search index an older tokenizer built: the stores opening it together rebuild it one at a time
    (sqlite._rebuild_lock), so every message is indexed once, not once per store. (A message a transaction, so that
    the rebuilds of this small file last as long as those of a large one, and would overlap.)"""
    monkeypatch.setattr(search, "REINDEX_BATCH", 1)
    path = tmp_path / "pica.db"
    async with shared(path, 1) as (first,):
        alice, bob = [await first.create_user(name, "hash", 0) for name in ("alice", "bob")]
        words = document({"text": "hello"})
        await asyncio.gather(*(first.append_direct(DirectAppend(f"d:{alice}:{bob}", alice, bob, f"h{i}", body("hello"),
                                                                i, words)) for i in range(200)))
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE search_index SET version = 0")
    async with shared(path, 3) as stores:
        found = await stores[2].search(bob, "hello", conversation_id=None, limit=100)  # the newest 100
        assert len(found) == 100
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM messages_fts").fetchone()[0] == 200

