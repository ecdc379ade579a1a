"""A 10,000-member group: each message is stored once and every online member receives it once, in order.

The server runs as a subprocess (each process may hold at most 20,000 open files; this one holds the 10,000 client
sockets). The users are written straight into the server's SQLite file through the real store, all with one Argon2
hash (hashing 10,000 passwords would take minutes), and their tokens are minted with the secret the server will read
from its data directory. The clients are bare asyncio protocols speaking the TCP framing: a PicaConnection each
would cost far more than the server under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any, cast

import pytest
from argon2 import PasswordHasher

from pica.client import PicaHttp
from pica.config import AuthConfig
from pica.core.ports import SystemClock
from pica.core.sessions import SessionService
from pica.core.tokens import RefreshTokens, TokenService
from pica.protocol import frames as f
from pica.protocol.codec import Encoding, decode_server_frame, encode
from pica.protocol.framing import FrameReader, frame_bytes
from pica.store.sqlite import SqliteStore
from tests.conftest import PASSWORD, ServerProcess, start_server_process

MEMBERS = 10_000
MESSAGES = 3
BATCH = 500


class Member(asyncio.Protocol):
    """One member's TCP connection: authenticates, answers pings, records every message it is pushed."""

    def __init__(self, token: str, all_done: asyncio.Future[None], pending: list[int], expected: int) -> None:
        self._token = token
        self._frames = FrameReader(1 << 20)
        self._all_done = all_done
        self._pending = pending  # a shared countdown of members that have not got everything yet
        self._expected = expected
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[f.Ready] = asyncio.get_running_loop().create_future()
        self.received: list[tuple[str, int, int]] = []
        self.other: list[Any] = []
        self.lost = False

    def factory(self) -> Member:
        """The protocol factory for ``loop.create_connection``: this member itself."""
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self._write(f.Auth(token=self._token))

    def _write(self, frame: Any) -> None:
        assert self.transport is not None
        self.transport.write(frame_bytes(encode(frame, Encoding.MSGPACK)))

    def data_received(self, data: bytes) -> None:
        for payload in self._frames.feed(data):
            frame = decode_server_frame(payload, Encoding.MSGPACK)
            if isinstance(frame, f.Msg):
                self.received.append((frame.conversation_id, frame.seq, frame.sender))
                if len(self.received) == self._expected:
                    self._pending[0] -= 1
                    if self._pending[0] == 0 and not self._all_done.done():
                        self._all_done.set_result(None)
            elif isinstance(frame, f.Ready):
                self.ready.set_result(frame)
            elif isinstance(frame, f.Ping):
                self._write(f.Pong())
            else:
                self.other.append(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready: {self.other}"))


async def seed_users(data_dir: Path, count: int, secret: str) -> tuple[list[int], list[str]]:
    """Create the accounts in the server's database with the real store (schema, migrations, insert), one shared
    password hash for all, and a session each with its access token (signed with the server's secret)."""
    password_hash = PasswordHasher().hash(PASSWORD)
    now = int(time.time() * 1000)
    store = SqliteStore(data_dir / "pica.db")
    await store.open()
    sessions = SessionService(store, TokenService(secret, 3600), RefreshTokens(secret), SystemClock(), AuthConfig())
    try:
        ids: list[int] = []
        tokens: list[str] = []
        for start in range(0, count, 1000):  # the writer commits each wave in a few group-commit batches
            wave = await asyncio.gather(*(store.create_user(f"big{i:05d}", password_hash, now)
                                          for i in range(start, min(count, start + 1000))))
            opened = await asyncio.gather(*(sessions.open(user_id, "127.0.0.1", "seed") for user_id in wave))
            ids.extend(wave)
            tokens.extend(s.token for s in opened)
        return ids, tokens
    finally:
        await store.close()


@contextlib.contextmanager
def open_files_limit() -> Any:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < MEMBERS + 1000:
        pytest.fail(f"need an open-files hard limit of {MEMBERS + 1000} per process, have {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the server subprocess inherits it too
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_ten_thousand_member_group(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    secret = secrets.token_urlsafe(48)
    (data_dir / "token_secret").write_text(secret)
    timings: dict[str, float] = {}
    started = time.monotonic()
    user_ids, minted = await seed_users(data_dir, MEMBERS, secret)
    assert len(set(user_ids)) == MEMBERS
    timings["seed users and tokens"] = time.monotonic() - started

    with open_files_limit():
        server = start_server_process(data_dir)
        try:
            members, conversation_id = await _run(server, user_ids, minted, timings)
        finally:
            assert server.terminate() == 0
    timings["total"] = time.monotonic() - started

    expected = [(conversation_id, seq, user_ids[0]) for seq in range(1, MESSAGES + 2)]
    wrong = [(i, m.received, m.other) for i, m in enumerate(members) if m.received != expected or m.other]
    assert wrong == [], f"{len(wrong)} members got something else, e.g. {wrong[:3]}"
    with contextlib.closing(sqlite3.connect(f"file:{data_dir / 'pica.db'}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT conversation_id, seq, sender FROM messages ORDER BY conversation_id, seq").fetchall()
    assert rows == expected  # stored once: one row per message, no per-member copies
    report = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
    print(f"\n10,000-member group: {report}")


async def _run(server: ServerProcess, user_ids: list[int], tokens: list[str],
               timings: dict[str, float]) -> tuple[list[Member], str]:
    loop = asyncio.get_running_loop()
    all_done: asyncio.Future[None] = loop.create_future()
    pending = [len(user_ids)]
    members: list[Member] = []
    phase = time.monotonic()
    try:
        async with asyncio.timeout(120):
            for start in range(0, len(tokens), BATCH):
                batch = [Member(token, all_done, pending, MESSAGES + 1) for token in tokens[start:start + BATCH]]
                members.extend(batch)
                await asyncio.gather(*(loop.create_connection(m.factory, "127.0.0.1", server.tcp_port)
                                       for m in batch))
                readies = await asyncio.gather(*(m.ready for m in batch))
                assert [r.user_id for r in readies] == user_ids[start:start + BATCH]
        timings["connect 10,000"] = time.monotonic() - phase

        async with PicaHttp(server.url) as http:
            owner = await http.login("big00000", PASSWORD)  # the seeded rows are real accounts
            assert owner.user_id == user_ids[0]
            phase = time.monotonic()
            async with asyncio.timeout(60):
                group = await http.request("POST", "/v1/groups", json={"name": "everyone", "members": user_ids[1:]})
                assert group["member_count"] == len(user_ids)
                for i in range(MESSAGES):
                    sent = await http.request("POST", "/v1/messages", json={
                        "group_id": group["group_id"], "client_msg_id": f"big-{i}", "body": {"text": f"to all {i}"}})
                    assert sent["seq"] == i + 2
                await all_done
            timings["create + 3 messages to all"] = time.monotonic() - phase
        await asyncio.sleep(0.2)  # a duplicate, had there been one, would have arrived by now
        assert not any(m.lost for m in members)
        return members, group["conversation_id"]
    finally:
        for m in members:
            if m.transport is not None:
                m.transport.close()
        await asyncio.sleep(0)
