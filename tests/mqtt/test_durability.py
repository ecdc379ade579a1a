"""The MQTT gateway against a real ``python -m pica serve`` process: a PUBACK means the message is stored (kill -9
right after it loses nothing), and a persistent session (3.1.1's clean session 0, 5.0's Clean Start 0 with a
Session Expiry Interval) gets what it missed, in order, from the store after a restart of the node."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.conftest import PASSWORD, ServerProcess, start_server_process
from tests.mqtt.paho_client import Paho, new_user


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(data: Path, started: list[ServerProcess]) -> tuple[ServerProcess, int]:
    port = free_port()
    server = start_server_process(data, extra=["--mqtt-port", str(port)])
    started.append(server)
    return server, port


def stored_ids(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT client_msg_id FROM messages ORDER BY conversation_id, seq")]
    finally:
        conn.close()


@pytest.mark.slow
async def test_kill_9_right_after_a_puback_loses_nothing(tmp_path: Path,
                                                         server_process_factory: list[ServerProcess]) -> None:
    data = tmp_path / "data"
    server, port = serve(data, server_process_factory)
    alice, bob = await new_user(server.url, "a"), await new_user(server.url, "b")
    a = Paho(port, alice.username, PASSWORD)
    assert await asyncio.to_thread(a.connect) == 0
    ids = [f"k-{i}" for i in range(50)]
    try:
        for cmid in ids:  # each waits for its PUBACK
            await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"text": cmid}, cmid)
        server.kill9()  # at once after the last PUBACK
    finally:
        a.client.loop_stop()
    assert stored_ids(data / "pica.db") == ids


PERSISTENT = {
    "3.1.1": {"clean_session": False},
    "5.0": {"clean_session": False, "protocol": mqtt.MQTTv5, "session_expiry": 3600},
}


@pytest.mark.slow
@pytest.mark.parametrize("level", list(PERSISTENT))
async def test_a_persistent_session_gets_what_it_missed_after_a_restart(
        tmp_path: Path, server_process_factory: list[ServerProcess], level: str) -> None:
    data = tmp_path / "data"
    server, port = serve(data, server_process_factory)
    alice, bob = await new_user(server.url, "a"), await new_user(server.url, "b")
    a = Paho(port, alice.username, PASSWORD)
    b = Paho(port, bob.username, PASSWORD, client_id="bob-phone", **PERSISTENT[level])  # type: ignore[arg-type]
    assert await asyncio.to_thread(a.connect) == 0
    assert await asyncio.to_thread(b.connect) == 0
    assert await asyncio.to_thread(b.subscribe, "msg/#") == [1]
    await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"text": "seen"}, "m-0")
    [(_, first)] = await asyncio.to_thread(b.receive, 1)
    assert first["client_msg_id"] == "m-0"
    await asyncio.to_thread(b.close)  # its PUBACK moved the delivered cursor (written at the latest on close)
    for i in range(1, 6):
        await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"text": f"missed {i}"}, f"m-{i}")
    a.close()
    await asyncio.sleep(0.3)
    server.kill9()

    server, port = serve(data, server_process_factory)
    b = Paho(port, bob.username, PASSWORD, client_id="bob-phone", **PERSISTENT[level])  # type: ignore[arg-type]
    assert await asyncio.to_thread(b.connect) == 0
    try:
        assert await asyncio.to_thread(b.subscribe, "msg/#") == [1]
        missed = await asyncio.to_thread(b.receive, 5)
        assert [frame["client_msg_id"] for _, frame in missed] == [f"m-{i}" for i in range(1, 6)]
        assert [frame["seq"] for _, frame in missed] == [2, 3, 4, 5, 6]
        assert b.messages.empty()
    finally:
        b.close()
