"""TurnReads: the reads of one loop turn, or of a delay, answered by one read of many keys."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest

from pica.config import SqliteConfig
from pica.core.turn_reads import TurnBatch, TurnReads
from pica.store.base import SessionRecord, SessionState
from pica.store.sqlite import SqliteStore


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


async def turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_in_a_stream_a_get_waits_for_company_and_a_lone_one_does_not() -> None:
    """busy_delay: a socket authentication's session read. The first get after a quiet moment is read at the end
    of its turn; gets that follow a read closer than busy_delay wait for each other (here an hour: only the limit
    can start them)."""
    reads = Reads()
    turn = TurnReads(reads.read_many, 2, busy_delay=3600.0)
    assert await turn.get(1) == "v1"  # nothing read before it: a quiet moment
    second = turn.get(2)  # right after a read started: in a stream
    await turns()
    assert not second.done() and reads.batches == [[1]]
    third = turn.get(3)  # fills the batch of two: it starts at once
    assert list(await asyncio.gather(second, third)) == ["v2", "v3"]
    assert reads.batches == [[1], [2, 3]]


async def test_after_a_quiet_moment_a_get_reads_at_once_again() -> None:
    """Only the time since the last read decides: no assertion here depends on how fast the machine runs turns."""
    reads = Reads()
    turn = TurnReads(reads.read_many, 64, busy_delay=0.05)
    assert await turn.get(1) == "v1"
    await asyncio.sleep(0.1)  # longer than busy_delay since the last read started
    lone = turn.get(2)
    await turns()
    assert lone.done() and lone.result() == "v2"
    assert reads.batches == [[1], [2]]


async def test_a_storm_of_session_reads_shares_a_few_reads(tmp_path: Path) -> None:
    """The story the setting is for: 50 connects of distinct users arriving a turn apart read their sessions in a
    few reads of the SQLite store, not in 50."""
    store = SqliteStore(tmp_path / "pica.db", SqliteConfig(writer="thread"))
    await store.open()
    try:
        created = await store.create_users([f"u{i}" for i in range(50)], "x", 0)
        users = [user for user in created if user is not None]
        sessions = [SessionRecord(f"s{i}", user, 0, 0, 2**40, "", "") for i, user in enumerate(users)]
        await store.create_sessions(sessions, 50, 0)
        asked: list[int] = []
        read_many = store.session_states

        async def counted(ids: list[str]) -> Mapping[str, SessionState]:
            asked.append(len(ids))
            return await read_many(ids)

        states = TurnReads(counted, 256, busy_delay=0.05)
        pending = []
        for record in sessions:  # one connect per loop turn, as a storm's sockets arrive
            pending.append(states.get(record.session_id))
            await asyncio.sleep(0)
        found = await asyncio.gather(*pending)
        assert [s.user_id for s in found if s is not None] == users
        assert sum(asked) == 50 and len(asked) < 10, asked
    finally:
        await store.close()
