"""The hub's timer sweeper: every connection is checked once per interval, a slice at a time, so that a node holding
tens of thousands of connections never holds its event loop for a whole pass."""

from __future__ import annotations

import asyncio
import itertools
import time

from pica.errors import PicaError
from pica.gateway.hub import SWEEP_SLICE, Hub
from pica.protocol.close_codes import CloseCode
from pica.protocol.outbound import OutboundFrame


class Timed:
    """A connection as the sweeper sees it: it only records when its timers were checked."""

    def __init__(self) -> None:
        self.checked: list[float] = []

    user_id = 0
    login_session = ""
    closed = False
    transport_name = "tcp"
    timers_due = 0.0  # always due: every pass looks at it

    def buffered(self) -> int:
        return 0

    def push(self, frame: OutboundFrame) -> None:
        raise AssertionError("the sweeper pushes nothing itself")

    def close(self, code: CloseCode, reason: str) -> None:
        raise AssertionError("nothing is due")

    def fail(self, error: PicaError, code: CloseCode) -> None:
        raise AssertionError("nothing is due")

    def check_timers(self, now: float, now_s: float) -> None:
        self.checked.append(now)


async def test_each_connection_is_checked_once_per_interval_in_slices_spread_over_it() -> None:
    hub = Hub()
    conns = [Timed() for _ in range(SWEEP_SLICE * 4 - 7)]  # four slices, the last one short
    for conn in conns:
        hub.track(conn)
    slices: list[float] = []

    def monotonic() -> float:
        slices.append(time.monotonic())
        return slices[-1]

    interval = 0.4
    sweeper = asyncio.create_task(hub.run_sweeper(interval, monotonic, time.time))
    try:
        async with asyncio.timeout(5):
            while len(slices) < 4 or any(not c.checked for c in conns):
                await asyncio.sleep(0.01)
    finally:
        sweeper.cancel()
    assert len(slices) == 4, "one clock reading per slice"
    assert all(len(c.checked) == 1 for c in conns), "each connection exactly once in the pass"
    per_slice = [sum(1 for c in conns if c.checked[0] == at) for at in slices]
    assert per_slice == [SWEEP_SLICE] * 3 + [SWEEP_SLICE - 7]
    # The slices are spread over the interval (a quarter of it apart), not run back to back.
    gaps = [b - a for a, b in itertools.pairwise(slices)]
    assert min(gaps) >= interval / 4 * 0.8, gaps


async def test_a_connection_that_arrives_during_a_pass_is_checked_at_the_next_slice() -> None:
    hub = Hub()
    for _ in range(SWEEP_SLICE * 4):
        hub.track(Timed())
    slices: list[float] = []

    def monotonic() -> float:
        slices.append(time.monotonic())
        return slices[-1]

    sweeper = asyncio.create_task(hub.run_sweeper(0.4, monotonic, time.time))
    try:
        async with asyncio.timeout(5):
            while not slices:  # the first slice of the pass has run
                await asyncio.sleep(0.005)
            late = Timed()
            hub.track(late)
            while not late.checked:
                await asyncio.sleep(0.005)
    finally:
        sweeper.cancel()
    # Checked in the same pass (the second of its four slices at the latest), not a pass later.
    assert len(slices) <= 3, slices


async def test_a_connection_whose_timers_are_not_due_is_skipped() -> None:
    """The sweeper looks only at connections whose ``timers_due`` has come (an idle connection's next deadline is a
    heartbeat away, ten ticks at the defaults)."""
    hub = Hub()
    due, later = Timed(), Timed()
    later.timers_due = time.monotonic() + 3600
    for conn in (due, later):
        hub.track(conn)
    sweeper = asyncio.create_task(hub.run_sweeper(0.02, time.monotonic, time.time))
    try:
        async with asyncio.timeout(5):
            while len(due.checked) < 3:
                await asyncio.sleep(0.01)
    finally:
        sweeper.cancel()
    assert later.checked == []
