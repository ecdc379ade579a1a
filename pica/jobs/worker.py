"""A job worker: claims due jobs, runs them, records how they ended.

One loop claims as many jobs as it has free slots (``jobs.concurrency``), each claimed for ``jobs.lease`` seconds,
and runs each in a task through the handler of its kind. It sleeps until woken (a commit on this node queued jobs,
or a slot freed up) or until ``jobs.poll_interval`` passed (jobs queued elsewhere, retries that came due, replays).
Outcomes are written back in one store operation per loop turn, not one per job: on SQLite every write goes through
the one writer, and a worker finishing hundreds of deliveries a second must not cost hundreds of operations.

A handler that raises is a bug: the job is retried like a failed delivery (with the error's type as its last
error), so it cannot block the queue and ends dead after ``jobs.max_attempts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

from pica.config import JobsConfig
from pica.errors import PicaError
from pica.jobs.policy import Verdict, outcome
from pica.store.base import JobOutcome, JobRecord, Store

log = logging.getLogger(__name__)

_WAKE_GRAIN: Final = 0.02
"""Seconds: delayed wake-ups (:meth:`JobWorker.wake_later`) are rounded up to this."""

Handler = Callable[[JobRecord], Awaitable[Verdict]]
"""Runs one attempt of a job of its kind; never raises on purpose (see the module's docstring)."""


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class WorkerCounters:
    """Since the worker started, for /metrics."""

    done: int = 0
    retried: int = 0
    dead: int = 0


class JobWorker:
    def __init__(self, store: Store, handlers: Mapping[str, Handler], config: JobsConfig, *,
                 now_ms: Callable[[], int] = wall_ms, rand: random.Random | None = None) -> None:
        self._store = store
        self._handlers = dict(handlers)
        self._config = config
        self._now_ms = now_ms
        self._rand = rand or random.Random()
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._finished: list[JobOutcome] = []
        self._flushing: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake_slots: set[int] = set()
        self.counters = WorkerCounters()

    def wake(self) -> None:
        """Look at the queue now (cheap and idempotent: called after every commit that may have queued jobs)."""
        self._wake.set()

    def wake_later(self, delay: float) -> None:
        """Look at the queue in ``delay`` seconds, when a job written now with that delay comes due (push jobs), rather
        than at the next poll. Wake-ups are rounded up to ``_WAKE_GRAIN`` so that a burst of commits schedules one
        timer per grain, not one per commit."""
        loop = asyncio.get_running_loop()
        slot = math.ceil((loop.time() + delay) / _WAKE_GRAIN)
        if slot not in self._wake_slots:
            self._wake_slots.add(slot)
            loop.call_at(slot * _WAKE_GRAIN, self._woken_at, slot)

    def _woken_at(self, slot: int) -> None:
        self._wake_slots.discard(slot)
        self._wake.set()

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._main(), name="pica-jobs")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming, give running jobs ``grace`` seconds, and record what ended. Jobs still running then are
        cancelled: they stay claimed until their lease ends, and run again then (at least once)."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._running:
            await asyncio.wait(self._running, timeout=grace)
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.wait(self._running)
        self._flush()
        if self._flushing:
            await asyncio.wait(self._flushing)

    async def _main(self) -> None:
        config = self._config
        lease_ms = int(config.lease * 1000)
        while not self._stopping:
            self._wake.clear()  # before the claim: a wake-up during it is not lost
            free = config.concurrency - len(self._running)
            claimed: list[JobRecord] = []
            if free > 0:
                try:
                    claimed = await self._store.claim_jobs(self._now_ms(), lease_ms, free)
                except PicaError as exc:
                    log.warning("cannot claim jobs: %s", exc)
                except Exception:
                    log.exception("claiming jobs failed")
                for job in claimed:
                    task = asyncio.get_running_loop().create_task(self._run(job))
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
                if claimed and len(claimed) == free:
                    continue  # more may be due: claim again as soon as a slot frees (the wait below ends then)
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(config.poll_interval):
                    await self._wake.wait()

    async def _run(self, job: JobRecord) -> None:
        handler = self._handlers.get(job.kind)
        try:
            if handler is None:
                verdict = Verdict("dead", f"no handler for jobs of kind {job.kind!r}")
            else:
                verdict = await handler(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("job handler failed", extra={"job_id": job.job_id, "kind": job.kind})
            verdict = Verdict("retry", f"handler error: {type(exc).__name__}")
        result = outcome(job, verdict, self._now_ms(), self._config, self._rand)
        if result.done:
            self.counters.done += 1
        elif result.dead:
            self.counters.dead += 1
            log.warning("job is dead", extra={"job_id": job.job_id, "kind": job.kind, "target": job.target,
                                              "attempts": job.attempts, "error": result.error})
        else:
            self.counters.retried += 1
            log.info("job will be retried", extra={"job_id": job.job_id, "kind": job.kind, "target": job.target,
                                                   "attempts": job.attempts, "error": result.error,
                                                   "retry_in_ms": result.run_at - self._now_ms()})
        if not self._finished:
            asyncio.get_running_loop().call_soon(self._flush)
        self._finished.append(result)
        self._wake.set()  # a slot is free

    def _flush(self) -> None:
        if not self._finished:
            return
        outcomes, self._finished = self._finished, []
        task = asyncio.get_running_loop().create_task(self._record(outcomes))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _record(self, outcomes: list[JobOutcome]) -> None:
        try:
            await self._store.finish_jobs(outcomes)
        except Exception as exc:
            # The jobs stay claimed until their lease ends and then run again: at least once, never lost.
            log.warning("cannot record %d job outcomes (%s); they run again after their lease", len(outcomes), exc)
