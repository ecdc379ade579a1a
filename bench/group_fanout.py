"""Group fan-out benchmark: one sender, a group of N members all connected over TCP.

Measures deliveries per second (saturation: the sender keeps a window of unacked sends) and the delivery latency
(send -> each member's receipt of the ``msg`` frame) at a fixed message rate. Members are created directly in the
store before the server starts (an Argon2 hash each over HTTP would dominate the set-up), with tokens minted from the
node's secret; everything else goes over real sockets to a server in its own process. Receivers run in processes of
their own so that decoding on the load side does not share the server's core more than it must.

    .venv/bin/python bench/group_fanout.py                 # 1,000 members, the issue's figure
    .venv/bin/python bench/group_fanout.py --quick         # CI smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchutil import HOST, ServerProcess, cpu_sample, latency_summary_ms, markdown_table
from pica.config import AuthConfig, SqliteConfig
from pica.core.ports import SystemClock
from pica.core.sessions import SessionService
from pica.core.tokens import RefreshTokens, TokenService
from pica.protocol import frames as f
from pica.protocol.codec import Encoding, decode_server_frame, encode
from pica.protocol.framing import FrameReader, frame_bytes
from pica.store.sqlite import SqliteStore


async def _seed_users(data_dir: Path, count: int, secret: str) -> tuple[list[int], list[str]]:
    """The accounts, and a session each with its access token."""
    store = SqliteStore(data_dir / "pica.db", SqliteConfig())
    await store.open()
    sessions = SessionService(store, TokenService(secret, 3600), RefreshTokens(secret), SystemClock(), AuthConfig())
    try:
        shared_hash = "$argon2id$v=19$m=19456,t=2,p=1$bm90LXVzZWQ$bm90LXVzZWQtZm9yLWxvZ2lu"  # never logged in with
        user_ids = [await store.create_user(f"fan{i}", shared_hash, 0) for i in range(count)]
        opened = await asyncio.gather(*(sessions.open(user_id, HOST, "bench") for user_id in user_ids))
        return user_ids, [s.token for s in opened]
    finally:
        await store.close()


def _frame(frame: Any) -> bytes:
    return frame_bytes(encode(frame, Encoding.MSGPACK))


async def _open(tcp_port: int, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, tcp_port)
    writer.write(_frame(f.Auth(token=token)))
    frames = FrameReader(1 << 20)
    while True:
        data = await reader.read(65_536)
        if not data:
            raise ConnectionError("closed during auth")
        for payload in frames.feed(data):
            if isinstance(decode_server_frame(payload, Encoding.MSGPACK), f.Ready):
                return reader, writer


def _receiver(tcp_port: int, tokens: list[str], ready: Any, results: Any, expect: int, deadline_s: float) -> None:
    """One receiver process: connect its members, then record (seq, latency ns) of every group message."""

    async def main() -> None:
        conns = []
        for start in range(0, len(tokens), 200):
            conns += await asyncio.gather(*(_open(tcp_port, t) for t in tokens[start:start + 200]))
        ready.put(len(conns))
        latencies: list[int] = []
        counts = [0] * len(conns)

        async def read(index: int, reader: asyncio.StreamReader) -> None:
            frames = FrameReader(1 << 20)
            while counts[index] < expect:
                data = await reader.read(262_144)
                if not data:
                    return
                now = time.time_ns()
                for payload in frames.feed(data):
                    frame = decode_server_frame(payload, Encoding.MSGPACK)
                    if isinstance(frame, f.Msg) and "custom" in frame.body:
                        counts[index] += 1
                        latencies.append(now - frame.body["custom"]["t0_us"] * 1000)

        with contextlib.suppress(TimeoutError):  # a member that missed frames shows in the counts
            await asyncio.wait_for(asyncio.gather(*(read(i, r) for i, (r, _) in enumerate(conns))), deadline_s)
        results.put({"latencies": latencies, "received": sum(counts)})
        for _, writer in conns:
            writer.close()

    asyncio.run(main())


async def _sender(url_port: int, tcp_port: int, token: str, group_id: int, count: int, rate: float | None,
                  window: int) -> tuple[float, int]:
    """Send ``count`` messages (at ``rate``/s, or as fast as a window of unacked sends allows)."""
    reader, writer = await _open(tcp_port, token)
    frames = FrameReader(1 << 20)
    acked = 0
    sent = 0
    started = time.monotonic()
    interval = 1 / rate if rate else 0.0
    while acked < count:
        while sent < count and sent - acked < window and (not rate or time.monotonic() >= started + sent * interval):
            body = {"custom": {"t0_us": time.time_ns() // 1000}, "type": "bench"}  # µs: within 2**53
            writer.write(_frame(f.Send(group_id=group_id, client_msg_id=secrets.token_hex(8), body=body, id=sent)))
            sent += 1
        try:
            data = await asyncio.wait_for(reader.read(65_536), interval or 0.5)
        except TimeoutError:
            continue
        for payload in frames.feed(data):
            frame = decode_server_frame(payload, Encoding.MSGPACK)
            if isinstance(frame, f.Sent):
                acked += 1
            elif isinstance(frame, f.Error):
                raise RuntimeError(f"send failed: {frame.code}: {frame.message}")
    elapsed = time.monotonic() - started
    writer.close()
    return elapsed, acked


async def _create_group(http_port: int, token: str, members: list[int]) -> int:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.post(
        f"http://{HOST}:{http_port}/v1/groups", json={"name": "fanout", "members": members},
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        data = await resp.json()
        if resp.status != 201:
            raise RuntimeError(f"group creation failed: {data}")
        return int(data["group_id"])


def run(members: int, messages: int, rate: float, receivers: int, window: int) -> list[list[object]]:
    work = Path(tempfile.mkdtemp(prefix="pica-fanout-"))
    try:
        return _run(work, members, messages, rate, receivers, window)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(work: Path, members: int, messages: int, rate: float, receivers: int, window: int) -> list[list[object]]:
    data_dir = work / "data"
    data_dir.mkdir()
    secret = secrets.token_urlsafe(48)
    (data_dir / "token_secret").write_text(secret)
    user_ids, tokens = asyncio.run(_seed_users(data_dir, members, secret))
    server = ServerProcess(
        [sys.executable, "-m", "pica", "serve", "--port", "0", "--tcp-port", "0", "--data-dir", str(data_dir),
         "--ready-file", str(work / "ready"), "--log-level", "WARNING"],
        work / "ready", work / "server.log")
    rows: list[list[object]] = []
    with server:
        http_port, tcp_port = server.start()
        group_id = asyncio.run(_create_group(http_port, tokens[0], user_ids[1:]))
        for label, count, offered in (("saturation", messages, None), (f"fixed {rate:g} msg/s", messages, rate)):
            ctx = mp.get_context("spawn")
            ready, results = ctx.Queue(), ctx.Queue()
            share = [tokens[1 + i::receivers] for i in range(receivers)]
            procs = [ctx.Process(target=_receiver, args=(tcp_port, s, ready, results, count, 120.0)) for s in share]
            for p in procs:
                p.start()
            connected = sum(ready.get(timeout=120) for _ in procs)
            cpu_before = cpu_sample(server.pid)
            elapsed, acked = asyncio.run(_sender(http_port, tcp_port, tokens[0], group_id, count, offered, window))
            collected = [results.get(timeout=180) for _ in procs]
            cpu_after = cpu_sample(server.pid)
            for p in procs:
                p.join(30)
            ready.close()
            results.close()
            latencies = sorted(x for c in collected for x in c["latencies"])
            received = sum(c["received"] for c in collected)
            summary = latency_summary_ms(latencies)
            server_cpu_s = cpu_after.total - cpu_before.total
            rows.append([label, connected, acked, received, f"{received / elapsed:,.0f}",
                         f"{summary['p50']:.1f}", f"{summary['p99']:.1f}", f"{summary['max']:.1f}",
                         f"{server_cpu_s * 1e6 / max(received, 1):.2f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1000, help="group size, sender included (default 1000)")
    parser.add_argument("--messages", type=int, default=200, help="messages per phase (default 200)")
    parser.add_argument("--rate", type=float, default=20.0, help="fixed-rate phase, messages/s (default 20)")
    parser.add_argument("--receivers", type=int, default=2, help="receiver processes (default 2)")
    parser.add_argument("--window", type=int, default=16, help="unacked sends in flight at saturation")
    parser.add_argument("--quick", action="store_true", help="tiny run for CI: 50 members, 20 messages")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if args.quick:
        args.members, args.messages, args.rate, args.receivers = 50, 20, 50.0, 1
    rows = run(args.members, args.messages, args.rate, args.receivers, args.window)
    headers = ["phase", "members connected", "messages acked", "deliveries", "deliveries/s", "p50 ms", "p99 ms",
               "max ms", "server CPU µs/delivery"]
    print(f"Group fan-out: 1 sender, {args.members}-member group, TCP, {args.receivers} receiver process(es)\n")
    print(markdown_table(headers, rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"headers": headers, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
