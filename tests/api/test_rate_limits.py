"""Rate limits over real sockets: each one refuses with a clear error (HTTP 429 + Retry-After + JSON, or an ``error``
frame ``rate_limited`` with ``retry_after`` while the stream goes on), lets the client in again once it has waited
that long, and never troubles a client at a normal pace. Short periods keep the waits of these stories short; the
defaults are what a public server runs (tests/test_config.py checks that they parse)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pica.app import PicaServer
from pica.client import PicaClient, PicaHttp, PicaHttpError
from pica.client.connection import RequestFailed
from pica.config import Config, RatesConfig
from pica.protocol import frames as f
from tests.conftest import PASSWORD, TEST_RATES, connect, make_config, new_user


@asynccontextmanager
async def node_with(tmp_path: Path, **changes: object) -> AsyncIterator[tuple[PicaServer, str]]:
    """A node with the test suite's rates (generous per address) changed by ``changes``."""
    rates = dataclasses.replace(TEST_RATES, **changes)  # type: ignore[arg-type]
    server = PicaServer(dataclasses.replace(make_config(tmp_path), rates=rates))
    await server.start()
    try:
        yield server, f"http://127.0.0.1:{server.http_port}"
    finally:
        await server.stop()


async def raw_post(url: str, path: str, body: object, headers: dict[str, str] | None = None
                   ) -> tuple[int, dict[str, str], dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.post(url + path, json=body, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


async def test_password_guessing_from_one_address_is_slowed_then_let_in_again(tmp_path: Path) -> None:
    async with node_with(tmp_path, login_per_address="10/2s", login_failure_cost=5,
                         login_failures_per_account="100/min") as (_, url):
        wrong = {"username": "nobody-here", "password": "not the password"}
        statuses = [(await raw_post(url, "/v1/auth/login", wrong))[0] for _ in range(3)]
        assert statuses == [401, 401, 429]  # two failures cost 10 attempts: the bucket is empty
        status, headers, body = await raw_post(url, "/v1/auth/login", wrong)
        assert status == 429
        assert body["code"] == "rate_limited" and isinstance(body["retry_after"], float)
        assert 0 < body["retry_after"] <= 2.0
        assert int(headers["Retry-After"]) >= 1
        await asyncio.sleep(float(body["retry_after"]))  # exactly as long as it said
        async with PicaHttp(url) as http:
            with pytest.raises(PicaHttpError) as refused_again:
                await http.login("nobody-here", "still wrong")
            assert refused_again.value.status == 401  # let in again (and refused for the password only)


async def test_an_account_under_attack_from_many_addresses_is_locked_for_everyone(tmp_path: Path) -> None:
    """Failures count per account whatever the address (behind a trusted proxy, each X-Forwarded-For is one
    address); its owner's correct password waits too, and other accounts are untouched."""
    async with node_with(tmp_path, login_failures_per_account="3/2s") as (server, url):
        assert server.services is not None
        server.services.trusted_proxies = frozenset({"127.0.0.1"})
        victim_name, bob_name = f"victim{uuid.uuid4().hex[:8]}", f"bob{uuid.uuid4().hex[:8]}"
        async with PicaHttp(url) as http:
            await http.register(victim_name, PASSWORD)
            await http.register(bob_name, PASSWORD)
        guesses = [await raw_post(url, "/v1/auth/login", {"username": victim_name, "password": "guess"},
                                  {"X-Forwarded-For": f"203.0.113.{i}"}) for i in range(4)]
        assert [g[0] for g in guesses] == [401, 401, 401, 429]
        status, _, body = await raw_post(url, "/v1/auth/login", {"username": victim_name, "password": PASSWORD},
                                         {"X-Forwarded-For": "198.51.100.7"})
        assert (status, body["code"]) == (429, "rate_limited")
        async with PicaHttp(url) as http:
            assert (await http.login(bob_name, PASSWORD)).user_id > 0  # another account is not locked
        await asyncio.sleep(float(body["retry_after"]))
        async with PicaHttp(url) as http:
            login = await http.login(victim_name, PASSWORD)
        assert login.user_id > 0


async def test_registrations_from_one_address_are_limited(tmp_path: Path) -> None:
    async with node_with(tmp_path, register_per_address="2/1s") as (_, url):
        names = [f"r{uuid.uuid4().hex[:10]}" for _ in range(3)]
        results = [await raw_post(url, "/v1/auth/register", {"username": n, "password": PASSWORD}) for n in names]
        assert [r[0] for r in results] == [201, 201, 429]
        await asyncio.sleep(float(results[2][2]["retry_after"]))
        status, _, _ = await raw_post(url, "/v1/auth/register", {"username": names[2], "password": PASSWORD})
        assert status == 201


async def test_http_requests_per_address_are_limited_but_health_checks_are_free(tmp_path: Path) -> None:
    async with node_with(tmp_path, http_per_address="5/1s") as (_, url), aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(7):
            async with session.get(url + "/v1/users/1") as resp:
                statuses.append(resp.status)
        assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
        for _ in range(20):
            async with session.get(url + "/healthz") as resp:
                assert resp.status == 200


async def test_a_flooding_sender_gets_error_frames_and_its_socket_goes_on(tmp_path: Path) -> None:
    async with node_with(tmp_path, sends_per_user="5/1s") as (server, url):
        alice, bob = await new_user(url), await new_user(url)
        conn = await connect(url, alice, "tcp", server.tcp_port)
        async with conn:
            results = await asyncio.gather(*(conn.send(bob.user_id, {"text": f"m{i}"}) for i in range(8)),
                                           return_exceptions=True)
            sent = [r for r in results if isinstance(r, f.Sent)]
            refused = [r for r in results if isinstance(r, RequestFailed)]
            assert len(sent) == 5 and len(refused) == 3
            assert {r.code for r in refused} == {"rate_limited"}
            assert all(r.retryable and r.retry_after is not None and 0 < r.retry_after <= 1 for r in refused)
            await asyncio.sleep(max(r.retry_after or 0 for r in refused))
            again = await conn.send(bob.user_id, {"text": "after waiting"})  # the same socket, still open
            assert again.seq == 6


async def test_a_connection_that_floods_requests_is_refused_and_then_not_read_for_a_while(tmp_path: Path) -> None:
    """Past its burst a socket's requests are refused with retry_after, and the server stops reading it until the
    debt is repaid (a shaper: a flood costs the node almost nothing); every request still gets its answer, and the
    socket works normally afterwards."""
    async with node_with(tmp_path, requests_per_connection="10/1s") as (_, url):
        alice = await new_user(url)
        conn = await connect(url, alice, "ws")
        async with conn:
            started = time.monotonic()
            answers = await asyncio.gather(*(conn.request(f.Ping(id=0)) for _ in range(40)),
                                           return_exceptions=True)
            refused = [a for a in answers if isinstance(a, RequestFailed)]
            assert all(isinstance(a, f.Pong) for a in answers[:10])  # the burst
            assert refused and {r.code for r in refused} == {"rate_limited"}
            assert all(r.retry_after is not None and 0 < r.retry_after <= 2.1 for r in refused)
            assert len(refused) + sum(isinstance(a, f.Pong) for a in answers) == 40  # every one answered
            assert sum(isinstance(a, f.Pong) for a in answers) < 10 + 10 * (time.monotonic() - started) + 1
            await asyncio.sleep(max(r.retry_after or 0 for r in refused))
            assert isinstance(await conn.request(f.Ping(id=0)), f.Pong)


async def test_an_honest_client_at_a_normal_pace_never_sees_a_limit(tmp_path: Path) -> None:
    """Defaults everywhere but registration: a person chatting (a message every 100 ms, some history, presence)
    from a browser-like session is never refused."""
    async with node_with(tmp_path, **{k.name: getattr(RatesConfig(), k.name)
                                      for k in dataclasses.fields(RatesConfig)
                                      if k.name not in {"register_per_address", "login_per_address"}}) as (
            server, url):
        alice, bob = await new_user(url), await new_user(url)
        conn = await connect(url, alice, "tcp", server.tcp_port)
        async with conn, PicaHttp(url, token=alice.token) as http:
            for i in range(30):
                await conn.send(bob.user_id, {"text": f"hello {i}"})
                if i % 10 == 0:
                    await http.history(f"d:{alice.user_id}:{bob.user_id}", after_seq=0, limit=20)
                    await http.request("GET", "/v1/presence", params={"user_ids": str(bob.user_id)})
                await asyncio.sleep(0.1)


async def test_rate_limits_off_lets_a_flood_through_and_says_so_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config: Config = dataclasses.replace(make_config(tmp_path), rate_limits="off",
                                         rates=RatesConfig(sends_per_user="1/min"))
    server = PicaServer(config)
    with caplog.at_level(logging.WARNING, logger="pica.app"):
        await server.start()
    try:
        assert any("rate limits are off" in r.getMessage() for r in caplog.records)
        url = f"http://127.0.0.1:{server.http_port}"
        alice, bob = await new_user(url), await new_user(url)
        conn = await connect(url, alice, "tcp", server.tcp_port)
        async with conn:
            acks = await asyncio.gather(*(conn.send(bob.user_id, {"text": f"m{i}"}) for i in range(50)))
        assert [a.seq for a in acks] == list(range(1, 51))
    finally:
        await server.stop()


async def test_forwarded_addresses_count_only_behind_a_trusted_proxy(tmp_path: Path) -> None:
    async with node_with(tmp_path, register_per_address="1/min") as (server, url):
        assert server.services is not None

        async def register(forwarded: str) -> int:
            body = {"username": f"p{uuid.uuid4().hex[:10]}", "password": PASSWORD}
            return (await raw_post(url, "/v1/auth/register", body, {"X-Forwarded-For": forwarded}))[0]

        # Not trusted: the header is ignored, every request is 127.0.0.1's.
        assert [await register("192.0.2.1"), await register("192.0.2.2")] == [201, 429]
        server.services.trusted_proxies = frozenset({"127.0.0.1"})
        # Trusted: the last forwarded address is the client; one the client wrote itself, earlier, is not.
        assert await register("192.0.2.3") == 201
        assert await register("192.0.2.4") == 201
        assert await register("192.0.2.4") == 429
        assert await register("192.0.2.4, 192.0.2.5") == 201



async def test_the_sdk_waits_out_a_rate_limit_by_itself(tmp_path: Path) -> None:
    """An app that sends faster than the limit through PicaClient gets every message stored, once and in order: the
    SDK waits the retry_after the server gave and re-sends with the same id."""
    async with node_with(tmp_path, sends_per_user="3/1s") as (_, url):
        alice, bob = await new_user(url), await new_user(url)
        async with PicaClient(url, token=alice.token) as client:
            acks = [await client.send(to=bob.user_id, text=f"m{i}") for i in range(6)]
        assert [a.seq for a in acks] == list(range(1, 7))
        async with PicaHttp(url, token=bob.token) as http:
            page = await http.history(acks[0].conversation_id, after_seq=0, limit=20)
        assert [m["body"]["text"] for m in page["messages"]] == [f"m{i}" for i in range(6)]


async def test_the_user_directory_cannot_be_walked(tmp_path: Path) -> None:
    """Looking users up by id or name is limited per user: a client resolving the names it meets is fine, a
    script walking ids is refused."""
    async with node_with(tmp_path, user_lookups_per_user="5/1s") as (_, url):
        alice, bob = await new_user(url), await new_user(url)
        async with PicaHttp(url, token=alice.token) as http:
            assert (await http.request("GET", f"/v1/users/{bob.user_id}"))["user_id"] == bob.user_id
            statuses = []
            for probe in range(1, 8):
                try:
                    await http.request("GET", f"/v1/users/{probe}")
                    statuses.append(200)
                except PicaHttpError as exc:
                    statuses.append(exc.status)
            assert 429 in statuses and statuses.index(429) <= 4
            async with PicaHttp(url, token=bob.token) as bobs:  # another user has a bucket of their own
                assert (await bobs.request("GET", f"/v1/users/{alice.user_id}"))["user_id"] == alice.user_id
