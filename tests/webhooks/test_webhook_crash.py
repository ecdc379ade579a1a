"""kill -9 of a node after its messages were acked and before their webhooks were delivered: after a restart every
acked message's webhook arrives, and the receiver, de-duplicating by ``webhook-id`` as the specification tells it to,
sees each exactly once (it may have received one twice: the attempt in flight when the node died is made again)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from pica.client import PicaConnection
from tests.conftest import ServerProcess, new_user, start_server_process
from tests.webhooks.receiver import SECRET, Received, Receiver, verify, write_config

MESSAGES = 30


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_kill_9_before_the_webhooks_ran_loses_none(tmp_path: Path,
                                                         server_process_factory: list[ServerProcess]) -> None:
    released = asyncio.Event()

    async def hold_until_released(n: int, got: Received) -> int:
        await released.wait()  # the node dies while these wait: none of them is answered
        return 200

    receiver = Receiver(answer=hold_until_released)
    await receiver.start()
    try:
        config = write_config(tmp_path / "pica.toml", receiver.url, concurrency=2, webhook_timeout=1.0, lease=2.0,
                              poll_interval=0.2, backoff_base=0.1, backoff_max=0.5)
        data = tmp_path / "data"
        server = start_server_process(data, extra=["--config", str(config)])
        server_process_factory.append(server)
        alice, bob = await new_user(server.url, "a"), await new_user(server.url, "b")
        conn = await PicaConnection.open(server.url, alice.token, transport="tcp", tcp_port=server.tcp_port)
        acks = await asyncio.gather(*(conn.send(bob.user_id, {"text": f"n{i}"}, client_msg_id=f"m{i}")
                                      for i in range(MESSAGES)))
        await receiver.wait_for(lambda: len(receiver.received) >= 1)  # a delivery is in flight
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
        await conn.close()
        in_flight = len(receiver.received)
        assert in_flight <= 2 + 2  # jobs.concurrency: the rest were still queued
        released.set()

        restarted = start_server_process(data, extra=["--config", str(config)])
        server_process_factory.append(restarted)
        await receiver.wait_for(lambda: len(receiver.unique()) == MESSAGES, timeout=30)
        await asyncio.sleep(1.0)  # nothing more arrives
    finally:
        released.set()
        await receiver.stop()

    unique = receiver.unique()
    assert len(unique) == MESSAGES
    assert sorted(r.json["data"]["seq"] for r in unique.values()) == sorted(a.seq for a in acks)
    for got in receiver.received:
        verify(SECRET, got.headers, got.body)
    repeats = len(receiver.received) - MESSAGES
    assert 0 <= repeats <= in_flight + 2  # at least once: only attempts cut by the crash (or their timeout) again
