"""The search backlog (SQLite): a message's search document is written with the message and indexed later, in bulk,
by the writer (pica/store/search.py, flush_backlog). Whatever the timing, a search finds every message acked before
it, an edit or recall is never undone by a late index row, and a crash loses nothing from the index."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import pytest

from pica.config import SqliteConfig
from pica.protocol.tokens import document
from pica.store.base import DirectAppend, EventAppend
from pica.store.sqlite import SqliteStore
from pica.store.sqlite_process import WriterProcess
from pica.store.sqlite_writer import index_backlog

NEVER_MS = 600_000.0
"""A search delay no test outlives: only a search (or a restart) indexes the backlog."""


def say(sender: int, recipient: int, cmid: str, text: str, ts: int = 1) -> DirectAppend:
    body = {"text": text}
    return DirectAppend("d:1:2", sender, recipient, cmid, json.dumps(body).encode(), ts, document(body))


def counts(path: Path) -> tuple[int, int]:
    """(rows in the index, rows waiting in the backlog), read from a connection of the test's own."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        indexed = conn.execute("SELECT count(*) FROM messages_fts").fetchone()[0]
        waiting = conn.execute("SELECT count(*) FROM search_backlog").fetchone()[0]
    return int(indexed), int(waiting)


async def indexed_by_itself(path: Path, messages: int) -> None:
    """Wait up to 5 s for the writer to index ``messages`` documents and empty its backlog, asked by nobody."""
    for _ in range(100):
        if counts(path) == (messages, 0):
            return
        await asyncio.sleep(0.05)
    assert counts(path) == (messages, 0)


async def found(store: SqliteStore, who: int, query: str) -> list[str]:
    return [m.client_msg_id for m in await store.search(who, query, conversation_id=None, limit=50)]


async def sent_then_writer_killed(path: Path, messages: int, text: str) -> tuple[int, int]:
    """Alice sends Bob ``messages`` acked messages, then the writer process is killed with -9 before it can index
    its backlog on its way out: they wait in the backlog of the file at ``path``. Returns (alice, bob)."""
    store = SqliteStore(path, SqliteConfig(writer="process", search_delay_ms=NEVER_MS))
    await store.open()
    alice = await store.create_user("alice", "h", 0)
    bob = await store.create_user("bob", "h", 0)
    await asyncio.gather(*(store.append_direct(say(alice, bob, f"m{i}", text)) for i in range(messages)))
    writer = store._writer
    assert isinstance(writer, WriterProcess) and writer.pid is not None
    os.kill(writer.pid, signal.SIGKILL)
    await asyncio.sleep(0.2)
    await store.close()
    return alice, bob


@pytest.fixture(params=["process", "thread"])
async def opened(request: Any, tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, Path, int, int]]:
    writer: Literal["process", "thread"] = request.param
    path = tmp_path / "pica.db"
    store = SqliteStore(path, SqliteConfig(writer=writer, search_delay_ms=NEVER_MS))
    await store.open()
    alice = await store.create_user("alice", "h", 0)
    bob = await store.create_user("bob", "h", 0)
    try:
        yield store, path, alice, bob
    finally:
        await store.close()


async def test_an_acked_message_waits_in_the_backlog_and_the_next_search_finds_it(
    opened: tuple[SqliteStore, Path, int, int],
) -> None:
    store, path, alice, bob = opened
    await asyncio.gather(*(store.append_direct(say(alice, bob, f"m{i}", f"lunch at noon {i}")) for i in range(3)))
    assert counts(path) == (0, 3)  # acked, not indexed yet: no FTS5 work on the ack's path
    assert sorted(await found(store, bob, "lunch")) == ["m0", "m1", "m2"]
    assert counts(path) == (3, 0)  # the search indexed them first, all in one transaction


async def test_an_edit_or_recall_before_the_index_catches_up_is_what_search_sees(
    opened: tuple[SqliteStore, Path, int, int],
) -> None:
    store, _, alice, bob = opened
    await store.append_direct(say(alice, bob, "a", "apples"))
    await store.append_direct(say(alice, bob, "b", "bananas"))
    await store.append_event(EventAppend("edit", "d:1:2", alice, 1, "e", 2, "cherries", window_ms=10_000))
    await store.append_event(EventAppend("recall", "d:1:2", alice, 2, "r", 3, "", window_ms=10_000))
    assert await found(store, bob, "apples") == []  # the edited text left the backlog with the edit
    assert await found(store, bob, "cherries") == ["a"]
    assert await found(store, bob, "bananas") == []  # recalled before it was ever indexed


async def test_the_writer_indexes_the_backlog_on_its_own_within_the_delay(tmp_path: Path) -> None:
    path = tmp_path / "pica.db"
    store = SqliteStore(path, SqliteConfig(search_delay_ms=20))
    await store.open()
    try:
        alice = await store.create_user("alice", "h", 0)
        bob = await store.create_user("bob", "h", 0)
        await store.append_direct(say(alice, bob, "m", "quiet afterwards"))
        await indexed_by_itself(path, 1)  # nothing else is written: the writer wakes up for the backlog by itself
    finally:
        await store.close()


async def test_a_killed_writer_leaves_its_backlog_to_the_next_one(tmp_path: Path) -> None:
    """kill -9 of the writer process after the acks: the documents are in the backlog, committed with their
    messages, and the next writer indexes them."""
    path = tmp_path / "pica.db"
    _, bob = await sent_then_writer_killed(path, 20, "durable words")
    assert counts(path) == (0, 20)

    again = SqliteStore(path, SqliteConfig(search_delay_ms=NEVER_MS))
    await again.open()
    try:
        await indexed_by_itself(path, 20)  # a new writer indexes what it finds waiting, without being asked
        assert len(await found(again, bob, "durable")) == 20
    finally:
        await again.close()


async def test_the_writer_indexes_a_large_backlog_a_part_per_transaction(tmp_path: Path) -> None:
    """A send waits for the indexing transaction in progress, so the writer indexes at most ``search_batch``
    documents in one; what is left goes in the next turns, not after another delay, even with nothing else written."""
    path = tmp_path / "pica.db"
    alice, bob = await sent_then_writer_killed(path, 10, "parted words")

    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        assert [index_backlog(conn, 4), counts(path)] == [True, (4, 6)]
        assert [index_backlog(conn, 4), counts(path)] == [True, (8, 2)]
        assert [index_backlog(conn, 4), counts(path)] == [False, (10, 0)]

    again = SqliteStore(path, SqliteConfig(search_delay_ms=20, search_batch=3))
    await again.open()
    try:
        await asyncio.gather(*(again.append_direct(say(alice, bob, f"n{i}", "more words")) for i in range(10)))
        await indexed_by_itself(path, 20)
    finally:
        await again.close()


async def test_the_writer_merges_the_index_segments_a_few_pages_per_part(tmp_path: Path) -> None:
    """FTS5's own merging (hundreds of pages inside one indexing transaction) is off; the writer merges a few pages
    after each part instead. Forty parts of one document each leave forty segments unless something merges them."""
    leaves: dict[int, int] = {}
    for merge_pages in (0, 64):
        path = tmp_path / f"merge-{merge_pages}.db"
        await sent_then_writer_killed(path, 40, "segment words")
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
            assert conn.execute("SELECT v FROM messages_fts_config WHERE k = 'automerge'").fetchone() == (0,)
            while index_backlog(conn, 1, merge_pages):
                pass
            leaves[merge_pages] = conn.execute("SELECT count(*) FROM messages_fts_data").fetchone()[0]
        assert counts(path) == (40, 0)
    assert leaves[64] < leaves[0] / 2, leaves  # here 3 against 12 (a crisis merge at 16 segments)
