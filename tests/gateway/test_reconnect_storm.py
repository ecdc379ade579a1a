"""A reconnect storm: every client of a node reconnects at the same moment after the node restarts.

The node admits socket authentications at ``limits.connects_per_second`` (bursts of ``limits.connect_burst``): the
ones past the pace wait their turn (at most ``limits.connect_wait``), the ones whose turn is further off are told
``rate_limited`` with a ``retry_after`` and closed with 4006. The story: a few thousand devices hold connections, the
node restarts, they all come back at once without any backoff of their own (the worst case), and every one of them
is ``ready`` again, none timed out, at the configured pace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import cast

import pytest

from pica.client import Login
from pica.gateway.admission import ConnectPace
from pica.protocol import frames as f
from pica.protocol.codec import Encoding, decode_server_frame, encode
from pica.protocol.framing import FrameReader, frame_bytes
from tests.conftest import make_config, new_user, running
from tests.prometheus import scrape

DEVICES = 3_000
USERS = 30
RATE = 250.0
BURST = 50
WAIT = 1.0
"""A pace well under what even a busy machine's storm brings: at most about 300 connects can be waiting, so the
3,000 that come back at once always include some told to come back later."""


class Device(asyncio.Protocol):
    """One device's TCP connection that reconnects the moment it is closed (or at the ``retry_after`` it is told),
    and notes when it is ready and every close code it sees."""

    def __init__(self, login: Login, name: str, port: int) -> None:
        self.auth = frame_bytes(encode(f.Auth(token=login.token, device=name), Encoding.MSGPACK))
        self.port = port
        self.reader = FrameReader(1 << 20)
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.Event()
        self.ready_at = 0.0
        self.retry_after = 0.0
        self.codes: list[int] = []
        self.stopping = False

    async def dial(self) -> None:
        """Connect until the port answers (while the node restarts nobody listens: try again 50 ms later)."""
        loop = asyncio.get_running_loop()
        while not self.stopping:
            try:
                await loop.create_connection(lambda: self, "127.0.0.1", self.port)
                return
            except OSError:
                await asyncio.sleep(0.05)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.auth)

    def data_received(self, data: bytes) -> None:
        for payload in self.reader.feed(data):
            frame = decode_server_frame(payload, Encoding.MSGPACK)
            if isinstance(frame, f.Ready):
                self.ready_at = time.monotonic()
                self.ready.set()
            elif isinstance(frame, f.Error) and frame.code == "rate_limited":
                self.retry_after = frame.retry_after or 0.0
            elif isinstance(frame, f.Close):
                self.codes.append(frame.code)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.reader = FrameReader(1 << 20)
        self.ready.clear()
        if not self.stopping:
            delay, self.retry_after = self.retry_after, 0.0
            asyncio.get_running_loop().call_later(delay, lambda: asyncio.ensure_future(self.dial()))

    def close(self) -> None:
        self.stopping = True
        if self.transport is not None:
            self.transport.close()


async def all_ready(devices: list[Device], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        await asyncio.gather(*(d.ready.wait() for d in devices))


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_every_device_is_back_after_a_restart_at_the_configured_pace(tmp_path: Path) -> None:
    config = make_config(tmp_path, connects_per_second=RATE, connect_burst=BURST, connect_wait=WAIT,
                         max_sessions_per_user=0)
    async with running(config) as node:
        logins = [await new_user(node.url, "storm") for _ in range(USERS)]
        port = node.tcp_port
        config = dataclasses.replace(config, port=node.server.http_port, tcp_port=port)
        devices = [Device(logins[i % USERS], f"d{i}", port) for i in range(DEVICES)]
        for batch in range(0, DEVICES, 250):  # a day's arrivals, not a storm: about the pace
            await asyncio.gather(*(d.dial() for d in devices[batch:batch + 250]))
            await all_ready(devices[:batch + 250], 60)
    # The node is gone: every device was told 4000 and is dialling again, every 50 ms, until the port answers.
    restarted_at = time.monotonic()
    refused_before = sum(d.codes.count(4006) for d in devices)  # the first node's, while they first came
    try:
        async with running(config) as node:
            await all_ready(devices, 120)
            metrics = await scrape(node.url)
            assert node.server.hub.connection_count == DEVICES
    finally:
        for device in devices:
            device.close()
    codes = [code for d in devices for code in d.codes]
    assert 4003 not in codes, "no device may time out while it waits for its turn"
    assert set(codes) <= {4000, 4006}  # the restart, and refusals over the pace: nothing else went wrong
    assert all(4000 in d.codes for d in devices)  # told of the shutdown (again, when they came back during it)
    refused = codes.count(4006) - refused_before
    assert refused > 0, "the storm is larger than the pace lets wait: some were told to come back later"
    assert metrics.value("pica_connects_waited_total") > 0
    assert metrics.value("pica_refusals_total", limit="limits.connects_per_second") == refused
    # The pace held: beyond the burst, no more than RATE authentications a second were admitted.
    readies = sorted(d.ready_at for d in devices)
    assert readies[0] > restarted_at
    assert readies[-1] - readies[0] >= (DEVICES - BURST) / RATE * 0.9


def test_the_pace_lets_a_burst_through_then_queues_then_refuses() -> None:
    pace = ConnectPace(per_second=10.0, burst=3, max_wait=0.5)
    assert [pace.turn(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    waits = [pace.turn(100.0) for _ in range(5)]  # then one every 0.1 s, up to 0.5 s away
    assert waits == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    refused = [-pace.turn(100.0) for _ in range(3)]
    assert pace.refused == 3 and pace.waited == 5
    # Told to come back one interval apart (give or take a jitter of one), from when the queue has room again.
    assert refused[0] == pytest.approx(0.2, abs=0.1)
    assert refused[1] - refused[0] == pytest.approx(0.1, abs=0.1) and refused[2] > refused[1] - 0.1
    assert pace.turn(102.0) == 0.0  # later, the queue has drained


def test_no_pace_when_it_is_off() -> None:
    pace = ConnectPace(per_second=0.0, burst=1, max_wait=0.0)
    assert all(pace.turn(0.0) == 0.0 for _ in range(10_000))
