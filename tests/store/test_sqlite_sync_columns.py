"""The SQLite page read of one conversation as columns (``messages._sqlite_columns``), with the bodies as stored; and
``sync_after`` in seq order whatever order the aggregate gives (SQLite promises none before 3.44)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import msgspec
import pytest

from pica.store import messages
from pica.store.base import DirectAppend, SyncPage
from pica.store.sqlite import SqliteStore

BODIES = [{"text": f"m{seq} é \" \\ \n"} if seq % 2 else {"custom": {"n": [seq, {"x": None}]}} for seq in range(1, 8)]


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE messages (conversation_id TEXT NOT NULL, seq INTEGER NOT NULL, sender INTEGER NOT NULL,"
               " client_msg_id TEXT NOT NULL, ts INTEGER NOT NULL, body TEXT NOT NULL,"
               " PRIMARY KEY (conversation_id, seq)) WITHOUT ROWID")
    db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)",
                   [("d:1:2", seq, 1 + seq % 2, f'c"{seq}', 1_000 + seq, msgspec.json.encode(body).decode())
                    for seq, body in enumerate(BODIES, start=1)])
    yield db
    db.close()


def expected(after: int, limit: int, until: int) -> list[object]:
    seqs = [s for s in range(after + 1, until + 1)][:limit]
    return [(seqs, [1 + s % 2 for s in seqs], [f'c"{s}' for s in seqs], [1_000 + s for s in seqs],
             [BODIES[s - 1] for s in seqs], None)]


def columns(conn: sqlite3.Connection, after: int, limit: int, until: int) -> list[object]:
    seqs, senders, ids, tss, bodies, flags = messages._sqlite_columns(conn, (9, "d:1:2", after, limit, until))[0]
    return [(seqs, senders, ids, tss, msgspec.json.decode(bodies), flags)]


@pytest.mark.parametrize(("after", "limit", "until"), [(0, 100, 7), (2, 3, 7), (5, 10, 6), (7, 10, 7), (0, 1, 7)])
def test_a_conversations_part_of_a_page_comes_as_columns_in_seq_order(
        conn: sqlite3.Connection, after: int, limit: int, until: int) -> None:
    assert columns(conn, after, limit, until) == expected(after, limit, until)


async def test_columns_out_of_order_are_read_again_as_rows(sqlite_store: SqliteStore,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """An aggregate that came out of seq order (forced here by a descending subquery) is not trusted: the page is
    read again as rows, in order, hidden messages still tombstones."""
    alice, bob = [await sqlite_store.create_user(name, "hash", 0) for name in ("alice", "bob")]
    for seq, body in enumerate(BODIES, start=1):
        await sqlite_store.append_direct(DirectAppend("d:1:2", alice, bob, f"m{seq}", msgspec.json.encode(body), seq))
    await sqlite_store.hide_message(bob, "d:1:2", 3, 50)
    backwards = messages._SQLITE_SYNC_COLUMNS.replace("ORDER BY m.seq LIMIT", "ORDER BY m.seq DESC LIMIT")
    assert backwards != messages._SQLITE_SYNC_COLUMNS
    monkeypatch.setattr(messages, "_SQLITE_SYNC_COLUMNS", backwards)
    assert columns_of(await sqlite_store.sync_after(bob, [("d:1:2", 1, 7)], 4)) == [2, 3, 4, 5]
    page = await sqlite_store.sync_after(bob, [("d:1:2", 0, 7)], 100)
    assert not page.more and columns_of(page) == list(range(1, 8))
    assert [m.body for m in page.messages] == [{"deleted": True} if s == 3 else BODIES[s - 1] for s in range(1, 8)]
    assert [m.client_msg_id for m in page.messages] == [f"m{s}" for s in range(1, 8)]


def columns_of(page: SyncPage) -> list[int]:
    return [m.seq for m in page.messages]
