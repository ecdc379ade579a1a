"""Slow clients cannot hold sockets: an HTTP request head must be complete ``limits.http_header_timeout`` after the
socket opened or after the previous response, and a gateway socket must be READY ``limits.auth_timeout`` after it
opened, however it trickles bytes meanwhile. Deadlines of 1 s here keep the stories short."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import aiohttp

from pica.protocol.framing import HEADER
from tests.conftest import Node, connect, new_user, started
from tests.gateway.test_connection_limits import KEEP_ALIVE_GET, read_http_response, read_tcp_frames

DEADLINE = 1.0
SLACK = 1.0  # the auth deadline is checked by a sweep every DEADLINE / 4; the rest is a loaded machine's margin


async def closed_after(reader: asyncio.StreamReader, since: float) -> float:
    """Seconds from ``since`` until the server closed the socket (whatever it said first is read and dropped)."""
    try:
        while await reader.read(4096):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - since


async def dribble(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    """One byte every ``every`` seconds, until the data or the socket ends."""
    try:
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
            await asyncio.sleep(every)
    except ConnectionError:
        pass


async def test_an_http_request_head_must_arrive_in_time_even_when_trickled(tmp_path: Path) -> None:
    async with started(tmp_path, http_header_timeout=DEADLINE) as node:
        port = node.server.http_port
        # Says nothing at all.
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
        opened = time.monotonic()
        # Trickles a request line, a byte every 0.1 s: activity does not extend the deadline.
        trickle_reader, trickle = await asyncio.open_connection("127.0.0.1", port)
        trickling = asyncio.ensure_future(dribble(trickle, b"GET /healthz HTTP/1.1\r\nHost: pica\r\nX-Slow: " * 9, 0.1))
        # Is served once, then keeps the connection without a next request: the deadline restarts at the response.
        kept_reader, kept = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.5)
        kept.write(KEEP_ALIVE_GET)
        assert (await read_http_response(kept_reader))[0] == 200
        answered = time.monotonic()
        try:
            async with asyncio.timeout(DEADLINE + 5):
                silent_after, trickle_after, kept_after = await asyncio.gather(
                    closed_after(silent_reader, opened), closed_after(trickle_reader, opened),
                    closed_after(kept_reader, answered))
        finally:
            trickling.cancel()
            for writer in (silent, trickle, kept):
                writer.close()
        assert DEADLINE - 0.1 <= silent_after < DEADLINE + SLACK
        assert DEADLINE - 0.1 <= trickle_after < DEADLINE + SLACK
        assert DEADLINE - 0.1 <= kept_after < DEADLINE + SLACK  # counted from the response, not from the opening


async def test_a_gateway_socket_trickling_a_frame_is_closed_at_the_auth_deadline(tmp_path: Path) -> None:
    async with started(tmp_path, auth_timeout=DEADLINE) as node:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.tcp_port)
        opened = time.monotonic()
        # A frame header announcing 1000 bytes, then its payload one byte every 0.1 s.
        trickling = asyncio.ensure_future(dribble(writer, HEADER.pack(1000) + b"\x00" * 1000, 0.1))
        try:
            async with asyncio.timeout(DEADLINE + 5):
                frames = await read_tcp_frames(reader)
            elapsed = time.monotonic() - opened
        finally:
            trickling.cancel()
            writer.close()
        assert [(frame["t"], frame["code"]) for frame in frames] == [("error", "unauthenticated"), ("close", 4003)]
        assert DEADLINE - 0.1 <= elapsed < DEADLINE + SLACK


async def ack_latencies(node: Node, seconds: float) -> list[float]:
    """A healthy client's round trips meanwhile: a message acked every 20 ms, and a fresh HTTP request each 0.25 s."""
    alice, bob = await new_user(node.url), await new_user(node.url)
    latencies: list[float] = []
    async with await connect(node.url, alice, "ws") as conn, aiohttp.ClientSession() as session:
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            started_at = time.monotonic()
            await conn.send(bob.user_id, {"text": f"still here {i}"})
            latencies.append(time.monotonic() - started_at)
            if i % 12 == 0:
                started_at = time.monotonic()
                async with session.get(node.url + "/healthz", headers={"Connection": "close"}) as resp:
                    assert resp.status == 200
                latencies.append(time.monotonic() - started_at)
            i += 1
            await asyncio.sleep(0.02)
    return latencies


async def test_two_hundred_slow_sockets_from_one_address_are_all_closed_and_a_healthy_client_is_served_meanwhile(
    tmp_path: Path,
) -> None:
    async with started(tmp_path, http_header_timeout=DEADLINE, auth_timeout=DEADLINE) as node:
        baseline = await ack_latencies(node, 0.5)
        opened = time.monotonic()
        slow: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for i in range(200):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", node.server.http_port if i % 2 else node.tcp_port)
            # Half a request line, or half a frame header, then nothing more.
            writer.write(b"GET /v1/ws HT" if i % 2 else HEADER.pack(64)[:2])
            slow.append((reader, writer))
        try:
            async with asyncio.timeout(DEADLINE + 10):
                during, closed = await asyncio.gather(
                    ack_latencies(node, DEADLINE + 0.5),
                    asyncio.gather(*(closed_after(reader, opened) for reader, _ in slow)))
        finally:
            for _, writer in slow:
                writer.close()
        assert max(closed) < DEADLINE + SLACK + 1.0  # every one of them, within a couple of seconds of the deadline
        assert min(closed) >= DEADLINE - 0.1
        # The healthy client kept its pace: its typical round trip stays that of a quiet node.
        assert statistics.median(during) < max(0.05, 5 * statistics.median(baseline))
        assert max(during) < 0.5
