"""Webhooks end to end on a real node (SQLite, its writer process) and a real receiver over 127.0.0.1: signed
deliveries, retries after 500 with backoff, dead jobs replayed with ``pica jobs retry``, 410, SSRF refusals, the
before-send hook's veto, rewrite, and failure modes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pica.client import PicaHttp
from pica.client.http import PicaHttpError
from pica.config import BeforeSendConfig, Config, JobsConfig, WebhookConfig
from pica.store.base import WebhookEndpoint
from tests.conftest import Node, connect, make_config, new_user, running
from tests.prometheus import scrape
from tests.webhooks.receiver import SECRET, Receiver, verify

FAST_JOBS = JobsConfig(poll_interval=0.2, backoff_base=0.05, backoff_max=0.2, max_attempts=3, webhook_timeout=2.0,
                       lease=5.0, endpoint_refresh=0.2)


def config(tmp_path: Path, receiver: Receiver | None = None, events: tuple[str, ...] = ("*",),
           **changes: Any) -> Config:
    hooks = (WebhookConfig(receiver.url, SECRET, events),) if receiver is not None else ()
    return dataclasses.replace(make_config(tmp_path), **{"webhooks": hooks, "jobs": FAST_JOBS, **changes})


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


def pica(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pica", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


async def send(node: Node, token: str, to: int, text: str, cmid: str) -> Any:
    async with PicaHttp(node.url, token=token) as http:
        return await http.request("POST", "/v1/messages", json={"to": to, "client_msg_id": cmid,
                                                                "body": {"text": text}})


async def test_a_message_is_delivered_signed(tmp_path: Path, receiver: Receiver) -> None:
    async with running(config(tmp_path, receiver, ("message.created", "user.*"))) as node:
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        ack = await send(node, alice.token, bob.user_id, "hello", "m1")
        await receiver.wait_for(lambda: any(r.json["type"] == "message.created" for r in receiver.received))
    for got in receiver.received:
        verify(SECRET, got.headers, got.body)
        assert got.id.startswith("msg_")
        assert got.headers["content-type"] == "application/json"
    users = [r.json for r in receiver.received if r.json["type"] == "user.created"]
    assert sorted(u["data"]["user_id"] for u in users) == sorted([alice.user_id, bob.user_id])
    created = next(r.json for r in receiver.received if r.json["type"] == "message.created")
    assert created["data"] == {"conversation_id": ack["conversation_id"], "seq": ack["seq"], "sender": alice.user_id,
                               "to": bob.user_id, "client_msg_id": "m1", "ts": ack["ts"], "body": {"text": "hello"}}
    with pytest.raises(ValueError):
        verify("whsec_" + "A" * 32, receiver.received[0].headers, receiver.received[0].body)


async def test_a_500_is_retried_with_the_same_id_after_a_backoff(tmp_path: Path, receiver: Receiver) -> None:
    receiver.answer = lambda n, got: 500 if n == 1 else 200
    async with running(config(tmp_path, receiver, ("message.created",))) as node:
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        await send(node, alice.token, bob.user_id, "hello", "m1")
        await receiver.wait_for(lambda: len(receiver.received) == 2)
        await asyncio.sleep(0.5)
        stats = await node.server.store.job_stats()
        metrics = await scrape(node.url)
    first, second = receiver.received
    assert first.id == second.id and first.body == second.body
    verify(SECRET, second.headers, second.body)
    assert len(receiver.received) == 2 and (stats.queued, stats.running, stats.dead) == (0, 0, 0)
    assert metrics.has("pica_jobs_queued") and metrics.value("pica_jobs_queued") == 0
    assert metrics.value("pica_jobs_retried_total") == 1


async def test_dead_after_max_attempts_then_replayed_by_pica_jobs_retry(tmp_path: Path, receiver: Receiver) -> None:
    failing = True
    receiver.answer = lambda n, got: 503 if failing else 200
    cfg = config(tmp_path, receiver, ("message.created",))
    async with running(cfg) as node:
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        await send(node, alice.token, bob.user_id, "hello", "m1")
        await receiver.wait_for(lambda: len(receiver.received) == FAST_JOBS.max_attempts)
        for _ in range(50):
            if (await node.server.store.job_stats()).dead == 1:
                break
            await asyncio.sleep(0.1)
        data = ["--data-dir", str(cfg.data_dir)]
        listed = await asyncio.to_thread(pica, "jobs", "list", *data)
        assert listed.returncode == 0, listed.stderr
        assert "dead" in listed.stdout and "HTTP 503" in listed.stdout and "webhook" in listed.stdout
        failing = False
        replay = await asyncio.to_thread(pica, "jobs", "retry", "--all", *data)
        assert replay.returncode == 0 and "queued 1" in replay.stdout, replay.stderr
        await receiver.wait_for(lambda: len(receiver.received) == FAST_JOBS.max_attempts + 1)
        await asyncio.sleep(0.3)
        assert (await node.server.store.job_stats()).dead == 0
        nothing = await asyncio.to_thread(pica, "jobs", "list", "--state", "all", *data)
        assert "no jobs" in nothing.stdout
    assert len(receiver.unique()) == 1


async def test_a_410_disables_a_registered_endpoint(tmp_path: Path, receiver: Receiver) -> None:
    receiver.answer = lambda n, got: 410
    cfg = config(tmp_path, jobs=dataclasses.replace(FAST_JOBS, webhook_allow_private=True))
    async with running(cfg) as node:
        store = node.server.store
        await store.add_webhook(WebhookEndpoint("wh_test", receiver.url, SECRET, ("message.created",), 0))
        await node.server.side_work.endpoints.refresh()  # type: ignore[union-attr]
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        await send(node, alice.token, bob.user_id, "one", "m1")
        await receiver.wait_for(lambda: len(receiver.received) == 1)
        for _ in range(50):
            if (await store.list_webhooks())[0].disabled:
                break
            await asyncio.sleep(0.1)
        assert (await store.list_webhooks())[0].disabled
        await asyncio.sleep(0.5)
        await send(node, alice.token, bob.user_id, "two", "m2")
        await asyncio.sleep(1.0)
    assert len(receiver.received) == 1


async def test_registered_endpoints_are_ssrf_checked(tmp_path: Path, receiver: Receiver) -> None:
    cfg = config(tmp_path)
    async with running(cfg) as node:
        data = ["--data-dir", str(cfg.data_dir)]
        for url in ("http://127.0.0.1:1/x", "http://localhost/x", "http://10.1.2.3/x", "http://169.254.169.254/x",
                    "http://[::1]/x", "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x", "http://224.0.0.1/x"):
            refused = await asyncio.to_thread(pica, "webhook", "add", url, "--events", "message.created", *data)
            assert refused.returncode == 1 and "not a public address" in refused.stderr, (url, refused.stderr)
        bad = await asyncio.to_thread(pica, "webhook", "add", "ftp://example.com/", "--events", "x.*", *data)
        assert bad.returncode == 1
        allowed = await asyncio.to_thread(pica, "webhook", "add", receiver.url, "--events", "message.*", *data,
                                          env={"PICA_JOBS_WEBHOOK_ALLOW_PRIVATE": "true"})
        assert allowed.returncode == 0 and "secret: whsec_" in allowed.stdout, allowed.stderr
        # At connect time too: an endpoint whose name resolves to loopback now (DNS rebinding after registration),
        # and one written with a literal address, are never connected to.
        store = node.server.store
        await store.add_webhook(WebhookEndpoint("wh_rebound", f"http://localhost:{receiver.port}/hook", SECRET,
                                                ("message.created",), 0))
        await store.add_webhook(WebhookEndpoint("wh_literal", f"http://127.0.0.1:{receiver.port}/hook", SECRET,
                                                ("message.created",), 0))
        endpoint_id = allowed.stdout.split()[1]
        assert (await asyncio.to_thread(pica, "webhook", "remove", endpoint_id, *data)).returncode == 0
        await node.server.side_work.endpoints.refresh()  # type: ignore[union-attr]
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        await send(node, alice.token, bob.user_id, "hello", "m1")
        jobs: list[Any] = []
        for _ in range(50):
            jobs = await store.list_jobs(None, 10)
            if {j.target for j in jobs if j.last_error} == {"wh_rebound", "wh_literal"}:
                break
            await asyncio.sleep(0.1)
        errors = {j.target: j.last_error for j in jobs}
        assert "only to addresses webhooks may not reach" in errors["wh_rebound"]
        assert "SSRF" in errors["wh_literal"]
    assert receiver.received == []


# ------------------------------------------------------------------------------------------------ before send


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@contextlib.asynccontextmanager
async def hook_server(handler: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[str]:
    """A before-send endpoint on 127.0.0.1; yields its URL."""
    app = web.Application()
    app.router.add_post("/check", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/check"
    finally:
        await runner.cleanup()


async def test_before_send_vetoes_and_rewrites(tmp_path: Path, hook: Receiver) -> None:
    async def answer(request: web.Request) -> web.Response:
        body = await request.read()
        verify(SECRET, {k.lower(): v for k, v in request.headers.items()}, body)
        data = json.loads(body)["data"]
        text = data["body"]["text"]
        if "spam" in text:
            return web.json_response({"action": "reject", "reason": "no spam here"})
        if "darn" in text:
            return web.json_response({"action": "rewrite", "body": {"text": text.replace("darn", "****")}})
        if "slow" in text:
            await asyncio.sleep(2)
        return web.json_response({"action": "allow"})

    async with hook_server(answer) as url:
        for on_failure in ("allow", "reject"):
            cfg = config(tmp_path / on_failure, before_send=BeforeSendConfig(url, SECRET, timeout=0.5,
                                                                          on_failure=on_failure))
            async with running(cfg) as node:
                alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
                with pytest.raises(PicaHttpError) as vetoed:
                    await send(node, alice.token, bob.user_id, "buy spam", "m1")
                assert (vetoed.value.status, vetoed.value.code) == (403, "rejected_by_policy")
                assert "no spam here" in str(vetoed.value)
                rewritten = await send(node, alice.token, bob.user_id, "oh darn", "m2")
                fine = await send(node, alice.token, bob.user_id, "hello", "m3")
                started = time.monotonic()
                if on_failure == "allow":
                    slow = await send(node, alice.token, bob.user_id, "slow one", "m4")
                    assert slow["seq"] == fine["seq"] + 1
                else:
                    with pytest.raises(PicaHttpError) as closed:
                        await send(node, alice.token, bob.user_id, "slow one", "m4")
                    assert (closed.value.status, closed.value.code) == (503, "policy_unavailable")
                assert 0.4 < time.monotonic() - started < 1.5  # the hook's timeout, not its 2 s
                async with PicaHttp(node.url, token=bob.token) as http:
                    page = await http.request("GET", f"/v1/conversations/{rewritten['conversation_id']}/messages")
                texts = [m["body"]["text"] for m in page["messages"]]
                assert texts == ["oh ****", "hello", *(["slow one"] if on_failure == "allow" else [])]


async def test_before_send_keeps_each_senders_order(tmp_path: Path, hook: Receiver) -> None:
    """The hook answers out of order (the first send's answer is the slowest); the sends of one connection are
    stored, and acked, in the order they were sent."""
    async def allow(request: web.Request) -> web.Response:
        await hook._handle(request)
        n = len(hook.received)
        await asyncio.sleep(0.3 if n == 1 else 0.0)
        return web.json_response({"action": "allow"})

    async with hook_server(allow) as url, running(
            config(tmp_path, before_send=BeforeSendConfig(url, SECRET, timeout=2.0))) as node:
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        conn = await connect(node.url, alice)
        try:
            acks = await asyncio.gather(*(conn.send(bob.user_id, {"text": f"n{i}"}, client_msg_id=f"m{i}")
                                          for i in range(5)))
        finally:
            await conn.close()
    assert len(hook.received) == 5
    assert [a.seq for a in acks] == [1, 2, 3, 4, 5]
