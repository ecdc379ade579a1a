"""Heartbeat rules over real sockets (protocol section 16), on every transport and encoding: the server pings a
connection it has been silent on, whatever the client sends; a bare ``pong`` (known by its bytes, not decoded) and
a ``pong`` with a ``ref`` both count as traffic for the idle timeout, and both count against the connection's rate.
Timers are short (heartbeat 0.2 s, idle timeout 0.5 s) so that the stories take a second or two."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pica.client import Login, PicaConnection, ServerClosed
from pica.protocol import frames as f
from tests.conftest import TEST_RATES, Node, make_config, new_user, running

TRANSPORTS = ["tcp", "ws", "ws-msgpack"]
WAIT = 10.0  # an upper bound on a story, never reached on a healthy server
HEARTBEAT, IDLE = 0.2, 0.5


@pytest.fixture
async def quick(tmp_path: Path) -> AsyncIterator[Node]:
    async with node_of(tmp_path) as node:
        yield node


@contextlib.asynccontextmanager
async def node_of(tmp_path: Path, requests_per_connection: str | None = None) -> AsyncIterator[Node]:
    """A node with short heartbeat timers and the suite's rates, ``requests_per_connection`` optionally changed."""
    config = make_config(tmp_path, heartbeat_interval=HEARTBEAT, idle_timeout=IDLE, auth_timeout=2.0)
    if requests_per_connection is not None:
        config = dataclasses.replace(config, rates=dataclasses.replace(
            TEST_RATES, requests_per_connection=requests_per_connection))
    async with running(config) as node:
        yield node


async def ready_wire(node: Node, login: Login, transport: str) -> Any:
    """A raw wire, authenticated: frames go out exactly as written and nothing is answered for us."""
    wire = await PicaConnection.dial(node.url, transport=transport, tcp_port=node.tcp_port)  # type: ignore[arg-type]
    await wire.write(f.Auth(token=login.token))
    async with asyncio.timeout(WAIT):
        assert isinstance(await wire.read(), f.Ready)
    return wire


async def frames_until(wire: Any, enough: int, answer: f.Pong | None, frames: list[Any] | None = None
                       ) -> list[Any]:
    """Read until ``enough`` pings came (answering each with ``answer`` unless None); every frame read, also into
    ``frames`` if given (what was read before the connection ended)."""
    frames = [] if frames is None else frames
    async with asyncio.timeout(WAIT):
        while sum(isinstance(frame, f.Ping) for frame in frames) < enough:
            frame = await wire.read()
            frames.append(frame)
            if isinstance(frame, f.Ping) and answer is not None:
                await wire.write(answer)
    return frames


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("pong", [f.Pong(), f.Pong(ref=7)], ids=["bare", "with-ref"])
async def test_a_client_answering_pings_outlives_many_idle_timeouts(quick: Node, transport: str,
                                                                   pong: f.Pong) -> None:
    wire = await ready_wire(quick, await new_user(quick.url), transport)
    try:
        # Ten pings are at least 2 s of a connection whose only traffic is its pongs: four idle timeouts.
        frames = await frames_until(wire, 10, pong)
        assert all(isinstance(frame, f.Ping) for frame in frames), frames  # no error, no close
        assert all(frame.id is None for frame in frames)  # the server's pings carry no id
        await wire.write(f.Ping(id=3))  # and the connection still answers
        async with asyncio.timeout(WAIT):
            while not isinstance(answer := await wire.read(), f.Pong):
                assert isinstance(answer, f.Ping)
        assert answer.ref == 3
    finally:
        await wire.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_client_that_does_not_answer_is_closed_as_idle(quick: Node, transport: str) -> None:
    wire = await ready_wire(quick, await new_user(quick.url), transport)
    frames: list[Any] = []
    try:
        with pytest.raises(ServerClosed) as closed:
            await frames_until(wire, 1_000, None, frames)
    finally:
        await wire.close()
    code = next((frame.code for frame in frames if isinstance(frame, f.Close)), closed.value.code)
    assert code == 4001
    assert any(isinstance(frame, f.Ping) for frame in frames)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_talking_client_is_still_pinged_when_the_server_is_silent(quick: Node, transport: str) -> None:
    """Traffic from the client does not stand for a ping: the ping is how the client knows the server is there
    (it treats twice the heartbeat interval of silence as a dead connection), so a client whose frames get no
    answer (here bare pongs, three per heartbeat interval) is pinged all the same."""
    wire = await ready_wire(quick, await new_user(quick.url), transport)

    async def chatter() -> None:
        while True:
            await wire.write(f.Pong())
            await asyncio.sleep(HEARTBEAT / 3)

    talking = asyncio.create_task(chatter())
    try:
        frames = await frames_until(wire, 3, None)
        assert all(isinstance(frame, f.Ping) for frame in frames), frames
    finally:
        talking.cancel()
        await wire.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_connection_the_server_keeps_writing_to_is_not_pinged(quick: Node, transport: str) -> None:
    """The server pings only a connection it has been silent on: one that gets an answer (a pong to its own ping)
    every third of an interval is never pinged over ten intervals."""
    wire = await ready_wire(quick, await new_user(quick.url), transport)
    frames: list[Any] = []
    try:
        for i in range(30):
            await wire.write(f.Ping(id=i))
            async with asyncio.timeout(WAIT):
                while not isinstance(frame := await wire.read(), f.Pong):
                    frames.append(frame)
            frames.append(frame)
            await asyncio.sleep(HEARTBEAT / 3)
    finally:
        await wire.close()
    assert [frame.ref for frame in frames] == list(range(30)), "only the answers: no ping"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("pong", [f.Pong(), f.Pong(ref=7)], ids=["bare", "with-ref"])
async def test_pongs_count_against_the_connection_rate(tmp_path: Path, transport: str, pong: f.Pong) -> None:
    """A bare pong skips decoding, not the rate: a flood of them is refused past the connection's burst."""
    async with node_of(tmp_path, requests_per_connection="5/10s") as node:
        wire = await ready_wire(node, await new_user(node.url), transport)
        try:
            for _ in range(12):
                await wire.write(pong)
            async with asyncio.timeout(WAIT):
                while not isinstance(frame := await wire.read(), f.Error):
                    assert isinstance(frame, f.Ping)
            assert frame.code == "rate_limited"
        finally:
            await wire.close()
