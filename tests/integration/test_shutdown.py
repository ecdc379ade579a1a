"""SIGTERM drains: in-flight sends finish and are acked, clients are told to reconnect (4000), the process exits 0."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from pica.client import PicaConnection, PicaHttp, ServerClosed
from pica.client.connection import RequestFailed
from pica.protocol.close_codes import CloseCode
from tests.conftest import ServerProcess, new_user, start_server_process


async def test_sigterm_closes_clients_with_reconnect_code(tmp_path: Path,
                                                          server_process_factory: list[ServerProcess]) -> None:
    server = start_server_process(tmp_path / "data")
    server_process_factory.append(server)
    alice, bob = await new_user(server.url), await new_user(server.url)
    tcp = await PicaConnection.open(server.url, alice.token, transport="tcp", tcp_port=server.tcp_port)
    ws = await PicaConnection.open(server.url, bob.token, transport="ws")
    acked = []

    async def keep_sending() -> None:
        with contextlib.suppress(ServerClosed, RequestFailed, ConnectionError, asyncio.TimeoutError):
            for i in range(100_000):
                acked.append(await tcp.send(bob.user_id, {"text": f"{i}"}, client_msg_id=f"s{i}"))

    sender = asyncio.create_task(keep_sending())
    while len(acked) < 50:
        await asyncio.sleep(0.01)
    exit_code = await asyncio.to_thread(server.terminate)
    await asyncio.wait_for(sender, 10)
    closed_tcp = await _closed(tcp)
    closed_ws = await _closed(ws)
    await tcp.close()
    await ws.close()
    assert exit_code == 0
    assert closed_tcp.code == CloseCode.SERVER_SHUTDOWN
    assert closed_ws.code == CloseCode.SERVER_SHUTDOWN

    restarted = start_server_process(tmp_path / "data")
    server_process_factory.append(restarted)
    async with PicaHttp(restarted.url, token=bob.token) as http:
        history = await http.history(acked[0].conversation_id, after_seq=0, limit=100)
        newest = await http.history(acked[0].conversation_id, before_seq=2**40, limit=1)
    assert history["messages"][0]["client_msg_id"] == "s0"
    assert newest["messages"][0]["seq"] >= acked[-1].seq


async def _closed(conn: PicaConnection) -> ServerClosed:
    with contextlib.suppress(asyncio.TimeoutError):
        async with asyncio.timeout(5):
            while conn.closed is None:
                await asyncio.sleep(0.02)
    assert conn.closed is not None
    return conn.closed
