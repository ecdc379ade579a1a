"""A limit that an attacker could multiply by spreading requests over nodes holds across the cluster: the login and
registration buckets live in Redis, shared by every node."""

from __future__ import annotations

import secrets

import aiohttp

from tests.cluster.conftest import Cluster
from tests.conftest import PASSWORD


async def post(url: str, path: str, body: dict[str, str]) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.post(url + path, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_registrations_and_failed_logins_are_counted_once_for_the_whole_cluster(cluster: Cluster) -> None:
    n1, n2 = cluster.start("n1", "n2", env={"PICA_RATES_REGISTER_PER_ADDRESS": "3/min",
                                           "PICA_RATES_LOGIN_FAILURES_PER_ACCOUNT": "2/min"})
    names = [f"c{secrets.token_hex(5)}" for _ in range(4)]
    # Alternating nodes: each alone would have allowed all four.
    statuses = [(await post(node.url, "/v1/auth/register", {"username": name, "password": PASSWORD}))[0]
                for node, name in zip([n1, n2, n1, n2], names, strict=True)]
    assert statuses == [201, 201, 201, 429]

    wrong = {"username": names[0], "password": "not the password"}
    guesses = [await post(node.url, "/v1/auth/login", wrong) for node in (n1, n2, n1)]
    assert [status for status, _ in guesses] == [401, 401, 429]
    status, body = await post(n2.url, "/v1/auth/login", {"username": names[0], "password": PASSWORD})
    assert (status, body["code"]) == (429, "rate_limited")  # locked on every node, its owner included, for now
    assert isinstance(body["retry_after"], float) and 0 < body["retry_after"] <= 30
