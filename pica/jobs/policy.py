"""What becomes of a job after an attempt: pure, so the worker and the tests share one rule.

Backoff is exponential with full jitter (a random wait between 0 and ``min(backoff_max, backoff_base * 2**(n-1))``
after the n-th attempt), as clients reconnecting to Pica do: a burst of failures against one endpoint spreads its
retries instead of sending them back together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from pica.config import JobsConfig
from pica.store.base import JobOutcome, JobRecord

Kind = Literal["done", "retry", "dead"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A handler's answer for one attempt. ``retry``: may succeed later (timeouts, 5xx, 429); ``dead``: never will
    (other 4xx, an endpoint that is gone); ``done``: delivered, or nothing left to do."""

    kind: Kind
    error: str = ""


DONE = Verdict("done")


def backoff(attempt: int, config: JobsConfig, rand: random.Random) -> float:
    """Seconds to wait after the ``attempt``-th failed attempt (1-based)."""
    bound = min(config.backoff_max, config.backoff_base * 2 ** min(attempt - 1, 62))
    return rand.uniform(0, bound)


def outcome(job: JobRecord, verdict: Verdict, now_ms: int, config: JobsConfig, rand: random.Random) -> JobOutcome:
    """The outcome to record for ``job`` (claimed, so ``job.attempts`` counts this attempt)."""
    if verdict.kind == "done":
        return JobOutcome(job.job_id, job.attempts, done=True)
    if verdict.kind == "dead" or job.attempts >= config.max_attempts:
        return JobOutcome(job.job_id, job.attempts, done=False, run_at=now_ms, dead=True, error=verdict.error)
    delay_ms = int(backoff(job.attempts, config, rand) * 1000)
    return JobOutcome(job.job_id, job.attempts, done=False, run_at=now_ms + delay_ms, error=verdict.error)
