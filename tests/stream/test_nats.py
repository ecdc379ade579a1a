"""The event stream against the real NATS server at 127.0.0.1:4222 (JetStream on): every stored message and group
change is published once, with ``Nats-Msg-Id: <conversation_id>:<seq>``, and each conversation's events arrive in
seq order, even when publishing fails for a while and is retried."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pica.client import PicaHttp
from pica.config import EventStreamConfig
from tests.conftest import new_user, running
from tests.webhooks.test_webhooks import FAST_JOBS, config

NATS_URL = "nats://127.0.0.1:4222"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def js() -> AsyncIterator[Any]:
    import nats

    try:
        client = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
    except Exception as exc:
        pytest.skip(f"NATS not reachable at {NATS_URL}: {exc}")
    yield client.jetstream()
    await client.close()


@contextlib.asynccontextmanager
async def names(js: Any) -> AsyncIterator[tuple[str, str]]:
    """A subject prefix and a stream name of this test's own; the stream is deleted afterwards."""
    suffix = secrets.token_hex(4)
    stream = f"PICA_TEST_{suffix.upper()}"
    try:
        yield f"pica-test-{suffix}", stream
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)


async def read_all(js: Any, prefix: str, count: int, timeout: float = 20.0) -> list[Any]:
    sub = await js.subscribe(f"{prefix}.>", ordered_consumer=True)
    got: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while len(got) < count:
                got.append(await sub.next_msg(timeout=timeout))
        with contextlib.suppress(Exception):  # nothing more: no duplicates were stored
            got.append(await sub.next_msg(timeout=1.0))
    finally:
        await sub.unsubscribe()
    return got


def check_order(messages: list[Any]) -> dict[str, list[int]]:
    seqs: dict[str, list[int]] = defaultdict(list)
    for m in messages:
        event = json.loads(m.data)
        data = event["data"]
        seq = data.get("event_seq", data["seq"])
        assert m.headers["Nats-Msg-Id"] == f"{data['conversation_id']}:{seq}"
        assert m.subject.endswith("." + event["type"])
        seqs[data["conversation_id"]].append(seq)
    for conversation, got in seqs.items():
        assert got == list(range(got[0], got[0] + len(got))), (conversation, got)
    return seqs


async def post(url: str, token: str, path: str, body: dict[str, Any], method: str = "POST") -> Any:
    async with PicaHttp(url, token=token) as http:
        return await http.request(method, path, json=body)


async def test_messages_and_group_changes_in_commit_order(tmp_path: Path, js: Any) -> None:
    async with names(js) as (prefix, stream):
        stream_config = EventStreamConfig(url=NATS_URL, subject_prefix=prefix, stream=stream)
        async with running(config(tmp_path, event_stream=stream_config)) as node:
            alice, bob, carol = [await new_user(node.url, p) for p in "abc"]
            group = await post(node.url, alice.token, "/v1/groups", {"name": "team", "members": [bob.user_id]})

            async def direct(i: int) -> None:
                await post(node.url, alice.token, "/v1/messages",
                           {"to": bob.user_id, "client_msg_id": f"d{i}", "body": {"text": f"d{i}"}})

            async def grouped(i: int) -> None:
                await post(node.url, bob.token, "/v1/messages",
                           {"group_id": group["group_id"], "client_msg_id": f"g{i}", "body": {"text": f"g{i}"}})

            await asyncio.gather(*(direct(i) for i in range(15)), *(grouped(i) for i in range(15)))
            await post(node.url, alice.token, f"/v1/groups/{group['group_id']}/members",
                       {"user_ids": [carol.user_id]})
            got = await read_all(js, prefix, 1 + 15 + 15 + 1)
    seqs = check_order(got)
    assert len(got) == 32  # once each: the last read found nothing more
    assert sorted(len(v) for v in seqs.values()) == [15, 17]  # group: created, 15 messages, member added
    assert not any(json.loads(m.data)["type"] == "user.created" for m in got)  # not in event_stream.events


async def test_a_failing_stream_holds_each_conversation_back_in_order(tmp_path: Path, js: Any) -> None:
    """No stream for the subjects at first: every publication fails and is retried (and the conversation's later
    events wait behind its first). Once the stream exists, everything arrives, in order."""
    async with names(js) as (prefix, stream):
        stream_config = EventStreamConfig(url=NATS_URL, subject_prefix=prefix, publish_timeout=0.5)
        jobs = dataclasses.replace(FAST_JOBS, max_attempts=100)
        async with running(config(tmp_path, event_stream=stream_config, jobs=jobs)) as node:
            alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
            for i in range(10):
                await post(node.url, alice.token, "/v1/messages",
                           {"to": bob.user_id, "client_msg_id": f"m{i}", "body": {"text": f"m{i}"}})
            await asyncio.sleep(1.0)
            queued = await node.server.store.list_jobs(None, 100)
            assert len(queued) == 10 and max(j.attempts for j in queued) >= 2
            assert sum(j.attempts for j in queued) == max(j.attempts for j in queued)  # only the head was tried
            from nats.js.api import StreamConfig

            await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.>"]))
            got = await read_all(js, prefix, 10)
    assert check_order(got) == {f"d:{min(alice.user_id, bob.user_id)}:{max(alice.user_id, bob.user_id)}":
                                list(range(1, 11))}
