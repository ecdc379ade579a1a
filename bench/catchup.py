"""Catch-up: a device offline for a long time syncs a million messages, page by page, over one TCP connection.

The store is seeded straight, not over sockets: the reader and ``--conversations`` peers are created through the
store (users, a session, the first message of each 1:1 conversation through the store's own append, so that
conversations and memberships are exactly what the server makes), then the rest of the messages are bulk-inserted
into the ``messages`` table (SQLite ``executemany``, PostgreSQL ``COPY``) and each conversation's ``last_seq`` moved
on. (Seeded messages are not in the search index: sync never reads it.) Then ``pica serve`` starts on that store and
one client authenticates as the reader and syncs to the end, in each ``--mode``: ``paged``, a ``sync`` with its
cursors, a ``synced`` page of at most ``--page`` messages back, cursors moved to the page's last seqs, again until
``more`` is false; ``stream``, one ``sync`` with ``stream`` and every page sent by the server as the client reads
(protocol 9.1). The client keeps no more than the page it is reading; it checks that every message came exactly once
and in order.

Reported: messages synced, pages, wall time of the whole sync, the server process's CPU time over it (user + system,
every thread and child process, from /proc), CPU-µs and wall-µs per message. CPU time is the figure to compare (the
machine is shared); the wall time includes the client's own decoding, page after page.

    .venv/bin/python bench/catchup.py                                  # 1,000,000 messages, embedded store
    .venv/bin/python bench/catchup.py --backend postgres               # the same on PostgreSQL (own schema)
    .venv/bin/python bench/catchup.py --quick                          # a small run for the smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, cast

import asyncpg
import benchutil as bu
import msgspec

from pica.core.tokens import TokenService
from pica.protocol import frames as f
from pica.protocol.codec import Encoding, decode_server_frame, encode
from pica.protocol.framing import FrameReader, frame_bytes
from pica.protocol.ids import direct_conversation_id
from pica.store.base import DirectAppend, SessionRecord, Store
from pica.store.postgres import PostgresStore, quote_ident
from pica.store.sqlite import SqliteStore

DEFAULT_DSN = os.environ.get("PICA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = "catchup-bench-secret-" + "x" * 32
MSGPACK = Encoding.MSGPACK
BODY = "the quick brown fox jumps over the lazy dog, message {n}"


async def seed(store: Store, args: argparse.Namespace) -> tuple[str, int]:
    """Users, the reader's session, one stored message per conversation; the rest are bulk-inserted by the caller.
    Returns the reader's access token and user id."""
    await store.open()
    try:
        now = int(time.time() * 1000)
        reader = await store.create_user("reader", "x", now)
        peers = [await store.create_user(f"peer{i}", "x", now) for i in range(args.conversations)]
        session = SessionRecord(uuid.uuid4().hex, reader, now, now, now + 86_400_000, "127.0.0.1", "bench")
        await store.create_session(session, 10, 0)
        for i, peer in enumerate(peers):
            body = msgspec.json.encode({"text": BODY.format(n=1)})
            await store.append_direct(DirectAppend(direct_conversation_id(reader, peer), peer, reader, f"c{i}-1",
                                                   body, now))
    finally:
        await store.close()
    token, _ = TokenService(SECRET, 86_400).issue(reader, session.session_id, time.time())
    return token, reader


def rows(reader: int, peers: range, per_conversation: int) -> list[tuple[str, int, int, str, int, bytes]]:
    base = int(time.time() * 1000) - 86_400_000
    out = []
    for peer in peers:
        conversation = direct_conversation_id(reader, peer)
        for seq in range(2, per_conversation + 1):
            out.append((conversation, seq, peer, f"c{peer}-{seq}", base + seq,
                        msgspec.json.encode({"text": BODY.format(n=seq)})))
    return out


def seed_sqlite(path: Path, reader: int, args: argparse.Namespace) -> None:
    with sqlite3.connect(path) as conn:
        peers = [r[0] for r in conn.execute("SELECT user_id FROM users WHERE username LIKE 'peer%' ORDER BY 1")]
        for chunk in range(0, len(peers), 10):
            batch: list[tuple[str, int, int, str, int, bytes]] = []
            for peer in peers[chunk:chunk + 10]:
                batch.extend(rows(reader, range(peer, peer + 1), args.per_conversation))
            conn.executemany("INSERT INTO messages (conversation_id, seq, sender, client_msg_id, ts, body)"
                             " VALUES (?, ?, ?, ?, ?, ?)", [(*r[:5], r[5].decode()) for r in batch])
        conn.executemany("UPDATE conversations SET last_seq = ?, last_ts = ? WHERE conversation_id = ?",
                         [(args.per_conversation, int(time.time() * 1000), direct_conversation_id(reader, p))
                          for p in peers])


async def seed_postgres(dsn: str, schema: str, reader: int, args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        peers = [r[0] for r in await conn.fetch(
            f"SELECT user_id FROM {quote_ident(schema)}.users WHERE username LIKE 'peer%' ORDER BY 1")]
        for chunk in range(0, len(peers), 10):
            batch = []
            for peer in peers[chunk:chunk + 10]:
                batch.extend(rows(reader, range(peer, peer + 1), args.per_conversation))
            await conn.copy_records_to_table("messages", schema_name=schema, records=batch, columns=[
                "conversation_id", "seq", "sender", "client_msg_id", "ts", "body"])
        await conn.executemany(
            f"UPDATE {quote_ident(schema)}.conversations SET last_seq = $1, last_ts = $2 WHERE conversation_id = $3",
            [(args.per_conversation, int(time.time() * 1000), direct_conversation_id(reader, p)) for p in peers])
        await conn.execute(f"ANALYZE {quote_ident(schema)}.messages")
    finally:
        await conn.close()


class Syncer(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = FrameReader(1 << 30)
        self.frames: asyncio.Queue[f.ServerFrame] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        for payload in self.reader.feed(data):
            self.frames.put_nowait(decode_server_frame(payload, MSGPACK))

    def send(self, frame: Any) -> None:
        assert self.transport is not None
        self.transport.write(frame_bytes(encode(frame, MSGPACK)))

    async def answer(self, kind: type[Any]) -> Any:
        while True:
            frame = await asyncio.wait_for(self.frames.get(), 60)
            if isinstance(frame, kind):
                return frame
            if isinstance(frame, f.Error):
                raise RuntimeError(f"server error: {frame}")


async def sync_all(tcp_port: int, token: str, page: int, server_pid: int, stream: bool) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(Syncer, bu.HOST, tcp_port)
    client.send(f.Auth(token=token, device="catchup"))
    await client.answer(f.Ready)
    cursors: dict[str, int] = {}
    synced = pages = 0
    largest_page = 0
    before, started = bu.cpu_sample(server_pid), time.monotonic()
    if stream:
        client.send(f.Sync(limit=page, id=1, stream=True))
    while True:
        pages += 1
        if not stream:
            client.send(f.Sync(cursors=cursors, limit=page, id=pages))
        answer = await client.answer(f.Synced)
        for msg in answer.msgs:
            expected = cursors.get(msg.conversation_id, 0) + 1
            if msg.seq != expected:
                raise RuntimeError(f"{msg.conversation_id}: seq {msg.seq} after {expected - 1}")
            cursors[msg.conversation_id] = msg.seq
        synced += len(answer.msgs)
        largest_page = max(largest_page, len(answer.msgs))
        if not answer.more:
            break
    elapsed, after = time.monotonic() - started, bu.cpu_sample(server_pid)
    assert client.transport is not None
    client.transport.close()
    cpu = after.total - before.total
    return {"messages": synced, "pages": pages, "largest_page": largest_page, "seconds": round(elapsed, 2),
            "server_cpu_s": round(cpu, 2), "server_loop_cpu_s": round(after.main_thread - before.main_thread, 2),
            "cpu_us_per_msg": round(cpu / max(synced, 1) * 1e6, 2),
            "wall_us_per_msg": round(elapsed / max(synced, 1) * 1e6, 2)}


def start_server(work: Path, backend: str, dsn: str, schema: str, page: int) -> bu.ServerProcess:
    env = {**os.environ, "PICA_AUTH_TOKEN_SECRET": SECRET, "PICA_LIMITS_SYNC_PAGE_SIZE": str(page)}
    extra: list[str] = []
    if backend == "postgres":
        extra = ["--store", dsn]
        env["PICA_POSTGRES_SCHEMA"] = schema
    server = bu.ServerProcess(
        [sys.executable, "-m", "pica", "serve", "--port", "0", "--tcp-port", "0", "--host", bu.HOST,
         "--data-dir", str(work / "data"), "--ready-file", str(work / "ready"), "--log-level", "WARNING", *extra],
        work / "ready", work / f"server-{backend}.log", env=env,
    )
    server.start(timeout=120)
    return server


async def run(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pica-catchup-") as tmp:
        work = Path(tmp)
        (work / "data").mkdir()
        schema = f"catchup_{uuid.uuid4().hex[:12]}"
        began = time.monotonic()
        try:
            if backend == "sqlite":
                token, reader = await seed(SqliteStore(work / "data" / "pica.db"), args)
                seed_sqlite(work / "data" / "pica.db", reader, args)
            else:
                from pica.config import PostgresConfig

                token, reader = await seed(PostgresStore(args.dsn, PostgresConfig(schema=schema)), args)
                await seed_postgres(args.dsn, schema, reader, args)
            total = args.conversations * args.per_conversation
            bu.log(f"{backend}: seeded {total:,} messages in {time.monotonic() - began:.0f} s")
            results = []
            with start_server(work, backend, args.dsn, schema, args.page) as server:
                for mode in args.mode:
                    for attempt in range(args.runs):
                        result = await sync_all(server.ports[1], token, args.page, server.pid, mode == "stream")
                        if result["messages"] != total:
                            raise RuntimeError(f"synced {result['messages']} of {total}")
                        bu.log(f"{backend} {mode} run {attempt + 1}: {result}")
                        results.append({"mode": mode, **result})
        finally:
            if backend == "postgres":
                conn = await asyncpg.connect(args.dsn)
                try:
                    await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
                finally:
                    await conn.close()
    rows = []
    for mode in args.mode:
        runs = [r for r in results if r["mode"] == mode]
        best = min(runs, key=lambda r: r["server_cpu_s"])
        rows.append({"backend": backend, "conversations": args.conversations, "page": args.page, **best,
                     "cpu_s_runs": [r["server_cpu_s"] for r in runs], "seconds_runs": [r["seconds"] for r in runs]})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=["sqlite", "postgres"], action="append",
                   help="sqlite or postgres (repeat for both; default sqlite)")
    p.add_argument("--dsn", default=DEFAULT_DSN)
    p.add_argument("--conversations", type=int, default=100, help="1:1 conversations of the reader (default 100)")
    p.add_argument("--per-conversation", type=int, default=10_000, help="messages in each (default 10,000)")
    p.add_argument("--page", type=int, default=1_000, help="messages per synced page, the server's "
                   "limits.sync_page_size (default 1,000)")
    p.add_argument("--runs", type=int, default=3, help="syncs from the start per mode, on the same server (default 3)")
    p.add_argument("--mode", choices=["paged", "stream"], action="append",
                   help="paged (a sync per page) or stream (one sync, every page streamed); default both")
    p.add_argument("--quick", action="store_true", help="a small run for CI smoke tests")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    if args.quick:
        args.conversations, args.per_conversation, args.runs = 5, 400, 1
    bu.exit_on_sigterm()
    args.mode = args.mode or ["paged", "stream"]
    results = [row for b in (args.backend or ["sqlite"]) for row in asyncio.run(run(b, args))]
    total = args.conversations * args.per_conversation
    print(f"## Catch-up: {total:,} messages across {args.conversations} conversations, one device, TCP\n")
    print(bu.markdown_table(
        ["store", "sync", "page", "pages", "server CPU s (runs)", "server loop thread CPU s", "CPU µs/msg",
         "wall s (runs)", "wall µs/msg"],
        [[r["backend"], r["mode"], r["page"], r["pages"], " / ".join(f"{v:.2f}" for v in r["cpu_s_runs"]),
          r["server_loop_cpu_s"], r["cpu_us_per_msg"], " / ".join(f"{v:.2f}" for v in r["seconds_runs"]),
          r["wall_us_per_msg"]] for r in results]))
    info = bu.machine_info()
    print(f"\nmachine: {info}; pica {bu.pica_revision()}; CPU calibration {bu.cpu_calibration_ms():.0f} ms")
    bu.write_json(args.json, {"machine": info, "revision": bu.pica_revision(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
