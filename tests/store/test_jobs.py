"""The job queue's store contract, on every backend (the ``store`` fixture of test_contract.py): jobs are written in
the transaction of what they follow, claimed once, fenced by their attempt, dead-lettered and replayed."""

from __future__ import annotations

import asyncio
import json

from pica.store.base import (
    EventAppend,
    GroupAction,
    GroupAppend,
    JobOutcome,
    JobRules,
    Store,
    Subscription,
    WebhookEndpoint,
)
from tests.store.test_contract import msg, store, users

__all__ = ["store"]

ALL = JobRules((Subscription("e1", ("*",)),))


async def test_no_rules_no_jobs(store: Store) -> None:
    a, b = await users(store, "alice", "bob")
    await store.append_direct(msg(f"d:{a}:{b}", a, b, "m1"))
    assert await store.list_jobs(None, 10) == []
    stats = await store.job_stats()
    assert (stats.queued, stats.running, stats.dead, stats.oldest_queued_at) == (0, 0, 0, None)


async def test_every_stored_message_makes_one_job_per_endpoint(store: Store) -> None:
    a, b = await users(store, "alice", "bob")
    woken: list[int] = []
    rules = JobRules((Subscription("e1", ("message.*",)), Subscription("e2", ("message.created",)),
                      Subscription("e3", ("group.*",))))
    store.set_job_rules(rules, lambda: woken.append(1))
    conversation = f"d:{a}:{b}"
    results = await asyncio.gather(*(store.append_direct(msg(conversation, a, b, f"m{i}", ts=1000 + i))
                                     for i in range(5)),
                                   store.append_direct(msg(conversation, a, b, "m0")))  # a repeat: no job
    assert results[-1].duplicate
    jobs = await store.list_jobs("queued", 100)
    assert len(jobs) == 10
    assert {j.target for j in jobs} == {"e1", "e2"}
    assert len({(j.target, j.key) for j in jobs}) == 10
    assert jobs[0].key == f"message.created:{conversation}/1"
    payloads = [json.loads(j.payload) for j in jobs if j.target == "e1"]
    assert [p["data"]["seq"] for p in payloads] == [1, 2, 3, 4, 5]
    first = payloads[0]
    assert first["type"] == "message.created"
    assert first["data"] == {"conversation_id": conversation, "seq": 1, "sender": a, "to": b, "client_msg_id": "m0",
                             "ts": 1000, "body": {"text": "hi"}}
    assert first["timestamp"] == "1970-01-01T00:00:01.000Z"
    assert woken
    stats = await store.job_stats()
    assert stats.queued == 10 and stats.oldest_queued_at is not None


async def test_edits_groups_and_users_make_jobs(store: Store) -> None:
    store.set_job_rules(ALL)
    a, b = await users(store, "alice", "bob")
    change = await store.create_group(a, "team", [b], 5, 10)
    group = change.group
    await store.group_action(GroupAction("rename", a, group.group_id, 6, name="crew"))
    await store.append_group(GroupAppend(group.conversation_id, b, "g1", b'{"text":"yo"}', 7))
    await store.append_event(EventAppend("edit", group.conversation_id, b, 3, "e1", 8, "yo!", 120_000))
    await store.delete_account(b, 9)  # leaving the group is a group change like any other
    types = [json.loads(j.payload)["type"] for j in await store.list_jobs(None, 100)]
    assert types == ["user.created", "user.created", "group.created", "group.renamed", "message.created",
                     "message.edited", "group.member_left"]


async def test_claim_fence_retry_dead_and_replay(store: Store) -> None:
    store.set_job_rules(ALL)
    await users(store, "alice")
    claimed = await store.claim_jobs(10_000, 1_000, 10)
    assert [(j.state, j.attempts) for j in claimed] == [("running", 1)]
    assert await store.claim_jobs(10_500, 1_000, 10) == []  # leased
    job = claimed[0]
    again = await store.claim_jobs(11_001, 1_000, 10)  # the lease ran out: claimed again, attempt 2
    assert [(j.job_id, j.attempts) for j in again] == [(job.job_id, 2)]
    # The first claimer's outcome is fenced off.
    assert await store.finish_jobs([JobOutcome(job.job_id, 1, done=True)]) == 0
    assert await store.finish_jobs([JobOutcome(job.job_id, 2, done=False, run_at=20_000, error="500")]) == 1
    assert await store.claim_jobs(19_999, 1_000, 10) == []
    third = await store.claim_jobs(20_000, 1_000, 10)
    assert await store.finish_jobs([JobOutcome(job.job_id, third[0].attempts, done=False, dead=True,
                                               error="410 gone")]) == 1
    assert await store.claim_jobs(10**9, 1_000, 10) == []
    dead = await store.list_jobs("dead", 10)
    assert [(j.job_id, j.last_error, j.attempts) for j in dead] == [(job.job_id, "410 gone", 3)]
    assert (await store.job_stats()).dead == 1
    assert await store.retry_jobs(None, 30_000) == 1
    replay = await store.claim_jobs(30_000, 1_000, 10)
    assert [(j.job_id, j.attempts) for j in replay] == [(job.job_id, 1)]
    assert await store.finish_jobs([JobOutcome(job.job_id, 1, done=True)]) == 1
    assert await store.list_jobs(None, 10) == []


async def test_concurrent_claims_never_share_a_job(store: Store) -> None:
    store.set_job_rules(ALL)
    await users(store, *[f"u{i}" for i in range(20)])
    batches = await asyncio.gather(*(store.claim_jobs(10**13, 60_000, 3) for _ in range(10)))
    ids = [j.job_id for batch in batches for j in batch]
    assert len(ids) == len(set(ids)) == 20


async def test_drop_dead_jobs_and_webhook_endpoints(store: Store) -> None:
    store.set_job_rules(ALL)
    await users(store, "alice", "bob")
    for job in await store.claim_jobs(10**13, 1, 10):
        await store.finish_jobs([JobOutcome(job.job_id, job.attempts, done=False, dead=True)])
    dead = await store.list_jobs("dead", 10)
    assert await store.drop_jobs([dead[0].job_id]) == 1
    assert await store.drop_jobs(None) == 1
    assert await store.list_jobs(None, 10) == []
    endpoint = WebhookEndpoint("wh_1", "https://example.com/hook", "whsec_c2VjcmV0", ("group.*",), 5)
    await store.add_webhook(endpoint)
    assert await store.list_webhooks() == [endpoint]
    await store.disable_webhook("wh_1")
    assert (await store.list_webhooks())[0].disabled
    assert await store.remove_webhook("wh_1")
    assert not await store.remove_webhook("wh_1")


def test_webhook_ids_are_stable_per_endpoint_and_event() -> None:
    from pica.webhooks.signing import webhook_id

    key = "message.created:d:1:2/5"
    assert webhook_id("e1", key) == webhook_id("e1", key) != webhook_id("e2", key)
    assert webhook_id("e1", key) != webhook_id("e1", "message.created:d:1:2/6")


async def test_stream_jobs_run_one_at_a_time_per_conversation_in_commit_order(store: Store) -> None:
    a, b, c = await users(store, "alice", "bob", "carol")
    store.set_job_rules(JobRules((), ("message.*",)))
    ab, ac = f"d:{a}:{b}", f"d:{a}:{c}"
    await asyncio.gather(*(store.append_direct(msg(ab, a, b, f"x{i}")) for i in range(3)),
                         *(store.append_direct(msg(ac, a, c, f"y{i}")) for i in range(2)))
    order: dict[str, list[int]] = {ab: [], ac: []}
    now = 10**13
    while True:
        claimed = await asyncio.gather(*(store.claim_jobs(now, 60_000, 10) for _ in range(3)))
        jobs = [j for batch in claimed for j in batch]
        if not jobs:
            break
        assert len({j.target for j in jobs}) == len(jobs)  # never two of one conversation at once
        for job in jobs:
            assert job.kind == "stream" and job.key == f"{job.target}:{json.loads(job.payload)['data']['seq']}"
            order[job.target].append(json.loads(job.payload)["data"]["seq"])
        # the first attempt fails: the conversation waits for its retry, it does not skip ahead
        failed = [j for j in jobs if j.attempts == 1]
        await store.finish_jobs([JobOutcome(j.job_id, j.attempts, done=False, run_at=now) for j in failed] +
                                [JobOutcome(j.job_id, j.attempts, done=True) for j in jobs if j.attempts > 1])
    assert order == {ab: [1, 1, 2, 2, 3, 3], ac: [1, 1, 2, 2]}
