"""``pica serve --workers 2``: two processes share one pair of ports (SO_REUSEPORT); two users whose connections the
kernel gave to different workers chat, so their messages cross the cluster bus between the workers."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from pica.client import PicaHttp
from tests.cluster.conftest import Cluster, eventually, register
from tests.cluster.workers import connect_on_worker, workers_of

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]


async def test_two_workers_share_a_port_and_messages_cross_between_them(cluster: Cluster) -> None:
    (server,) = cluster.start("w", extra=["--workers", "2"])
    assert len(workers_of(server)) == 2
    alice, bob = await asyncio.gather(register(server.url, "alice"), register(server.url, "bob"))

    async with PicaHttp(server.url, token=alice.token) as http:
        async def both_listed() -> bool:
            return {n.node_id for n in await http.gateway()} == {"w-w0", "w-w1"}

        await eventually(both_listed, 5.0, "both workers in the gateway list")

    a, a_worker = await connect_on_worker(server, alice, None)
    b, b_worker = await connect_on_worker(server, bob, a_worker)
    try:
        assert a_worker != b_worker
        for i in range(5):
            await a.send(bob.user_id, {"text": f"hi {i}"}, client_msg_id=uuid.uuid4().hex)
            got = await b.next_message(timeout=5)
            assert got.body == {"text": f"hi {i}"} and got.sender == alice.user_id
            await b.send(alice.user_id, {"text": f"hello {i}"}, client_msg_id=uuid.uuid4().hex)
            back = await a.next_message(timeout=5)
            assert back.body == {"text": f"hello {i}"} and back.sender == bob.user_id
        assert [m.seq for m in [got, back]] == [9, 10]
    finally:
        await a.close()
        await b.close()


async def test_the_supervisor_leaves_no_temporary_folder_behind(cluster: Cluster, tmp_path: Path) -> None:
    """The workers' ready files live in a temporary folder of the supervisor's: a server restarted daily must not
    leave one per start behind."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (server,) = cluster.start("t", extra=["--workers", "2"], env={"TMPDIR": str(scratch)})
    assert [p.name[:13] for p in scratch.iterdir()] == ["pica-workers-"]  # in use while it runs
    assert server.terminate() == 0
    assert list(scratch.iterdir()) == []
