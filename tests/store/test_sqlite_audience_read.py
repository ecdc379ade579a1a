"""The presence audience read SQLite answers on the event loop (``SqliteStore.presence_audiences``), within
``sqlite.loop_read_rows``: a batch whose audiences are larger goes to a reader thread, with the same answer; what the
store holds is read every time (a block or a privacy change made by another connection is seen at the next read)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from pica.config import SqliteConfig
from pica.protocol.ids import direct_conversation_id
from pica.store import sessions, social, sql_sqlite
from pica.store.base import DirectAppend, PresenceAudience, Viewer
from pica.store.sqlite import SqliteStore
from pica.store.txn import Txn

BOUND = 20


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "pica.db", SqliteConfig(writer="thread", loop_read_rows=BOUND))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


class Threads:
    """Counts the reads handed to a reader thread."""

    def __init__(self, store: SqliteStore) -> None:
        self.reads = 0
        self._read_txn = store._read_txn
        store._read_txn = self.read_txn  # type: ignore[method-assign]

    async def read_txn(self, make: Callable[[], Txn[Any]], *, snapshot: bool = False) -> Any:
        self.reads += 1
        return await self._read_txn(make, snapshot=snapshot)


async def related(store: SqliteStore, owner: int, contacts: list[int], peers: list[int]) -> None:
    for n, other in enumerate(contacts):
        await store.contact_request(owner, other, n)
        await store.contact_respond(other, owner, True, n)
    for other in peers:
        conversation = direct_conversation_id(owner, other)
        await store.append_direct(DirectAppend(conversation, owner, other, f"m{other}", b'{"text":"hi"}', 1))


async def test_small_audiences_are_read_on_the_loop_and_a_large_one_on_a_thread_with_the_same_answer(
        store: SqliteStore) -> None:
    people = [await store.create_user(f"u{i}", "x", 0) for i in range(40)]
    small, big = people[0], people[1]
    await related(store, small, [people[2]], [people[3]])
    await related(store, big, people[4:30], people[30:])  # 36 viewers: past the bound of 20 rows
    await related(store, people[2], [], [big])  # big is people[2]'s 1:1 peer as well as...
    await store.contact_request(people[2], big, 9)
    await store.contact_respond(big, people[2], True, 9)  # ...an accepted contact: one viewer, a contact
    threads = Threads(store)

    # Each step: the users asked for, then the reads handed to a thread so far. The estimate is the last batch's
    # rows per user (its viewers and settings), 0 at first.
    answers: dict[int, PresenceAudience] = {}
    for users, reads in (
        ([small], 0),  # 0 rows estimated: the loop (3 rows a user)
        ([big, small], 1),  # 6 estimated, 41 found: cut at the bound, read again on a thread (20.5 a user)
        ([small], 2),  # 20.5 estimated, past the bound: a thread at once (3 a user)
        ([small], 2),  # 3 estimated: the loop
        ([big], 3),  # 3 estimated, 38 found: cut, then a thread
        ([people[3]], 4),  # 38 estimated: a thread at once (2 a user)
        ([small], 4),  # the loop again
    ):
        answers.update(await store.presence_audiences(users))
        assert threads.reads == reads, users
    for user, audience in answers.items():
        assert audience == await store.presence_audience(user)
    assert len(answers[big].viewers) == 37 and Viewer(people[2], True) in answers[big].viewers
    assert [v.user_id for v in answers[big].viewers] == sorted(v.user_id for v in answers[big].viewers)


async def test_a_block_or_a_setting_written_by_another_connection_is_seen_at_the_next_read(
        store: SqliteStore) -> None:
    alice, bob, carol = [await store.create_user(name, "x", 0) for name in ("alice", "bob", "carol")]
    await related(store, alice, [bob], [carol])
    assert await store.presence_audiences([alice]) == {
        alice: PresenceAudience("everyone", (Viewer(bob, True), Viewer(carol, False)))}
    other = sqlite3.connect(store.path, isolation_level=None)  # as a CLI command or another worker writes
    try:
        other.execute("INSERT INTO blocks (user_id, blocked_id, created_at) VALUES (?, ?, 1)", (alice, carol))
        assert (await store.presence_audiences([alice]))[alice].viewers == (Viewer(bob, True),)
        other.execute("UPDATE users SET presence = 'nobody' WHERE user_id = ?", (alice,))
        assert (await store.presence_audiences([alice]))[alice].presence == "nobody"
    finally:
        other.close()


async def test_with_no_loop_rows_every_read_goes_to_a_thread(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "pica.db", SqliteConfig(writer="thread", loop_read_rows=0))
    await store.open()
    try:
        alice = await store.create_user("alice", "x", 0)
        threads = Threads(store)
        assert await store.presence_audiences([alice]) == {alice: PresenceAudience("everyone", ())}
        assert await store.session_states(["nope"]) == {}
        assert threads.reads == 2
    finally:
        await store.close()


async def test_a_bounded_run_stops_one_row_past_its_budget(store: SqliteStore) -> None:
    people = [await store.create_user(f"u{i}", "x", 0) for i in range(5)]
    conn = sqlite3.connect(store.path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        # 5 settings rows and no viewers: exactly the budget passes, one less does not.
        assert len(sql_sqlite.run_bounded(conn, social.presence_audiences(people), 5)) == 5
        with pytest.raises(sql_sqlite.TooManyRows):
            sql_sqlite.run_bounded(conn, social.presence_audiences(people), 4)
        with pytest.raises(TypeError):  # a write is no bounded read
            sql_sqlite.run_bounded(conn, social.set_last_seen({people[0]: 1}), 5)
        assert sql_sqlite.run_bounded(conn, sessions.session_states(["nope"]), 0) == {}
        conn.execute("COMMIT")
    finally:
        conn.close()
