"""Sockets per client address: one address holds at most ``limits.max_connections_per_address`` sockets on the HTTP
and TCP ports together (idle keep-alive HTTP connections included); the next one is answered at once (HTTP 429 JSON,
or a TCP ``error`` + ``close`` 4005) and closed, and a slot frees as soon as one of the address's sockets closes.
Run at the default cap, which the rest of the suite raises (tests/conftest.py, TEST_LIMITS_ENV)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import msgspec

from pica.app import PicaServer
from pica.config import LimitsConfig
from pica.protocol.framing import HEADER
from tests.conftest import make_config
from tests.prometheus import scrape

WAIT = 5.0

KEEP_ALIVE_GET = b"GET /healthz HTTP/1.1\r\nHost: pica\r\n\r\n"


async def read_http_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines if line)}
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


async def read_tcp_frames(reader: asyncio.StreamReader) -> list[dict[str, object]]:
    """Frames up to EOF."""
    frames = []
    while header := await reader.read(HEADER.size):
        (length,) = HEADER.unpack(header)
        frames.append(msgspec.msgpack.decode(await reader.readexactly(length)))
    return frames


async def test_one_address_gets_its_cap_of_sockets_on_both_ports_then_a_clear_refusal(tmp_path: Path) -> None:
    cap = LimitsConfig().max_connections_per_address
    assert cap == 256  # the default a public node runs with
    config = make_config(tmp_path)
    server = PicaServer(dataclasses.replace(config, limits=dataclasses.replace(config.limits,
                                                                                max_connections_per_address=cap)))
    await server.start()
    held: list[asyncio.StreamWriter] = []
    try:
        async with asyncio.timeout(30):
            # Half of the cap: HTTP keep-alive connections, each served once and left open.
            for _ in range(cap // 2):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
                writer.write(KEEP_ALIVE_GET)
                assert (await read_http_response(reader))[0] == 200
                held.append(writer)
            # The other half: TCP gateway sockets that have not authenticated yet.
            for _ in range(cap - cap // 2):
                held.append((await asyncio.open_connection("127.0.0.1", server.tcp_port))[1])
            services = server.services
            assert services is not None
            while services.address_slots.held("127.0.0.1") < cap:  # the last accepts may still be on their way
                await asyncio.sleep(0.01)

        # One more on the HTTP port: a 429 the client can read and act on, and the socket is closed.
        async with asyncio.timeout(WAIT):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
            writer.write(KEEP_ALIVE_GET)
            status, headers, body = await read_http_response(reader)
            assert await reader.read() == b""  # closed after the answer
            writer.close()
        assert status == 429
        assert headers["retry-after"] == "5" and headers["content-type"] == "application/json; charset=utf-8"
        error = json.loads(body)
        assert error["code"] == "rate_limited" and error["retry_after"] == 5.0
        assert "too many connections from this address" in error["message"]

        # One more on the TCP port: an error frame, then close 4005 (reconnect later), then EOF.
        async with asyncio.timeout(WAIT):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
            frames = await read_tcp_frames(reader)
            writer.close()
        assert [frame["t"] for frame in frames] == ["error", "close"]
        assert frames[0]["code"] == "rate_limited" and frames[0]["retry_after"] == 5.0
        assert frames[1]["code"] == 4005

        # A socket of the address closes: its slot is free again, and /metrics counted both refusals.
        held.pop().close()
        async with asyncio.timeout(WAIT):
            while services.address_slots.held("127.0.0.1") >= cap:
                await asyncio.sleep(0.01)
            metrics = await scrape(f"http://127.0.0.1:{server.http_port}")
        assert metrics.value("pica_connections_refused_total") == 2
        assert metrics.value("pica_refusals_total", limit="limits.max_connections_per_address") == 2
    finally:
        for writer in held:
            writer.close()
        await server.stop()


async def test_the_caps_are_lifted_with_the_rate_limits(tmp_path: Path) -> None:
    """``rate_limits = "off"`` (benchmarks) lifts the socket caps too."""
    config = make_config(tmp_path)
    server = PicaServer(dataclasses.replace(
        config, rate_limits="off",
        limits=dataclasses.replace(config.limits, max_connections_per_address=2, max_sessions_per_user=1)))
    await server.start()
    held = []
    try:
        async with asyncio.timeout(WAIT):
            for _ in range(4):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
                writer.write(KEEP_ALIVE_GET)
                assert (await read_http_response(reader))[0] == 200
                held.append(writer)
        services = server.services
        assert services is not None
        assert (services.address_slots.limit, services.max_sessions_per_user) == (0, 0)
    finally:
        for writer in held:
            writer.close()
        await server.stop()
