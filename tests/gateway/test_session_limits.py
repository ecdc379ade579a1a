"""Sessions per user on one node (``limits.max_sessions_per_user``): past the cap either the user's oldest session
makes room ("oldest", the default) or the new one is refused ("refuse"); either way the session that goes is told
``too_many_sessions`` and closed with 4505, and the others never notice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pica.config import LimitsConfig
from pica.protocol import frames as f
from tests.conftest import Node, new_user, started
from tests.integration.test_bad_input import dial, dial_ready, errors, read_until_closed
from tests.prometheus import scrape

WAIT = 5.0


async def metric(node: Node, name: str) -> float:
    return (await scrape(node.url)).value(name)


async def still_served(wire: Any) -> bool:
    await wire.write(f.Ping(id=7))
    async with asyncio.timeout(WAIT):
        while not isinstance(frame := await wire.read(), f.Pong):
            pass
    return frame.ref == 7


async def test_the_oldest_session_makes_room_for_a_new_one(tmp_path: Path) -> None:
    cap = LimitsConfig().max_sessions_per_user
    assert (cap, LimitsConfig().session_overflow) == (20, "oldest")  # the defaults
    async with started(tmp_path) as node:
        alice = await new_user(node.url)
        wires = [await dial_ready(node, alice, "tcp" if i % 2 else "ws") for i in range(cap)]
        try:
            newest = await dial_ready(node, alice, "tcp")  # one past the cap: it is served...
            wires.append(newest)
            frames, code = await read_until_closed(wires[0])  # ...and the first one is told why it goes
            assert errors(frames) == ["too_many_sessions"]
            assert code == 4505
            assert await still_served(newest) and await still_served(wires[1])
            assert node.server.hub.devices(alice.user_id) == cap
            assert node.server.hub.is_online(alice.user_id)
            assert await metric(node, "pica_sessions_over_limit_total") == 1
        finally:
            for wire in wires:
                await wire.close()


async def test_the_refuse_policy_turns_the_new_session_away(tmp_path: Path) -> None:
    async with started(tmp_path, max_sessions_per_user=2, session_overflow="refuse") as node:
        alice = await new_user(node.url)
        first, second = await dial_ready(node, alice, "ws"), await dial_ready(node, alice, "tcp")
        third = await dial(node, "tcp")
        try:
            await third.write(f.Auth(token=alice.token))
            frames, code = await read_until_closed(third)
            assert errors(frames) == ["too_many_sessions"]
            assert code == 4505
            assert await still_served(first) and await still_served(second)
            assert node.server.hub.devices(alice.user_id) == 2
            # Another user is not affected by alice's count.
            bob = await new_user(node.url)
            await (await dial_ready(node, bob, "tcp")).close()
        finally:
            for wire in (first, second, third):
                await wire.close()
