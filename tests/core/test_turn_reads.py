"""TurnReads: the reads of one loop turn, or of a delay, answered by one read of many keys."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from pica.core.turn_reads import TurnBatch, TurnReads


class Reads:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def read_many(self, keys: list[int]) -> Mapping[int, str]:
        self.batches.append(keys)
        return {k: f"v{k}" for k in keys if k >= 0}


async def test_the_gets_of_one_turn_share_one_read() -> None:
    reads = Reads()
    turn = TurnReads(reads.read_many, 64)
    first = [turn.get(k) for k in (1, 2, 1, -1)]
    assert await asyncio.gather(*first) == ["v1", "v2", "v1", None]
    assert await turn.get(3) == "v3"
    assert reads.batches == [[1, 2, -1], [3]]


async def test_with_a_delay_gets_of_later_turns_join_the_read() -> None:
    reads = Reads()
    turn = TurnReads(reads.read_many, 64, delay=1.0)
    first = turn.get(1)
    await asyncio.sleep(0)  # a later loop turn, well within the delay
    await asyncio.sleep(0)
    second = turn.get(2)
    assert list(await asyncio.gather(first, second)) == ["v1", "v2"]
    assert reads.batches == [[1, 2]]


async def test_a_full_read_does_not_wait_out_the_delay() -> None:
    """With an hour's delay, only the limit can start these reads (the test's timeout fails it otherwise)."""
    reads = Reads()
    turn = TurnReads(reads.read_many, 3, delay=3600.0)
    full = [turn.get(k) for k in (1, 2, 3)]
    assert await asyncio.gather(*full) == ["v1", "v2", "v3"]
    more = [turn.get(k) for k in (4, 5, 6, 7)]
    assert await asyncio.gather(*more[:3]) == ["v4", "v5", "v6"]
    assert reads.batches == [[1, 2, 3], [4, 5, 6]]
    assert not more[3].done()  # alone in its read: it waits for company
    more[3].cancel()


@pytest.mark.parametrize("delay", [0.0, 3600.0])
async def test_a_batch_started_now_starts_once(delay: float) -> None:
    started: list[dict[int, str]] = []
    batch: TurnBatch[int, str] = TurnBatch(started.append, 64, delay)
    gathering = batch.gathering()
    gathering[1] = "a"
    batch.added(gathering)
    batch.start_now()
    assert started == [{1: "a"}]
    batch.start_now()  # nothing gathering: nothing to start
    await asyncio.sleep(0)
    assert started == [{1: "a"}]  # its scheduled start was cancelled
    later = batch.gathering()  # a new batch
    assert later is not gathering and later == {}
