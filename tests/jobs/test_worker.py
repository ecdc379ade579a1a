"""The job worker's loop on a real SQLite store: how it ends."""

from __future__ import annotations

import asyncio

import pytest

from pica.config import JobsConfig
from pica.jobs.worker import JobWorker
from pica.store.sqlite import SqliteStore

_SETTLE = 0.2
"""Seconds for a started worker to claim from an empty queue (a few ms) and wait for its next wake-up."""


@pytest.fixture
def store(sqlite_store: SqliteStore) -> SqliteStore:
    return sqlite_store


def loop_task() -> asyncio.Task[object]:
    """The worker's loop, found as ``asyncio.run`` finds the tasks it cancels at exit."""
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "pica-jobs" and not t.done()]
    return task


async def test_a_worker_cancelled_as_it_is_woken_ends_cancelled(store: SqliteStore) -> None:
    """The worker's task, cancelled in the loop turn a commit woke it (``wake``, called after every commit that may
    have queued jobs), ends cancelled. On Python 3.11 asyncio.wait_for returned the wake-up and dropped the
    cancellation: the loop polled on for ever, and anything that cancels the tasks left and waits for them (the exit
    of ``asyncio.run``) hung. Each round cancels one loop turn later than the last."""
    for turns in range(3):
        worker = JobWorker(store, {}, JobsConfig(poll_interval=3600))
        worker.start()
        await asyncio.sleep(_SETTLE)
        task = loop_task()
        try:
            worker.wake()
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=2)
            assert task in done, f"the worker outlived its cancellation ({turns} loop turns after its wake-up)"
            assert task.cancelled()
        finally:
            if not task.done():  # a worker that outlived its cancellation still ends on stop()
                await worker.stop(grace=1)
