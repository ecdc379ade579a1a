"""The pure rules of the queue: backoff with full jitter, what a verdict makes of a job."""

from __future__ import annotations

import random

from pica.config import JobsConfig
from pica.jobs.policy import DONE, Verdict, backoff, outcome
from pica.store.base import JobRecord

CONFIG = JobsConfig(backoff_base=1.0, backoff_max=60.0, max_attempts=4)


def job(attempts: int) -> JobRecord:
    return JobRecord(7, "msg_x", "webhook", "e1", b"{}", "running", attempts, 0, 0)


def test_backoff_doubles_up_to_its_cap_with_full_jitter() -> None:
    rand = random.Random(1)
    for attempt, bound in ((1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (500, 60.0)):
        waits = [backoff(attempt, CONFIG, rand) for _ in range(2000)]
        assert all(0 <= w <= bound for w in waits)
        assert max(waits) > 0.9 * bound and min(waits) < 0.1 * bound  # spread over [0, bound]: full jitter


def test_outcomes() -> None:
    rand = random.Random(2)
    assert outcome(job(1), DONE, 1000, CONFIG, rand).done
    again = outcome(job(2), Verdict("retry", "HTTP 500"), 1000, CONFIG, rand)
    assert not again.done and not again.dead and 1000 <= again.run_at <= 3000 and again.error == "HTTP 500"
    assert (again.job_id, again.attempts) == (7, 2)  # the fence: this attempt's number
    last = outcome(job(4), Verdict("retry", "HTTP 500"), 1000, CONFIG, rand)
    assert last.dead  # out of attempts
    assert outcome(job(1), Verdict("dead", "HTTP 404"), 1000, CONFIG, rand).dead
