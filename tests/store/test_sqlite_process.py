"""SQLite with its writer in a process of its own: what happens when either process dies, and what the writer tells
the server when it cannot start. (The store contract runs against this mode too: ``sqlite-process`` in
test_contract.py.)"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from pica.config import SqliteConfig
from pica.errors import MigrationError, StoreUnavailable
from pica.store.base import AppendResult, DirectAppend
from pica.store.sqlite import SqliteStore
from pica.store.sqlite_process import WriterProcess


def msg(sender: int, recipient: int, client_id: str) -> DirectAppend:
    low, high = sorted((sender, recipient))
    return DirectAppend(f"d:{low}:{high}", sender, recipient, client_id, b'{"text":"hi"}', ts=1)


def writer_pid(store: SqliteStore) -> int:
    writer = store._writer
    assert isinstance(writer, WriterProcess) and writer.pid is not None
    return writer.pid


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "pica.db", SqliteConfig(writer="process", max_batch=64))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_writes_commit_in_the_writer_process_and_the_server_reads_them(store: SqliteStore) -> None:
    writer = psutil.Process(writer_pid(store))
    assert writer.ppid() == os.getpid()
    alice = await store.create_user("alice", "hash", 0)
    bob = await store.create_user("bob", "hash", 0)
    sent = await asyncio.gather(*(store.append_direct(msg(alice, bob, f"m{i}")) for i in range(200)))
    assert [r.seq for r in sent] == list(range(1, 201))
    page = await store.history(bob, "d:1:2", after=None, before=None, limit=500)
    assert [m.client_msg_id for m in page.messages] == [f"m{i}" for i in range(200)]


async def test_a_killed_writer_loses_nothing_acked_and_a_new_one_takes_over(store: SqliteStore) -> None:
    """kill -9 of the writer in the middle of a burst: every acked message is in the file, every other send failed
    with a retryable error, and re-sending those (same client ids) once a new writer is up stores each exactly once,
    with no gap in the seqs."""
    alice = await store.create_user("alice", "hash", 0)
    bob = await store.create_user("bob", "hash", 0)
    first_pid = writer_pid(store)
    acked: dict[str, AppendResult] = {}
    failed: list[str] = []

    async def send(client_id: str) -> None:
        try:
            acked[client_id] = await store.append_direct(msg(alice, bob, client_id))
        except StoreUnavailable as exc:
            assert exc.retryable
            failed.append(client_id)

    sends = [asyncio.ensure_future(send(f"m{i}")) for i in range(3000)]
    while len(acked) < 200:
        await asyncio.sleep(0.001)
    os.kill(first_pid, signal.SIGKILL)
    await asyncio.gather(*sends)
    assert acked and failed, "the kill should land in the middle of the burst"

    deadline = time.monotonic() + 10
    while True:  # the store starts a new writer on its own
        try:
            again = await store.append_direct(msg(alice, bob, failed[0]))
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline, "no new writer within 10 s"
            await asyncio.sleep(0.05)
    assert writer_pid(store) != first_pid
    resent = [again, *await asyncio.gather(*(store.append_direct(msg(alice, bob, c)) for c in failed[1:]))]
    assert len(resent) == len(failed)  # a send whose commit the writer made but never answered comes back duplicate
    page = await store.history(bob, "d:1:2", after=None, before=None, limit=5000)
    stored = [m.client_msg_id for m in page.messages]
    assert sorted(stored) == sorted(f"m{i}" for i in range(3000))  # nothing lost, nothing doubled
    assert [m.seq for m in page.messages] == list(range(1, 3001))  # no gap
    for client_id, result in acked.items():
        assert page.messages[result.seq - 1].client_msg_id == client_id


def test_the_writer_exits_when_the_server_is_killed(tmp_path: Path) -> None:
    """kill -9 of the server's process: the writer reads end-of-file, commits what it holds and exits, so no writer
    is left behind holding the database."""
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from pica.config import SqliteConfig\n"
        "from pica.store.sqlite import SqliteStore\n"
        "async def main():\n"
        f"    store = SqliteStore(Path({str(tmp_path / 'pica.db')!r}), SqliteConfig(writer='process'))\n"
        "    await store.open()\n"
        "    print(store._writer.pid, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        writer = psutil.Process(int(server.stdout.readline()))
        server.kill()
        server.wait(10)
        writer.wait(10)  # raises psutil.TimeoutExpired if it lingers
    finally:
        server.kill()
        server.wait()
    conn = sqlite3.connect(tmp_path / "pica.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()


async def test_a_migration_error_in_the_writer_reaches_open_with_its_message(tmp_path: Path) -> None:
    path = tmp_path / "pica.db"
    first = SqliteStore(path, SqliteConfig(writer="process"))
    await first.open()
    await first.close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    conn.close()
    again = SqliteStore(path, SqliteConfig(writer="process"))
    with pytest.raises(MigrationError, match="0001"):
        await again.open()
    await again.close()
