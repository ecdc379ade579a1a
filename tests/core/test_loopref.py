"""LoopRef: the running loop, remembered, and looked up again once that loop has closed."""

from __future__ import annotations

import asyncio

import pytest

from pica.core.loopref import LoopRef


def test_it_answers_the_running_loop_and_follows_the_next_one_after_a_close() -> None:
    ref = LoopRef()

    async def ask() -> tuple[asyncio.AbstractEventLoop, asyncio.AbstractEventLoop]:
        return ref(), asyncio.get_running_loop()

    first_loop = asyncio.new_event_loop()
    try:
        seen, running = first_loop.run_until_complete(ask())
        assert seen is running
    finally:
        first_loop.close()

    second_loop = asyncio.new_event_loop()
    try:
        seen, running = second_loop.run_until_complete(ask())
        assert seen is running
        assert seen is not first_loop
    finally:
        second_loop.close()


def test_outside_a_loop_it_fails_as_asyncio_does() -> None:
    with pytest.raises(RuntimeError):
        LoopRef()()
