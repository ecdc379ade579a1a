"""The durable job queue, written once for both dialects (see :mod:`pica.store.txn`).

**The outbox.** Job rows are inserted by the very transaction that stores what they follow: :func:`appends` wraps
the batch of client messages, :func:`after` any other write (recall/edit, group change, new account). So a crash
either keeps the message and its jobs or neither; a message that was acked always has its side work queued. Which
rows a write makes is :mod:`pica.store.job_rules`; with no rules the wrappers are not used at all (the hot path pays
one branch).

**Order.** Jobs run concurrently and in no particular order, except ``stream`` jobs (the event stream), which run
one at a time per conversation, in commit order (see ``_DUE``).

**The queue.** A job is ``queued`` (due at ``run_at``), ``running`` (claimed; ``run_at`` is then the lease's end, after
which another worker may claim it again) or ``dead`` (out of attempts: an operator retries or drops it). A job that
succeeds is deleted. Every claim counts an attempt, and the attempt number fences the outcome: a worker whose lease
ran out cannot finish a job someone else claimed since. On PostgreSQL claims take ``FOR UPDATE SKIP LOCKED`` so
workers of every node share the queue without waiting for each other; on SQLite they go through the one writer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Final, TypeVar

import msgspec

from pica.store import bots, job_rules, messages
from pica.store.append_rules import Append, Outcome
from pica.store.base import (
    AppendResult,
    GroupChange,
    JobOutcome,
    JobRecord,
    JobRules,
    JobStats,
    MessageRecord,
    WebhookEndpoint,
)
from pica.store.job_rules import Event, JobRow
from pica.store.txn import Dialect, Read, Statement, Txn, Write

T = TypeVar("T")

_events_json: Final = msgspec.json.Encoder().encode
_events_decode: Final = msgspec.json.Decoder(list[str]).decode


# --------------------------------------------------------------------------------------------------------- outbox


def appends(requests: Sequence[Append], searches: Sequence[str | None], rules: JobRules | None) -> Txn[list[Outcome]]:
    """The batch of client messages (messages.append_batch), plus a ``message.created`` job for each stored message
    and subscribed endpoint when there are rules. Both backends' write paths call this."""
    if rules is None:
        return messages.append_batch(requests, searches)
    return _appends_with_jobs(requests, searches, rules)


def _appends_with_jobs(requests: Sequence[Append], searches: Sequence[str | None],
                       rules: JobRules) -> Txn[list[Outcome]]:
    outcomes = yield from messages.append_batch(requests, searches)
    events = job_rules.created(requests, outcomes) if rules.events else []
    rows = job_rules.rows_for(rules, events)
    if rules.previews:
        rows += job_rules.preview_rows(requests, outcomes)
    if rules.bots and events:
        rows += yield from bots.bot_rows(rules.bots, events)
    yield from insert(rows, requests[0].ts)
    return outcomes


def after(make: Callable[[], Txn[T]], rules: JobRules, events: Callable[[T], list[Event]], now_ms: int) -> Txn[T]:
    """Run a write transaction, then insert the jobs of what it did, in the same transaction. ``events`` is a
    module-level function of its result (the whole thing is pickled to the SQLite writer process)."""
    result = yield from make()
    happened = events(result)
    rows = job_rules.rows_for(rules, happened)
    created = [event for event in happened if event.type == "message.created"]  # a linked send (protocol 28)
    if rules.bots and created:
        rows += yield from bots.bot_rows(rules.bots, created)
    yield from insert(rows, now_ms)
    return result


def with_jobs(make: Callable[[], Txn[T]], rules: JobRules | None, events: Callable[[T], list[Event]],
              now_ms: int) -> Callable[[], Txn[T]]:
    """``make``, or ``make`` followed by its jobs when there are rules."""
    if rules is None:
        return make
    return partial(after, make, rules, events, now_ms)


def event_events(outcome: tuple[AppendResult, MessageRecord]) -> list[Event]:
    return job_rules.changed(*outcome)


def group_events(change: GroupChange) -> list[Event]:
    return job_rules.group_changed(change)


def group_list_events(changes: list[GroupChange]) -> list[Event]:
    """A deleted account leaving its groups: each group's notices (owner changed, dissolved, member left)."""
    return [event for change in changes for event in job_rules.group_changed(change)]


def user_events(username: str, ts: int, user_id: int) -> list[Event]:
    return job_rules.user_created(user_id, username, ts)


def users_events(usernames: Sequence[str], ts: int, user_ids: list[int | None]) -> list[Event]:
    """A bulk creation's events: one per account made (a taken name made none)."""
    return [event for name, user_id in zip(usernames, user_ids, strict=True) if user_id is not None
            for event in job_rules.user_created(user_id, name, ts)]


def insert(rows: Sequence[JobRow], now_ms: int) -> Txn[None]:
    if rows:
        n = len(rows)
        yield Write("insert_jobs", ([r.key for r in rows], [r.kind for r in rows], [r.target for r in rows],
                                    [r.payload for r in rows], [now_ms + r.delay_ms for r in rows], [now_ms] * n))


# --------------------------------------------------------------------------------------------------------- queue


def _job(row: Sequence[Any]) -> JobRecord:
    return JobRecord(row[0], row[1], row[2], row[3], bytes(row[4]), row[5], row[6], row[7], row[8], row[9])


def claim(now_ms: int, lease_ms: int, limit: int) -> Txn[list[JobRecord]]:
    rows = yield Read("claim_jobs", (now_ms, now_ms + lease_ms, limit))
    return sorted((_job(r) for r in rows), key=lambda j: (j.created_at, j.job_id))


def finish(outcomes: Sequence[JobOutcome]) -> Txn[int]:
    done = [o for o in outcomes if o.done]
    again = [o for o in outcomes if not o.done]
    changed = 0
    if done:
        changed += yield Write("delete_jobs", ([o.job_id for o in done], [o.attempts for o in done]))
    if again:
        changed += yield Write("requeue_jobs", ([o.job_id for o in again], [o.attempts for o in again],
                                                ["dead" if o.dead else "queued" for o in again],
                                                [o.run_at for o in again], [o.error[:1000] for o in again]))
    return int(changed)


def list_jobs(state: str | None, limit: int, after_id: int) -> Txn[list[JobRecord]]:
    return [_job(r) for r in (yield Read("list_jobs", (state, after_id, limit)))]


def retry_dead(job_ids: list[int] | None, now_ms: int) -> Txn[int]:
    if job_ids is None:
        return int((yield Write("retry_all_dead", ([now_ms],))))
    return int((yield Write("retry_dead", (job_ids, [now_ms] * len(job_ids)))))


def drop_dead(job_ids: list[int] | None) -> Txn[int]:
    if job_ids is None:
        return int((yield Write("drop_all_dead", ([0],))))
    return int((yield Write("drop_dead", (job_ids,))))


def stats() -> Txn[JobStats]:
    counts = {state: (n, oldest) for state, n, oldest in (yield Read("job_counts", ()))}
    queued = counts.get("queued", (0, None))
    return JobStats(queued[0], counts.get("running", (0, None))[0], counts.get("dead", (0, None))[0], queued[1])


# --------------------------------------------------------------------------------------------------------- endpoints


def add_webhook(endpoint: WebhookEndpoint) -> Txn[None]:
    yield Write("insert_webhook", ([endpoint.endpoint_id], [endpoint.url], [endpoint.secret],
                                   [_events_json(list(endpoint.events)).decode()], [endpoint.created_at]))


def list_webhooks() -> Txn[list[WebhookEndpoint]]:
    return [WebhookEndpoint(r[0], r[1], r[2], tuple(_events_decode(r[3])), r[4], bool(r[5]))
            for r in (yield Read("list_webhooks", ()))]


def remove_webhook(endpoint_id: str) -> Txn[bool]:
    return bool((yield Write("delete_webhook", ([endpoint_id],))))


def disable_webhook(endpoint_id: str) -> Txn[None]:
    yield Write("disable_webhook", ([endpoint_id],))


_COLUMNS: Final = "job_id, key, kind, target, payload, state, attempts, run_at, created_at, last_error"
_DUE: Final = (
    "state <> 'dead' AND run_at <= {now} AND (kind <> 'stream' OR NOT EXISTS (SELECT 1 FROM jobs p"
    " WHERE p.kind = 'stream' AND p.target = jobs.target AND p.job_id < jobs.job_id))"
)
"""Due jobs. A stream job is due only at the head of its chain (no older job of its conversation left, dead ones
included): a conversation's events are published one at a time, in the order their commits wrote them (on both
backends a conversation's rows are inserted under its lock, so job_id order is commit order)."""

SQLITE: Final[Dialect] = {
    "insert_jobs": Statement(
        "INSERT INTO jobs (key, kind, target, payload, run_at, created_at) VALUES (?, ?, ?, ?, ?, ?)"
    ),
    # The writer is the only one claiming, so no lock is needed beyond its transaction.
    "claim_jobs": Statement(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, run_at = ?2 WHERE job_id IN"
        f" (SELECT job_id FROM jobs WHERE {_DUE.format(now='?1')} ORDER BY run_at, job_id LIMIT ?3)"
        f" RETURNING {_COLUMNS}"
    ),
    "delete_jobs": Statement("DELETE FROM jobs WHERE job_id = ? AND attempts = ? AND state = 'running'"),
    "requeue_jobs": Statement(
        "UPDATE jobs SET state = ?3, run_at = ?4, last_error = ?5 WHERE job_id = ?1 AND attempts = ?2"
        " AND state = 'running'"
    ),
    "list_jobs": Statement(
        f"SELECT {_COLUMNS} FROM jobs WHERE (?1 IS NULL OR state = ?1) AND job_id > ?2 ORDER BY job_id LIMIT ?3"
    ),
    "retry_dead": Statement(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_at = ?2 WHERE job_id = ?1 AND state = 'dead'"
    ),
    "retry_all_dead": Statement("UPDATE jobs SET state = 'queued', attempts = 0, run_at = ?1 WHERE state = 'dead'"),
    "drop_dead": Statement("DELETE FROM jobs WHERE job_id = ? AND state = 'dead'"),
    "drop_all_dead": Statement("DELETE FROM jobs WHERE state = 'dead' AND ?1 = 0"),
    "job_counts": Statement(
        "SELECT state, count(*), min(created_at) FROM jobs GROUP BY state"
    ),
    "insert_webhook": Statement(
        "INSERT INTO webhook_endpoints (endpoint_id, url, secret, events, created_at) VALUES (?, ?, ?, ?, ?)"
    ),
    "list_webhooks": Statement(
        "SELECT endpoint_id, url, secret, events, created_at, disabled FROM webhook_endpoints ORDER BY created_at,"
        " endpoint_id"
    ),
    "delete_webhook": Statement("DELETE FROM webhook_endpoints WHERE endpoint_id = ?"),
    "disable_webhook": Statement("UPDATE webhook_endpoints SET disabled = 1 WHERE endpoint_id = ?"),
}

POSTGRES: Final[Dialect] = {
    "insert_jobs": Statement(
        "INSERT INTO jobs (key, kind, target, payload, run_at, created_at)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bigint[], $6::bigint[])"
    ),
    # SKIP LOCKED: workers on every node claim at once without waiting on each other's rows.
    "claim_jobs": Statement(
        "UPDATE jobs j SET state = 'running', attempts = j.attempts + 1, run_at = $2 FROM"
        f" (SELECT job_id FROM jobs WHERE {_DUE.format(now='$1')} ORDER BY run_at, job_id LIMIT $3"
        " FOR UPDATE SKIP LOCKED) c WHERE j.job_id = c.job_id"
        " RETURNING j.job_id, j.key, j.kind, j.target, j.payload, j.state, j.attempts, j.run_at, j.created_at,"
        " j.last_error"
    ),
    "delete_jobs": Statement(
        "DELETE FROM jobs j USING unnest($1::bigint[], $2::int[]) AS k(job_id, attempts)"
        " WHERE j.job_id = k.job_id AND j.attempts = k.attempts AND j.state = 'running'"
    ),
    "requeue_jobs": Statement(
        "UPDATE jobs j SET state = k.state, run_at = k.run_at, last_error = k.error"
        " FROM unnest($1::bigint[], $2::int[], $3::text[], $4::bigint[], $5::text[])"
        " AS k(job_id, attempts, state, run_at, error)"
        " WHERE j.job_id = k.job_id AND j.attempts = k.attempts AND j.state = 'running'"
    ),
    "list_jobs": Statement(
        f"SELECT {_COLUMNS} FROM jobs WHERE ($1::text IS NULL OR state = $1) AND job_id > $2 ORDER BY job_id LIMIT $3"
    ),
    "retry_dead": Statement(
        "UPDATE jobs j SET state = 'queued', attempts = 0, run_at = k.now FROM unnest($1::bigint[], $2::bigint[])"
        " AS k(job_id, now) WHERE j.job_id = k.job_id AND j.state = 'dead'"
    ),
    "retry_all_dead": Statement(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_at = k.now FROM unnest($1::bigint[]) AS k(now)"
        " WHERE state = 'dead'"
    ),
    "drop_dead": Statement(
        "DELETE FROM jobs j USING unnest($1::bigint[]) AS k(job_id) WHERE j.job_id = k.job_id AND j.state = 'dead'"
    ),
    "drop_all_dead": Statement(
        "DELETE FROM jobs USING unnest($1::int[]) AS k(z) WHERE state = 'dead' AND k.z = 0"
    ),
    "job_counts": Statement("SELECT state, count(*), min(created_at) FROM jobs GROUP BY state"),
    "insert_webhook": Statement(
        "INSERT INTO webhook_endpoints (endpoint_id, url, secret, events, created_at)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])"
    ),
    "list_webhooks": Statement(
        "SELECT endpoint_id, url, secret, events, created_at, disabled FROM webhook_endpoints ORDER BY created_at,"
        " endpoint_id"
    ),
    "delete_webhook": Statement(
        "DELETE FROM webhook_endpoints w USING unnest($1::text[]) AS k(id) WHERE w.endpoint_id = k.id"
    ),
    "disable_webhook": Statement(
        "UPDATE webhook_endpoints w SET disabled = true FROM unnest($1::text[]) AS k(id) WHERE w.endpoint_id = k.id"
    ),
}
