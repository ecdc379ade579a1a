"""What checking a credential costs: a bot's API key (SHA-256, one indexed store read) beside a user's access token
(JWT verification, one store read of its session), through ``AccountService.authenticate``, the call every HTTP
request and every socket's ``auth`` makes. On the embedded store (its reader threads), in one process.

    python bench/bot_keys.py [--count 3000] [--concurrency 32]

Decides docs/bots.md, "Checking a key": if a key costs no more than a token, which every request already pays, no
cache is worth the delay it would add to a rotation.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

from pica.config import AuthConfig, SqliteConfig
from pica.core.accounts import AccountService
from pica.core.passwords import PasswordHasher
from pica.core.ports import SystemClock
from pica.core.sessions import SessionService
from pica.core.tokens import RefreshTokens, TokenService
from pica.store.sqlite import SqliteStore


async def timed(check: Callable[[], Awaitable[object]], count: int, concurrency: int) -> tuple[float, float, float]:
    """(p50 µs, p99 µs) one at a time, and checks per second with ``concurrency`` at once."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        await check()
        latencies.append((time.perf_counter() - started) * 1e6)
    latencies.sort()

    async def worker() -> None:
        for _ in range(count // concurrency):
            await check()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = (count // concurrency) * concurrency / (time.perf_counter() - started)
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99)], rate


async def main(count: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "pica.db", SqliteConfig())
        await store.open()
        try:
            auth = AuthConfig(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)
            secret = "s" * 48
            clock = SystemClock()
            sessions = SessionService(store, TokenService(secret, 900), RefreshTokens(secret), clock, auth)
            hasher = PasswordHasher(time_cost=1, memory_kib=8, parallelism=1, concurrency=1)
            accounts = AccountService(store, hasher, sessions, clock, auth)
            user = await store.create_user("alice", "x", clock.now_ms())
            token = (await sessions.open(user, "", "bench")).token
            bot = await accounts.bots.create("helper")
            for name, credential in (("access token", token), ("bot key", bot.key)):
                p50, p99, rate = await timed(partial(accounts.authenticate, credential), count, concurrency)
                print(f"{name:13} p50 {p50:6.0f} µs  p99 {p99:6.0f} µs  {rate:8,.0f} checks/s at {concurrency}")
        finally:
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    options = parser.parse_args()
    asyncio.run(main(options.count, options.concurrency))
