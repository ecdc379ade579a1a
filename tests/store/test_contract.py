"""The store contract. Every backend runs this suite: the fixture takes a factory per backend (SQLite today;
PostgreSQL joins it with cluster mode)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pica.config import SqliteConfig
from pica.errors import ConversationNotFound, PicaError, UsernameTaken, UserNotFound
from pica.store.base import DirectAppend, Store
from pica.store.sqlite import SqliteStore


@pytest.fixture(params=["sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend: Store = SqliteStore(tmp_path / "pica.db", SqliteConfig(max_batch=64))
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def users(store: Store, *names: str) -> list[int]:
    return [await store.create_user(name, "hash", 0) for name in names]


def msg(conversation: str, sender: int, recipient: int, cmid: str, text: str = "hi", ts: int = 1) -> DirectAppend:
    return DirectAppend(conversation, sender, recipient, cmid, json.dumps({"text": text}).encode(), ts)


async def test_usernames_are_unique(store: Store) -> None:
    (alice,) = await users(store, "alice")
    with pytest.raises(UsernameTaken):
        await store.create_user("alice", "other", 0)
    record = await store.get_user_by_name("alice")
    assert record is not None and record.user_id == alice
    assert await store.get_user(alice) == record
    assert await store.get_user(alice + 100) is None


async def test_concurrent_appends_get_gap_free_seqs_in_submission_order(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    results = await asyncio.gather(*(store.append_direct(msg("d:1:2", alice, bob, f"m{i}")) for i in range(300)))
    assert [r.seq for r in results] == list(range(1, 301))
    page = await store.history(bob, "d:1:2", after=None, before=None, limit=1000)
    assert [m.client_msg_id for m in page.messages] == [f"m{i}" for i in range(300)]


async def test_duplicate_returns_original_and_stores_nothing(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    first = await store.append_direct(msg("d:1:2", alice, bob, "x", "first", ts=10))
    again = await store.append_direct(msg("d:1:2", alice, bob, "x", "changed", ts=20))
    assert (again.seq, again.ts, again.duplicate, first.duplicate) == (first.seq, 10, True, False)
    page = await store.history(alice, "d:1:2", after=None, before=None, limit=10)
    assert [m.body for m in page.messages] == [{"text": "first"}]


async def test_failed_operation_does_not_undo_its_batch(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    ok_before, bad, ok_after = await asyncio.gather(
        store.append_direct(msg("d:1:2", alice, bob, "a")),
        store.append_direct(msg("d:1:999", alice, 999, "b")),
        store.append_direct(msg("d:1:2", alice, bob, "c")),
        return_exceptions=True,
    )
    assert isinstance(bad, UserNotFound)
    assert (ok_before.seq, ok_after.seq) == (1, 2)  # type: ignore[union-attr]
    assert await store.conversation_members("d:1:999") == []


async def test_history_is_for_members_only(store: Store) -> None:
    alice, bob, eve = await users(store, "alice", "bob", "eve")
    await store.append_direct(msg("d:1:2", alice, bob, "a"))
    with pytest.raises(ConversationNotFound):
        await store.history(eve, "d:1:2", after=None, before=None, limit=10)
    with pytest.raises(ConversationNotFound):
        await store.history(eve, "d:404:405", after=None, before=None, limit=10)


async def test_sync_pages_across_conversations(store: Store) -> None:
    alice, bob, carol = await users(store, "alice", "bob", "carol")
    for i in range(5):
        await store.append_direct(msg("d:1:2", alice, bob, f"ab{i}"))
        await store.append_direct(msg("d:2:3", carol, bob, f"cb{i}"))
    seen: list[tuple[str, int]] = []
    cursors: dict[str, int] = {"d:1:2": 1}
    while True:
        page = await store.sync(bob, cursors, 3)
        assert len(page.messages) <= 3
        for m in page.messages:
            seen.append((m.conversation_id, m.seq))
            cursors[m.conversation_id] = m.seq
        if not page.more:
            break
    assert seen == [("d:1:2", s) for s in range(2, 6)] + [("d:2:3", s) for s in range(1, 6)]
    assert (await store.sync(alice, {"d:1:2": 5}, 10)).messages == []


async def test_delivered_cursor_only_moves_forward_and_is_clamped(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    for i in range(3):
        await store.append_direct(msg("d:1:2", alice, bob, f"m{i}"))
    assert await store.mark_delivered(bob, "d:1:2", 2) == 2
    assert await store.mark_delivered(bob, "d:1:2", 1) is None
    assert await store.mark_delivered(bob, "d:1:2", 1_000) == 3  # acking more than was sent
    assert await store.mark_delivered(bob, "d:1:2", 1_000) is None
    assert await store.mark_delivered(999, "d:1:2", 1) is None
    (summary,) = await store.list_conversations(bob, limit=10, before_ts=None)
    assert (summary.conversation_id, summary.last_seq, summary.delivered_seq) == ("d:1:2", 3, 3)


async def test_sqlite_file_is_a_plain_wal_database(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "pica.db")
    await store.open()
    alice, bob = await users(store, "alice", "bob")
    await store.append_direct(msg("d:1:2", alice, bob, "a"))
    await store.close()
    conn = sqlite3.connect(tmp_path / "pica.db")
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT count(*) FROM messages").fetchone() == (1,)
    conn.close()


async def test_an_operation_failing_unexpectedly_fails_alone_and_the_store_goes_on(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    good, bad = await asyncio.gather(
        store.append_direct(msg("d:1:2", alice, bob, "ok")),
        store.append_direct(msg("d:1:x", alice, 2**70, "overflow")),  # no driver stores a 71-bit integer
        return_exceptions=True,
    )
    assert not isinstance(good, BaseException) and good.seq == 1
    assert isinstance(bad, PicaError)
    assert (await store.append_direct(msg("d:1:2", alice, bob, "after"))).seq == 2
