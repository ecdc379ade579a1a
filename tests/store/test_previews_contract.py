"""Link previews in the store, on every backend: the job written with a message that has a link, the preview
attached (and removed) as an event like an edit, the recall that scrubs it, and the per-URL cache."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from pica.errors import BadRequest, Forbidden
from pica.protocol.tokens import document
from pica.store.base import DirectAppend, EventAppend, JobRules, Store
from pica.store.job_rules import PREVIEW
from tests.store.test_contract import store, users

__all__ = ["store"]  # the fixture, run for every backend

PAGE = {"url": "https://example.org/a", "title": "Example", "description": "An example page"}


def said(conversation: str, sender: int, recipient: int, cmid: str, text: str, ts: int = 1_000) -> DirectAppend:
    body = {"text": text}
    return DirectAppend(conversation, sender, recipient, cmid, json.dumps(body).encode(), ts, document(body))


def preview(conversation: str, author: int, seq: int, fields: dict[str, Any] = PAGE, ts: int = 2_000) -> EventAppend:
    return EventAppend("preview", conversation, author, seq, f"~p:{conversation}:{seq}", ts, preview=fields)


async def bodies(store: Store, reader: int, conversation: str) -> dict[int, dict[str, Any]]:
    page = await store.history(reader, conversation, after=None, before=None, limit=100)
    return {m.seq: m.body for m in page.messages}


async def test_a_message_with_a_link_queues_one_preview_job_when_previews_are_on(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    woken: list[int] = []
    store.set_job_rules(JobRules(previews=True), lambda: woken.append(1))
    await store.append_direct(said("d:1:2", alice, bob, "a", "no link here"))
    await store.append_direct(said("d:1:2", alice, bob, "b", "look: https://example.org/a. and http://other.org"))
    await store.append_direct(said("d:1:2", alice, bob, "b", "look: https://example.org/a. and http://other.org"))
    caption = {"file": {"id": "f1", "name": "plan.pdf"}, "text": "the plan, also at https://example.org/plan"}
    await store.append_direct(DirectAppend("d:1:2", alice, bob, "c", json.dumps(caption).encode(), 1_000,
                                           document(caption)))
    jobs = await store.claim_jobs(10_000, 1_000, 10)
    assert [(j.kind, j.key, j.target) for j in jobs] == [(PREVIEW, "d:1:2/2", "d:1:2"), (PREVIEW, "d:1:2/3", "d:1:2")]
    assert msgspec.json.decode(jobs[0].payload) == {"conversation_id": "d:1:2", "seq": 2, "sender": alice,
                                                    "url": "https://example.org/a"}
    assert len(woken) == 3  # the worker is woken for a message with a link only (and its repeat)
    store.set_job_rules(JobRules())  # previews off: nothing more
    await store.append_direct(said("d:1:2", alice, bob, "d", "https://example.org/b"))
    assert await store.claim_jobs(10_500, 1_000, 10) == []  # (the first is still leased)


async def test_a_preview_is_attached_for_everyone_once_and_the_author_can_remove_it(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    await store.append_direct(said("d:1:2", alice, bob, "a", "see https://example.org/a"))
    result, event = await store.append_event(preview("d:1:2", alice, 1))
    assert (result.seq, result.duplicate, event.sender) == (2, False, alice)
    assert event.body == {"preview": {"seq": 1, **PAGE}}
    again, _ = await store.append_event(preview("d:1:2", alice, 1, ts=3_000))  # the job ran twice
    assert (again.seq, again.duplicate) == (2, True)
    assert (await bodies(store, bob, "d:1:2"))[1] == {"text": "see https://example.org/a", "link_preview": PAGE}
    # Only the author's message gets a preview; a removal decides for good.
    with pytest.raises(Forbidden):
        await store.append_event(preview("d:1:2", bob, 1, ts=3_001))
    removed, _ = await store.append_event(EventAppend("unpreview", "d:1:2", alice, 1, "u1", 4_000))
    assert removed.seq == 3
    read = await bodies(store, bob, "d:1:2")
    assert read[1] == {"text": "see https://example.org/a", "link_preview": {"removed": True}}
    assert read[3] == {"preview": {"seq": 1, "removed": True}}
    with pytest.raises(BadRequest):
        await store.append_event(EventAppend("unpreview", "d:1:2", alice, 1, "u2", 4_001))
    # Still found by what the author wrote, and only that.
    assert [m.seq for m in await store.search(bob, "see", conversation_id=None, limit=10)] == [1]
    assert await store.search(bob, "example page", conversation_id=None, limit=10) == []


async def test_a_preview_removed_before_it_came_is_never_attached(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    await store.append_direct(said("d:1:2", alice, bob, "a", "https://example.org/a"))
    await store.append_direct(said("d:1:2", alice, bob, "b", "no link"))
    await store.append_event(EventAppend("unpreview", "d:1:2", alice, 1, "u1", 1_500))
    with pytest.raises(Forbidden):
        await store.append_event(preview("d:1:2", alice, 1))
    with pytest.raises(BadRequest):  # nothing to preview
        await store.append_event(preview("d:1:2", alice, 2))


async def test_a_recall_scrubs_the_preview_event(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    await store.append_direct(said("d:1:2", alice, bob, "a", "https://example.org/secret"))
    await store.append_event(preview("d:1:2", alice, 1, ts=1_100))
    await store.append_event(EventAppend("recall", "d:1:2", alice, 1, "r1", 1_200, window_ms=60_000))
    read = await bodies(store, bob, "d:1:2")
    assert read[1] == {"recalled": True}
    assert read[2] == {"preview": {"seq": 1, "recalled": True}}
    again, _ = await store.append_event(preview("d:1:2", alice, 1, ts=1_300))  # a late repeat of the job
    assert again.duplicate and (await bodies(store, bob, "d:1:2"))[1] == {"recalled": True}
    # A message recalled before its preview came never gets one.
    await store.append_direct(said("d:1:2", alice, bob, "b", "https://example.org/b", ts=1_400))
    await store.append_event(EventAppend("recall", "d:1:2", alice, 4, "r2", 1_500, window_ms=60_000))
    with pytest.raises(Forbidden):
        await store.append_event(preview("d:1:2", alice, 4, ts=1_600))


async def test_the_cache_keeps_a_url_for_its_ttl(store: Store) -> None:
    assert await store.cached_preview("https://example.org/a", 0) is None
    await store.cache_preview("https://example.org/a", PAGE, 10_000, 0)
    await store.cache_preview("https://dead.example", {}, 10_000, 0)
    assert await store.cached_preview("https://example.org/a", 9_000) == PAGE
    assert await store.cached_preview("https://dead.example", 9_000) == {}  # a failure is remembered too
    assert await store.cached_preview("https://example.org/a", 10_001) is None  # expired
    await store.cache_preview("https://example.org/a", {"url": "https://example.org/a", "title": "New"}, 20_000,
                              15_000)  # replaces it, and drops what expired before 15,000
    assert await store.cached_preview("https://example.org/a", 0) == {"url": "https://example.org/a", "title": "New"}
    assert await store.cached_preview("https://dead.example", 0) is None
