"""``pica serve --workers 2`` on the embedded store: no PostgreSQL, no Redis. The workers share the SQLite file and
the supervisor's hub; users whose connections the kernel gave to different workers chat, see each other come and
go, and a worker killed with -9 loses nothing acked, is reaped at once and started again."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from pica.client import Login, PicaConnection, PicaHttp
from pica.client.connection import RequestFailed
from pica.protocol import frames as f
from pica.store.sqlite_files import probe
from tests.cluster.conftest import eventually, register
from tests.cluster.workers import connect_on_worker, workers_of
from tests.conftest import ServerProcess, start_server_process

pytestmark = [pytest.mark.timeout(120)]

WAIT = 10.0


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    server = await asyncio.to_thread(start_server_process, tmp_path / "data", 0, 0, ["--workers", "2"])
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            await asyncio.to_thread(server.terminate)


async def settles(conn: PicaConnection, user_id: int, online: bool) -> None:
    """Presence frames about ``user_id`` until they go quiet with the user ``online`` or not. Quiet, not the next
    one: finding a connection on another worker opens and closes some on the same one first, each announced."""
    deadline = time.monotonic() + WAIT
    state: bool | None = None
    while True:
        try:
            event: f.Presence = await conn.next_event(f.Presence, 0.5)
        except TimeoutError:
            if state is online:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"user {user_id} not {'online' if online else 'offline'} within {WAIT} s "
                                     f"(last seen: {state})") from None
            continue
        if event.user_id == user_id:
            state = event.online


async def next_new(conn: PicaConnection) -> f.Msg:
    """The next message but the one that made the two users peers (each side's first sync brings it)."""
    while True:
        message = await conn.next_message(timeout=WAIT)
        if message.seq > 1:
            return message


async def test_two_workers_share_one_sqlite_file_and_their_users_chat_across_them(workers: ServerProcess) -> None:
    assert len(workers_of(workers)) == 2
    alice, bob = await asyncio.gather(register(workers.url, "alice"), register(workers.url, "bob"))
    async with PicaHttp(workers.url, token=alice.token) as http:
        first = await http.send(bob.user_id, uuid.uuid4().hex, {"text": "hi over HTTP"})  # makes them peers

        async def both_listed() -> bool:
            return len({n.node_id for n in await http.gateway()}) == 2

        await eventually(both_listed, 5.0, "both workers in the gateway list")

    b, b_worker = await connect_on_worker(workers, bob, None)
    a, a_worker = await connect_on_worker(workers, alice, b_worker)
    try:
        assert a_worker != b_worker
        await settles(b, alice.user_id, True)  # alice's first device anywhere, on the other worker
        for i in range(5):
            await a.send(bob.user_id, {"text": f"hi {i}"}, client_msg_id=uuid.uuid4().hex)
            got = await next_new(b)
            assert got.body == {"text": f"hi {i}"} and got.sender == alice.user_id
            await b.send(alice.user_id, {"text": f"hello {i}"}, client_msg_id=uuid.uuid4().hex)
            back = await next_new(a)
            assert back.body == {"text": f"hello {i}"} and back.sender == bob.user_id
        assert (first["seq"], got.seq, back.seq) == (1, 10, 11)

        # A group: its frames cross on the group's channel, to the worker holding the other member.
        async with PicaHttp(workers.url, token=alice.token) as http:
            group = await http.request("POST", "/v1/groups", json={"name": "team", "members": [bob.user_id]})
            notice = await b.next_message(timeout=WAIT)  # bob was added: the notice reaches him on his worker
            assert notice.conversation_id == group["conversation_id"]
            await http.request("POST", "/v1/messages", json={"group_id": group["group_id"],
                                                            "client_msg_id": uuid.uuid4().hex,
                                                            "body": {"text": "to the team"}})
        said = await b.next_message(timeout=WAIT)
        assert (said.body, said.conversation_id, said.seq) == ({"text": "to the team"}, group["conversation_id"],
                                                               notice.seq + 1)
    finally:
        await a.close()
    await settles(b, alice.user_id, False)  # her last device anywhere left
    await b.close()


async def test_a_worker_killed_with_minus_9_is_reaped_at_once_and_started_again(workers: ServerProcess) -> None:
    alice, bob = await asyncio.gather(register(workers.url, "alice"), register(workers.url, "bob"))
    async with PicaHttp(workers.url, token=alice.token) as http:
        await http.send(bob.user_id, uuid.uuid4().hex, {"text": "hi"})
    b, b_worker = await connect_on_worker(workers, bob, None)
    a, a_worker = await connect_on_worker(workers, alice, b_worker)
    try:
        await settles(b, alice.user_id, True)
        acked = [await a.send(bob.user_id, {"text": f"m{i}"}, client_msg_id=f"m{i}") for i in range(20)]
        psutil.Process(a_worker).send_signal(signal.SIGKILL)
        # The hub saw the worker's connection close: bob's worker announces alice offline, with no TTL to wait.
        await settles(b, alice.user_id, False)

        async def two_workers_again() -> bool:
            return len(workers_of(workers)) == 2 and a_worker not in {p.pid for p in workers_of(workers)}

        await eventually(two_workers_again, 30.0, "the killed worker started again")
        again = await reconnect(workers, alice)
        try:
            # Nothing acked was lost; re-sending the same ids creates nothing new.
            for i in (0, 19):
                repeat = await again.send(bob.user_id, {"text": f"m{i}"}, client_msg_id=f"m{i}")
                assert (repeat.conversation_id, repeat.seq) == (acked[i].conversation_id, acked[i].seq)
            async with PicaHttp(workers.url, token=bob.token) as http:
                page = await http.history(acked[0].conversation_id, after_seq=0, limit=100)
            assert [m["seq"] for m in page["messages"]] == list(range(1, 22))
        finally:
            await again.close()
    finally:
        await a.close()
        await b.close()


def shared_writer(server: ServerProcess) -> psutil.Process:
    (writer,) = [p for p in psutil.Process(server.proc.pid).children() if "--listen" in p.cmdline()]
    return writer


async def test_the_shared_writer_killed_with_minus_9_is_started_again_and_loses_nothing_acked(
        workers: ServerProcess) -> None:
    alice, bob = await asyncio.gather(register(workers.url, "alice"), register(workers.url, "bob"))
    writer = shared_writer(workers)
    a = await reconnect(workers, alice)
    try:
        acked = {}
        for i in range(30):
            if i == 10:
                writer.send_signal(signal.SIGKILL)
            for _ in range(100):  # the client's retry of a retryable refusal, with the same id
                try:
                    acked[i] = await a.send(bob.user_id, {"text": f"m{i}"}, client_msg_id=f"m{i}")
                    break
                except RequestFailed as exc:
                    assert exc.code == "store_unavailable", exc
                    await asyncio.sleep(0.1)
        assert sorted(acked) == list(range(30))
        assert shared_writer(workers).pid != writer.pid  # its supervisor started another
        assert [acked[i].seq for i in range(30)] == list(range(1, 31))  # one each, no gap, none doubled
    finally:
        await a.close()


async def test_a_supervisor_killed_with_minus_9_takes_its_workers_and_their_lock_with_it(
        workers: ServerProcess) -> None:
    alice, bob = await asyncio.gather(register(workers.url, "alice"), register(workers.url, "bob"))
    async with PicaHttp(workers.url, token=alice.token) as http:
        sent = await http.send(bob.user_id, "kept", {"text": "kept"})
    group = psutil.Process(workers.proc.pid).children()
    assert len(group) == 3  # two workers and the shared writer
    workers.kill9()
    # Its children inherited the database's lock: no second server may open the file while they run.
    assert probe(workers.data_dir / "pica.db").held_by

    async def all_gone() -> bool:
        return not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in group)

    await eventually(all_gone, 20.0, "the orphaned workers and writer exited")
    again = await asyncio.to_thread(start_server_process, workers.data_dir)  # the file is free again, intact
    try:
        async with PicaHttp(again.url, token=bob.token) as http:
            page = await http.history(sent["conversation_id"], after_seq=0, limit=10)
        assert [m["client_msg_id"] for m in page["messages"]] == ["kept"]
    finally:
        await asyncio.to_thread(again.terminate)


async def reconnect(server: ServerProcess, who: Login) -> PicaConnection:
    """The first connections after a kill may reach the new worker before it listens: retry briefly."""
    for _ in range(50):
        try:
            return await PicaConnection.open(server.url, who.token, transport="tcp", tcp_port=server.tcp_port)
        except (OSError, ConnectionError):
            await asyncio.sleep(0.1)
    raise AssertionError("could not reconnect")
