"""Password hashing with the production parameters.

The rest of the suite hashes at Argon2's floor (``CHEAP_HASHING_ENV`` in tests/conftest.py); these tests are about
hashing itself, so they build their hasher and their server from the defaults of ``AuthConfig``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import time
from pathlib import Path

import pytest

from pica.app import PicaServer
from pica.client import PicaHttp, PicaHttpError
from pica.config import AuthConfig, ConfigError, load_config
from pica.core.passwords import PasswordHasher
from tests.conftest import PASSWORD, Node, make_config

PRODUCTION = AuthConfig()
PRODUCTION_PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"


def production_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=PRODUCTION.argon2_time_cost, memory_kib=PRODUCTION.argon2_memory_kib,
                          parallelism=PRODUCTION.argon2_parallelism, concurrency=PRODUCTION.hash_concurrency)


def test_the_defaults_are_the_owasp_minimum() -> None:
    assert (PRODUCTION.argon2_time_cost, PRODUCTION.argon2_memory_kib, PRODUCTION.argon2_parallelism) == (2, 19_456, 1)
    assert load_config(env={}).auth == PRODUCTION


async def test_a_hash_carries_the_configured_parameters_and_verifies() -> None:
    hasher = production_hasher()
    password_hash = await hasher.hash(PASSWORD)
    assert password_hash.startswith(PRODUCTION_PREFIX)
    assert await hasher.verify(password_hash, PASSWORD)
    assert not await hasher.verify(password_hash, PASSWORD + "!")
    assert not await hasher.verify("not a hash", PASSWORD)
    assert not await hasher.verify(None, PASSWORD)  # no such user: verified against the dummy hash, refused


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PICA_AUTH_ARGON2_TIME_COST": "0"}, "auth.argon2_time_cost: must be at least 1"),
        ({"PICA_AUTH_ARGON2_PARALLELISM": "0"}, "auth.argon2_parallelism: must be at least 1"),
        ({"PICA_AUTH_ARGON2_MEMORY_KIB": "7"}, "auth.argon2_memory_kib: must be at least 8 per lane"),
        ({"PICA_AUTH_ARGON2_MEMORY_KIB": "8", "PICA_AUTH_ARGON2_PARALLELISM": "2"}, r"here 16"),
    ],
)
def test_parameters_below_argon2s_floor_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env=env)


def test_the_floor_itself_is_accepted() -> None:
    auth = load_config(env={"PICA_AUTH_ARGON2_TIME_COST": "1", "PICA_AUTH_ARGON2_MEMORY_KIB": "8"}).auth
    assert (auth.argon2_time_cost, auth.argon2_memory_kib, auth.argon2_parallelism) == (1, 8, 1)


async def test_a_server_with_the_defaults_stores_production_hashes_and_answers_unknown_users_as_slowly(
        tmp_path: Path) -> None:
    config = dataclasses.replace(make_config(tmp_path), auth=PRODUCTION)
    server = PicaServer(config)
    await server.start()
    try:
        node = Node(server)
        async with PicaHttp(node.url) as http:
            await http.register("alice", PASSWORD)
            assert (await http.login("alice", PASSWORD)).token

            async def refused(username: str, password: str) -> float:
                started = time.perf_counter()
                with pytest.raises(PicaHttpError) as denied:
                    await http.login(username, password)
                assert (denied.value.status, denied.value.code) == (401, "invalid_credentials")
                return time.perf_counter() - started

            wrong: list[float] = []
            unknown: list[float] = []
            for _ in range(5):  # interleaved, so that both see the same machine load
                wrong.append(await refused("alice", "not the password"))
                unknown.append(await refused("nobody", PASSWORD))
    finally:
        await server.stop()
    with contextlib.closing(sqlite3.connect(f"file:{config.data_dir / 'pica.db'}?mode=ro", uri=True)) as db:
        (stored,) = db.execute("SELECT password_hash FROM users WHERE username = 'alice'").fetchone()
    assert stored.startswith(PRODUCTION_PREFIX)
    # An unknown name costs a real Argon2 verification too (about 25 ms here; a skipped one would be ~1 ms of HTTP).
    # Best of five of each, with a wide margin: this catches a skipped verification, not a few per cent.
    assert min(unknown) > 0.3 * min(wrong), (wrong, unknown)
