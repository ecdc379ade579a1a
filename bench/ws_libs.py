"""Choose a WebSocket library by measurement: aiohttp, websockets (new asyncio implementation) and picows.

Each library gets the same minimal echo server, on uvloop, in its own process: it decodes every text message as
JSON (msgspec), encodes it again and sends it back as text; per-message compression off; no server pings. The same
client (picows, in this process) drives all three:

* idle memory: ``--idle-conns`` idle connections (after a warm-up of 100), server RSS delta / count;
* round trips: ``--clients`` connections, each keeping ``--window`` messages in flight for ``--duration`` s (closed
  loop); a message is a ~110-byte JSON object shaped like a Pica ``send`` frame. Reported: messages/s echoed,
  round-trip p50/p99, and server CPU microseconds per message.

All traffic goes to 127.0.0.1. Usage: ``python bench/ws_libs.py [--quick] [--json out.json]``.
Internal: ``python bench/ws_libs.py --serve LIB --ready-file F`` runs one server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import math
import os
import sys
import tempfile
import time
from array import array
from collections import deque
from pathlib import Path
from typing import Any

import benchutil as bu
import msgspec
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

LIBS = ("aiohttp", "websockets", "picows")
VARIANTS = (*LIBS, "picows-1k")
"""``picows-1k``: picows with a 1 KiB initial read buffer instead of its 16 KiB default (memory experiment)."""
MAX_FRAME = 65_536
MAX_IDLE_CONNS = 18_000
"""Client and server each hold one fd per connection; the open-files limit is 20,000 per process."""
PAYLOAD = msgspec.json.encode(
    {"t": "send", "to": 12345, "client_msg_id": "0123456789abcdef0123456789abcdef",
     "body": {"text": "hello, this is a benchmark message"}, "id": 1}
)


def echo(data: str | bytes) -> bytes:
    """The servers' whole job: parse the JSON text and write it back."""
    return msgspec.json.encode(msgspec.json.decode(data))


# ====================================================================================================== servers


async def serve_aiohttp() -> int:
    from aiohttp import WSMsgType as AioMsgType
    from aiohttp import web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_FRAME, autoping=True, heartbeat=None)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is AioMsgType.TEXT:
                await ws.send_str(echo(msg.data).decode())
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, bu.HOST, 0, backlog=4096)
    await site.start()
    return int(runner.addresses[0][1])


async def serve_websockets() -> int:
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(echo(message), text=True)

    server = await serve(handler, bu.HOST, 0, compression=None, max_size=MAX_FRAME, ping_interval=None, backlog=4096)
    return int(next(iter(server.sockets)).getsockname()[1])


class PicowsEcho(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            transport.send(WSMsgType.TEXT, echo(frame.get_payload_as_bytes()))
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


async def serve_picows(read_buffer: int = 16 * 1024) -> int:
    from picows import ws_create_server

    server = await ws_create_server(lambda request: PicowsEcho(), bu.HOST, 0, max_frame_size=MAX_FRAME,
                                    read_buffer_init_size=read_buffer, backlog=4096)
    return int(server.sockets[0].getsockname()[1])


async def serve_picows_1k() -> int:
    return await serve_picows(read_buffer=1024)


SERVERS = {"aiohttp": serve_aiohttp, "websockets": serve_websockets, "picows": serve_picows,
           "picows-1k": serve_picows_1k}


def serve_main(lib: str, ready_file: str) -> int:
    async def run() -> None:
        port = await SERVERS[lib]()
        await asyncio.to_thread(Path(ready_file).write_text, f"{port}\n", encoding="utf-8")
        await asyncio.Event().wait()  # until SIGTERM

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(run())
    return 0


# ====================================================================================================== client


class Window:
    """One measured run: counts echoes received inside the window, keeps round trips of messages sent in it."""

    def __init__(self, start: float, warmup: float, duration: float) -> None:
        self.from_ns = int((start + warmup) * 1e9)
        self.to_ns = int((start + warmup + duration) * 1e9)
        self.echoed = 0
        self.rtt_ns: array[int] = array("q")


class LoadClient(WSListener):
    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self.sent: deque[int] = deque()
        self.window: Window | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def send_one(self, now: int) -> None:
        assert self.transport is not None
        self.sent.append(now)
        self.transport.send(WSMsgType.TEXT, PAYLOAD)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT or not self.sent:
            return
        now = time.monotonic_ns()
        t0 = self.sent.popleft()
        window = self.window
        if window is None:
            return
        if window.from_ns <= now < window.to_ns:
            window.echoed += 1
        if window.from_ns <= t0 < window.to_ns:
            window.rtt_ns.append(now - t0)
        if now < window.to_ns:
            self.send_one(now)


async def open_clients(port: int, count: int, *, concurrency: int = 100) -> list[LoadClient]:
    slots = asyncio.Semaphore(concurrency)

    async def one() -> LoadClient:
        async with slots:
            _, client = await asyncio.wait_for(
                ws_connect(LoadClient, f"ws://{bu.HOST}:{port}/ws", read_buffer_init_size=1024), 30
            )
        assert isinstance(client, LoadClient)
        return client

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def close_clients(clients: list[LoadClient]) -> None:
    for client in clients:
        if client.transport is not None:
            client.transport.send_close()
            client.transport.disconnect()
    for client in clients:
        if client.transport is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.transport.wait_disconnected(), 5)


async def measure_idle(server: bu.ServerProcess, port: int, count: int, settle: float) -> dict[str, Any]:
    await close_clients(await open_clients(port, min(100, count)))
    before = await asyncio.to_thread(bu.settled_rss, server.pid, settle=settle)
    clients = await open_clients(port, count)
    after = await asyncio.to_thread(bu.settled_rss, server.pid, settle=settle)
    await close_clients(clients)
    return {"idle_conns": len(clients), "rss_before": before, "rss_after": after,
            "kib_per_conn": (after - before) / len(clients) / 1024 if clients else math.nan}


async def measure_load(server: bu.ServerProcess, port: int, args: argparse.Namespace) -> dict[str, Any]:
    clients = await open_clients(port, args.clients)
    if args.quiet_wait > 0:
        await asyncio.to_thread(bu.wait_for_quiet, 10.0, args.quiet_wait)
    window = Window(time.monotonic() + 0.2, args.warmup, args.duration)
    for client in clients:
        client.window = window
    await asyncio.sleep(max(0.0, window.from_ns / 1e9 - time.monotonic() - args.warmup))
    now = time.monotonic_ns()
    for client in clients:
        for _ in range(args.window):
            client.send_one(now)
    await asyncio.sleep(max(0.0, window.from_ns / 1e9 - time.monotonic()))
    pids = [server.pid, os.getpid()]
    first = bu.snapshot(pids)
    await asyncio.sleep(max(0.0, window.to_ns / 1e9 - time.monotonic()))
    last = bu.snapshot(pids)
    await _drain(clients, 10.0)
    await close_clients(clients)
    wall = last.at - first.at
    server_cpu = first.cpu(last, server.pid)
    return {
        "msgs_per_s": window.echoed / args.duration,
        "rtt_ms": bu.latency_summary_ms(window.rtt_ns),
        "server_cpu_us_per_msg": 1e6 * server_cpu / window.echoed if window.echoed else math.nan,
        "server_cpu_pct": 100 * server_cpu / wall,
        "client_cpu_pct": 100 * first.cpu(last, os.getpid()) / wall,
        "other_cpu_pct": first.foreign_pct(last),
    }


async def _drain(clients: list[LoadClient], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(c.sent for c in clients):
        await asyncio.sleep(0.02)


async def bench_lib(lib: str, work: Path, args: argparse.Namespace, *, idle: bool) -> dict[str, Any]:
    """One round for one library on a fresh server process: idle memory (first round only), then round trips."""
    server = bu.ServerProcess(
        [sys.executable, __file__, "--serve", lib, "--ready-file", str(work / f"{lib}.ready")],
        work / f"{lib}.ready",
        work / f"{lib}.log",
    )
    await asyncio.to_thread(server.start)
    try:
        (port,) = server.ports
        memory = await measure_idle(server, port, min(args.idle_conns, MAX_IDLE_CONNS), args.settle) if idle else {}
        load = await measure_load(server, port, args)
    finally:
        await asyncio.to_thread(server.stop)
    bu.log(f"{lib}: {load['msgs_per_s']:,.0f} msg/s, p99 {load['rtt_ms']['p99']:.2f} ms"
           + (f", {memory['kib_per_conn']:.1f} KiB/idle conn" if memory else ""))
    return {**load, **memory}


def combine(lib: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of the rounds for each figure (the rounds themselves are kept for the JSON output)."""

    def median(get: Any) -> float:
        values = sorted(get(r) for r in rounds)
        return float(values[len(values) // 2])

    first = rounds[0]
    return {
        "lib": lib,
        "version": importlib.metadata.version(lib.split("-")[0]),
        "rounds": rounds,
        "msgs_per_s": median(lambda r: r["msgs_per_s"]),
        "msgs_per_s_range": (min(r["msgs_per_s"] for r in rounds), max(r["msgs_per_s"] for r in rounds)),
        "rtt_ms": {k: median(lambda r, k=k: r["rtt_ms"][k]) for k in ("p50", "p99", "p999", "max")},
        "server_cpu_us_per_msg": median(lambda r: r["server_cpu_us_per_msg"]),
        "server_cpu_pct": median(lambda r: r["server_cpu_pct"]),
        "client_cpu_pct": median(lambda r: r["client_cpu_pct"]),
        "other_cpu_pct_max": max(r["other_cpu_pct"] for r in rounds),
        "idle_conns": first["idle_conns"],
        "rss_before": first["rss_before"],
        "rss_after": first["rss_after"],
        "kib_per_conn": first["kib_per_conn"],
    }


# ====================================================================================================== output


def results_table(results: list[dict[str, Any]]) -> str:
    headers = ["library", "version", "messages/s (median)", "messages/s (range)", "RTT p50 ms", "RTT p99 ms",
               "RTT max ms", "server CPU µs/msg", "server CPU %", "client CPU %", "other CPU % (max)", "idle conns",
               "KiB per idle conn"]
    rows = []
    for r in results:
        low, high = r["msgs_per_s_range"]
        rtt = r["rtt_ms"]
        rows.append([r["lib"], r["version"], r["msgs_per_s"], f"{low:,.0f}-{high:,.0f}", rtt["p50"], rtt["p99"],
                     rtt["max"], r["server_cpu_us_per_msg"], r["server_cpu_pct"], r["client_cpu_pct"],
                     r["other_cpu_pct_max"], r["idle_conns"], r["kib_per_conn"]])
    return bu.markdown_table(headers, rows)


def relative_table(results: list[dict[str, Any]]) -> str:
    base = next((r for r in results if r["lib"] == "aiohttp"), None)
    if base is None:
        return ""
    rows = [[r["lib"], r["msgs_per_s"] / base["msgs_per_s"], r["rtt_ms"]["p99"] / base["rtt_ms"]["p99"],
             r["server_cpu_us_per_msg"] / base["server_cpu_us_per_msg"], r["kib_per_conn"] / base["kib_per_conn"]]
            for r in results]
    return bu.markdown_table(["library (ratio to aiohttp)", "throughput", "RTT p99", "server CPU/msg",
                              "memory/idle conn"], rows)


# ====================================================================================================== main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="WebSocket library comparison (echo server, uvloop)")
    p.add_argument("--libs", default=",".join(LIBS), help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--clients", type=int, default=100, help="connections in the round-trip test (default 100)")
    p.add_argument("--window", type=int, default=4, help="messages in flight per connection (default 4)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first (default 2)")
    p.add_argument("--rounds", type=int, default=3, help="round-trip runs per library; medians reported (default 3)")
    p.add_argument("--idle-conns", type=int, default=5000, help="idle connections for the memory test (default 5000)")
    p.add_argument("--settle", type=float, default=2.0, help="seconds to let RSS settle before sampling it")
    p.add_argument("--quiet-wait", type=float, default=30.0, metavar="S",
                   help="before each run wait up to S s for the machine to be idle (default 30; 0: never)")
    p.add_argument("--quick", action="store_true", help="tiny run for CI smoke tests")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--ready-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.libs = [lib.strip() for lib in args.libs.split(",") if lib.strip()]
    unknown = set(args.libs) - set(VARIANTS)
    if unknown:
        p.error(f"unknown libraries: {', '.join(sorted(unknown))}")
    if args.quick:
        args.clients, args.duration, args.warmup, args.idle_conns, args.settle = 10, 1.0, 0.3, 100, 0.3
        args.rounds, args.quiet_wait = 1, 0.0
    args.rounds = max(1, args.rounds)
    return args


async def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rounds interleave the libraries, so that drift in the machine's load spreads over all of them."""
    rounds: dict[str, list[dict[str, Any]]] = {lib: [] for lib in args.libs}
    with tempfile.TemporaryDirectory(prefix="pica-wslibs-") as tmp:
        for index in range(args.rounds):
            for lib in args.libs:
                rounds[lib].append(await bench_lib(lib, Path(tmp), args, idle=index == 0))
    return [combine(lib, rounds[lib]) for lib in args.libs]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bu.exit_on_sigterm()
    if args.serve:
        return serve_main(args.serve, args.ready_file)
    started = time.monotonic()
    results = uvloop.run(run_all(args))
    print(f"## WebSocket libraries: echo of a {len(PAYLOAD)}-byte JSON text message, {args.clients} clients, "
          f"window {args.window}, {args.duration:g} s x {args.rounds} rounds; {args.idle_conns} idle connections\n")
    print(results_table(results) + "\n")
    print(relative_table(results) + "\n")
    bu.write_json(args.json, {"machine": bu.machine_info(), "args": vars(args), "results": results})
    bu.log(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
