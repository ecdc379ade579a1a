"""End-to-end chat benchmark: durable 1:1 messages over the framed TCP protocol.

Starts ``python -m pica serve`` as a subprocess (fresh temporary data directory, free ports, default SQLite
``synchronous=FULL``), registers ``--users`` users over HTTP, and drives pairs of them from ``--procs`` load-generator
processes that speak raw length-prefixed MessagePack frames (pica.protocol). Every ``send`` is acked by the server's
``sent`` frame only after the durable commit; the partner receives the ``msg`` push. Each body carries its send time
(``{"text": ..., "t0_us": <monotonic µs>}``), so delivery latency is measured from the message itself.

Phases:

* saturation: every connection keeps ``--window`` sends in flight for ``--duration`` s (closed loop);
* latency: open-loop sends at ``--rate`` msg/s in total, paced every millisecond; when the server cannot sustain a
  single given rate, lower rates (halving, twice) are tried too;
* idle memory: a fresh server process on the same data directory, ``--idle-conns`` idle authenticated TCP
  connections (then WebSocket ones, again on a fresh server) opened from separate processes; RSS delta / count.

All traffic goes to 127.0.0.1. Usage: ``python bench/chat.py [--quick] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import multiprocessing as mp
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any, cast

import aiohttp
import benchutil as bu
import uvloop

from pica.client.http import PicaHttp
from pica.protocol import frames as f
from pica.protocol.codec import Encoding, decode_server_frame, encode
from pica.protocol.framing import FrameReader, frame_bytes

PASSWORD = "bench-password-123"
MSGPACK = Encoding.MSGPACK
MAX_BACKLOG = 2_000
"""Open-loop mode: a connection with this many unacked sends skips its turn (counted as ``skipped``)."""
MAX_CONNS_PER_PROCESS = 9_000
"""Idle clients per process, well under the 20,000 open-files limit."""
MAX_IDLE_CONNS = 18_000
"""The server process has the same 20,000 open-files limit."""


@dataclass(frozen=True, slots=True)
class Account:
    user_id: int
    token: str


# ====================================================================================================== load phases


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    start_at: float
    """time.monotonic() of the first send (CLOCK_MONOTONIC is shared by all processes)."""
    warmup: float
    duration: float
    rate: float | None
    """This worker's offered msg/s; None saturates (closed loop)."""
    window: int
    drain: float

    @property
    def measure_from(self) -> float:
        return self.start_at + self.warmup

    @property
    def measure_to(self) -> float:
        return self.start_at + self.warmup + self.duration


@dataclass(slots=True)
class PhaseResult:
    sent: int = 0
    acked: int = 0
    delivered: int = 0
    acked_in_window: int = 0
    delivered_in_window: int = 0
    errors: int = 0
    skipped: int = 0
    max_lag_ms: float = 0.0
    undrained: int = 0
    ack_ns: array[int] = field(default_factory=lambda: array("q"))
    deliver_ns: array[int] = field(default_factory=lambda: array("q"))
    ack_sent_ns: array[int] = field(default_factory=lambda: array("q"))
    """The send time of each ``ack_ns`` entry: when the slow ones were sent (``ack_slow_spells``)."""
    acks_per_second: list[int] = field(default_factory=list)
    """Acks by the second of the phase they arrived in (warm-up included): shows drift over a run."""

    def merge(self, other: PhaseResult) -> None:
        for name in ("sent", "acked", "delivered", "acked_in_window", "delivered_in_window", "errors", "skipped",
                     "undrained"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.max_lag_ms = max(self.max_lag_ms, other.max_lag_ms)
        if len(self.acks_per_second) < len(other.acks_per_second):
            self.acks_per_second.extend([0] * (len(other.acks_per_second) - len(self.acks_per_second)))
        for second, count in enumerate(other.acks_per_second):
            self.acks_per_second[second] += count
        self.ack_ns.extend(other.ack_ns)
        self.deliver_ns.extend(other.deliver_ns)
        self.ack_sent_ns.extend(other.ack_sent_ns)


class PhaseRun:
    """Bookkeeping of one phase inside one worker, shared by its connections (times in monotonic ns)."""

    def __init__(self, phase: Phase) -> None:
        self.phase = phase
        self.start_ns = int(phase.start_at * 1e9)
        self.from_ns = int(phase.measure_from * 1e9)
        self.to_ns = int(phase.measure_to * 1e9)
        self.saturate = phase.rate is None
        self.result = PhaseResult()

    def sending(self, now: int) -> bool:
        return now < self.to_ns

    def on_ack(self, t0: int | None, now: int) -> None:
        result = self.result
        result.acked += 1
        second = (now - self.start_ns) // 1_000_000_000
        if 0 <= second < 3_600:
            timeline = result.acks_per_second
            while len(timeline) <= second:
                timeline.append(0)
            timeline[second] += 1
        if self.from_ns <= now < self.to_ns:
            result.acked_in_window += 1
        if t0 is not None and self.from_ns <= t0 < self.to_ns:
            result.ack_ns.append(now - t0)
            result.ack_sent_ns.append(t0)

    def on_delivery(self, t0: int | None, now: int) -> None:
        result = self.result
        result.delivered += 1
        if self.from_ns <= now < self.to_ns:
            result.delivered_in_window += 1
        if t0 is not None and self.from_ns <= t0 < self.to_ns:
            result.deliver_ns.append(now - t0)


class BenchConnection(asyncio.Protocol):
    """One user's TCP connection in a load generator: sends to ``peer``, times acks and deliveries."""

    def __init__(self, account: Account, peer: int, tag: str) -> None:
        self.account = account
        self.peer = peer
        self.tag = tag
        self.reader = FrameReader(1 << 24)
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending: dict[int, int] = {}
        self.ids = itertools.count(1)
        self.out: list[bytes] = []
        self.run: PhaseRun | None = None
        self.closed = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self.transport.write(frame_bytes(encode(f.Auth(token=self.account.token, device=self.tag), MSGPACK)))

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        for payload in self.reader.feed(data):
            self._on_frame(decode_server_frame(payload, MSGPACK), now)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready: {exc}"))

    # frames

    def _on_frame(self, frame: f.ServerFrame, now: int) -> None:
        run = self.run
        if isinstance(frame, f.Sent):
            t0 = self.pending.pop(frame.ref, None) if frame.ref is not None else None
            if run is not None:
                run.on_ack(t0, now)
                if run.saturate and run.sending(now):
                    self.queue_send(now)
        elif isinstance(frame, f.Msg):
            t0_us = frame.body.get("t0_us")
            if run is not None:
                run.on_delivery(t0_us * 1000 if isinstance(t0_us, int) else None, now)
        elif isinstance(frame, f.Ready):
            if not self.ready.done():
                self.ready.set_result(None)
        elif isinstance(frame, f.Ping):
            self.out.append(frame_bytes(encode(f.Pong(ref=frame.id), MSGPACK)))
        elif isinstance(frame, f.Error):
            if frame.ref is not None:
                self.pending.pop(frame.ref, None)
            if run is not None:
                run.result.errors += 1
        elif isinstance(frame, f.Close) and not self.ready.done():
            self.ready.set_exception(ConnectionError(f"server closed: {frame.code} {frame.reason}"))

    def queue_send(self, now: int) -> None:
        request_id = next(self.ids)
        frame = f.Send(
            to=self.peer,
            client_msg_id=f"{self.tag}-{request_id}",
            # A text message with its send time as metadata (µs: bodies carry integers within 2**53).
            body={"text": "bench message", "t0_us": now // 1000},
            id=request_id,
        )
        self.out.append(frame_bytes(encode(frame, MSGPACK)))
        self.pending[request_id] = now
        if self.run is not None:
            self.run.result.sent += 1

    def flush(self) -> None:
        if self.out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(self.out))
        self.out.clear()


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    index: int
    tcp_port: int
    pairs: list[tuple[Account, Account]]


def worker_main(spec: WorkerSpec, pipe: Pipe) -> None:
    """Entry point of a load-generator process."""
    uvloop.run(_worker(spec, pipe))


async def _worker(spec: WorkerSpec, pipe: Pipe) -> None:
    await serve_phases(await _connect_pairs(spec), pipe)


async def serve_phases(conns: list[BenchConnection], pipe: Pipe) -> None:
    """A load generator's life once connected: report ready, run each phase the parent sends, close at the end."""
    pipe.send(("ready", len(conns)))
    try:
        for _ in range(1_000):  # one message per phase; None ends
            phase = await asyncio.to_thread(pipe.recv)
            if phase is None:
                break
            pipe.send(await _run_phase(conns, phase))
    finally:
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()


async def _connect_pairs(spec: WorkerSpec) -> list[BenchConnection]:
    loop = asyncio.get_running_loop()
    conns: list[BenchConnection] = []
    for n, (a, b) in enumerate(spec.pairs):
        conns.append(BenchConnection(a, b.user_id, f"w{spec.index}p{n}a"))
        conns.append(BenchConnection(b, a.user_id, f"w{spec.index}p{n}b"))
    for conn in conns:
        await loop.create_connection(lambda c=conn: c, bu.HOST, spec.tcp_port)  # type: ignore[misc]
    await asyncio.wait_for(asyncio.gather(*(c.ready for c in conns)), 30)
    return conns


async def _run_phase(conns: list[BenchConnection], phase: Phase) -> PhaseResult:
    run = PhaseRun(phase)
    for conn in conns:
        conn.run = run
    await asyncio.sleep(max(0.0, phase.start_at - time.monotonic()))
    if run.saturate:
        now = time.monotonic_ns()
        for conn in conns:
            for _ in range(phase.window):
                conn.queue_send(now)
            conn.flush()
        await asyncio.sleep(max(0.0, phase.measure_to - time.monotonic()))
    else:
        assert phase.rate is not None
        await _pace(conns, run, phase.rate)
    run.result.undrained = await _drain(conns, run, phase.drain)
    for conn in conns:
        conn.run = None
    return run.result


async def _pace(conns: list[BenchConnection], run: PhaseRun, rate: float) -> None:
    """Open loop: message n is due at start + n / rate; each connection in turn sends one."""
    n = 0
    turn = 0
    per_ns = rate / 1e9
    max_ticks = int((run.to_ns - run.start_ns) / 1e6) + 1_000
    for _ in range(max_ticks):
        now = time.monotonic_ns()
        if now >= run.to_ns:
            break
        due = int((now - run.start_ns) * per_ns) + 1
        if due > n:
            run.result.max_lag_ms = max(run.result.max_lag_ms, (now - run.start_ns - n / per_ns) / 1e6)
        touched: set[BenchConnection] = set()
        while n < due:
            conn = conns[turn % len(conns)]
            turn += 1
            n += 1
            if len(conn.pending) >= MAX_BACKLOG or conn.closed:
                run.result.skipped += 1
                continue
            conn.queue_send(now)
            touched.add(conn)
        for conn in touched:
            conn.flush()
        await asyncio.sleep(0.001)


async def _drain(conns: list[BenchConnection], run: PhaseRun, timeout: float) -> int:
    """Wait until every send is acked and every acked message delivered (both ends live in this worker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outstanding = sum(len(c.pending) for c in conns)
        if outstanding == 0 and run.result.delivered >= run.result.acked:
            return 0
        await asyncio.sleep(0.02)
    return sum(len(c.pending) for c in conns) + max(0, run.result.acked - run.result.delivered)


# ====================================================================================================== orchestration


@dataclass(slots=True)
class Worker:
    process: mp.process.BaseProcess
    pipe: Pipe


def start_workers(procs: int, tcp_port: int, accounts: list[Account]) -> list[Worker]:
    pairs = [(accounts[i], accounts[i + 1]) for i in range(0, len(accounts) - 1, 2)]
    ctx = mp.get_context("spawn")
    workers = []
    for index in range(procs):
        parent, child = ctx.Pipe()
        spec = WorkerSpec(index, tcp_port, pairs[index::procs])
        process = ctx.Process(target=worker_main, args=(spec, child), daemon=True)
        process.start()
        workers.append(Worker(process, parent))
    for worker in workers:
        reply = recv(worker, 60.0)
        if not (isinstance(reply, tuple) and reply[0] == "ready"):
            raise RuntimeError(f"load generator failed to start: {reply!r}")
    return workers


def stop_workers(workers: list[Worker]) -> None:
    for worker in workers:
        with contextlib.suppress(OSError):
            worker.pipe.send(None)
    for worker in workers:
        worker.process.join(10)
        if worker.process.is_alive():
            worker.process.terminate()
            worker.process.join(5)


def recv(worker: Worker, timeout: float) -> Any:
    """The child's next message; fails fast when the child died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.pipe.poll(0.1):
            return worker.pipe.recv()
        if not worker.process.is_alive():
            raise RuntimeError(f"child process exited with {worker.process.exitcode}")
    raise TimeoutError(f"no answer from a child process within {timeout} s")


def run_phase(
    workers: list[Worker], server_pid: int, name: str, rate: float | None, args: argparse.Namespace,
    helper_pids: tuple[int, ...] = (),
) -> dict[str, Any]:
    """``helper_pids``: other processes of the benchmark (a webhook receiver), counted with the load generator."""
    if args.quiet_wait > 0:
        bu.wait_for_quiet(limit_pct=10.0, max_wait=args.quiet_wait)
    start_at = time.monotonic() + 0.3
    per_worker = None if rate is None else rate / len(workers)
    phase = Phase(name, start_at, args.warmup, args.duration, per_worker, args.window, args.drain)
    for worker in workers:
        worker.pipe.send(phase)
    time.sleep(max(0.0, phase.measure_from - time.monotonic()))
    pids = [server_pid, *(w.process.pid or 0 for w in workers), *helper_pids]
    first = bu.snapshot(pids)
    time.sleep(max(0.0, phase.measure_to - time.monotonic()))
    last = bu.snapshot(pids)
    total = PhaseResult()
    for worker in workers:
        total.merge(recv(worker, args.drain + 30.0))
    return summarize(name, rate, total, first, last, args.duration)


def summarize(
    name: str, rate: float | None, r: PhaseResult, first: bu.Snapshot, last: bu.Snapshot, duration: float
) -> dict[str, Any]:
    server_pid, *gen_pids = first.procs
    wall = last.at - first.at
    server_cpu = first.cpu(last, server_pid)
    gen_cpu = sum(first.cpu(last, pid) for pid in gen_pids)
    loop_cpu = last.procs[server_pid].main_thread - first.procs[server_pid].main_thread
    return {
        "phase": name,
        "offered_per_s": rate,
        "acked_per_s": r.acked_in_window / duration,
        "delivered_per_s": r.delivered_in_window / duration,
        "sent": r.sent,
        "acked": r.acked,
        "delivered": r.delivered,
        "errors": r.errors,
        "skipped": r.skipped,
        "undrained": r.undrained,
        "generator_max_lag_ms": r.max_lag_ms,
        "acks_per_second": r.acks_per_second,
        "ack_ms": (ack := bu.latency_summary_ms(r.ack_ns)),
        "ack_slow_spells": bu.slow_spells(r.ack_sent_ns, r.ack_ns, ack["p99"] * 1e6, gap=20e6, unit=1e9),
        "delivery_ms": bu.latency_summary_ms(r.deliver_ns),
        "server_cpu_us_per_msg": 1e6 * server_cpu / r.acked_in_window if r.acked_in_window else math.nan,
        "server_cpu_pct": 100 * server_cpu / wall,
        "server_loop_thread_pct": 100 * loop_cpu / wall,
        "loadgen_cpu_pct": 100 * gen_cpu / wall,
        "other_cpu_pct": first.foreign_pct(last),
    }


def _spells(spells: list[dict[str, float]], most: int = 12) -> str:
    """The worst spells, in time order: "at s (count, worst ms)"."""
    worst = sorted(sorted(spells, key=lambda s: -s["count"])[:most], key=lambda s: s["at_s"])
    shown = ", ".join(f"{s['at_s']} s ({s['count']}, {s['worst_ms']} ms)" for s in worst)
    return f"{len(spells)} spells (sends < 20 ms apart); the {len(worst)} largest: {shown}"


def sustained(result: dict[str, Any]) -> bool:
    offered = result["offered_per_s"]
    return bool(result["acked_per_s"] >= 0.95 * offered and result["skipped"] == 0 and result["errors"] == 0)


def run_load(args: argparse.Namespace, tcp_port: int, server_pid: int, accounts: list[Account]) -> list[dict[str, Any]]:
    workers = start_workers(args.procs, tcp_port, accounts)
    try:
        results = [run_phase(workers, server_pid, "saturation", None, args)]
        bu.log(f"saturation: {results[0]['acked_per_s']:,.0f} acked/s")
        rates = [] if args.skip_latency else list(args.rate)
        for _ in range(8):
            if not rates:
                break
            rate = rates.pop(0)
            result = run_phase(workers, server_pid, f"rate {rate:,.0f}", rate, args)
            results.append(result)
            bu.log(f"rate {rate:,.0f}: ack p99 {result['ack_ms']['p99']:.2f} ms, sustained={sustained(result)}")
            bu.log(f"rate {rate:,.0f}: the slowest 1 % of acks were sent in {_spells(result['ack_slow_spells'])}")
            if not rates and not sustained(result) and args.fallback and rate / 2 >= 100:
                rates.append(rate / 2)
                args.fallback -= 1
        return results
    finally:
        stop_workers(workers)


# ====================================================================================================== accounts


async def register_users(base_url: str, count: int, concurrency: int = 4) -> list[Account]:
    """Register and log in ``count`` users (two Argon2 hashes each; the server runs two at a time)."""
    slots = asyncio.Semaphore(concurrency)

    async def one(http: PicaHttp, index: int) -> Account:
        name = f"bench{index:05d}"
        async with slots:
            await http.register(name, PASSWORD)
            login = await http.login(name, PASSWORD)
        return Account(login.user_id, login.token)

    async with PicaHttp(base_url) as http:
        return list(await asyncio.wait_for(asyncio.gather(*(one(http, i) for i in range(count))), 600))


# ====================================================================================================== idle memory


class IdleTcp(asyncio.Protocol):
    """An authenticated TCP connection that only answers pings."""

    def __init__(self, account: Account, device: str) -> None:
        self.auth = frame_bytes(encode(f.Auth(token=account.token, device=device), MSGPACK))
        self.reader = FrameReader(1 << 20)
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self.transport.write(self.auth)

    def data_received(self, data: bytes) -> None:
        for payload in self.reader.feed(data):
            frame = decode_server_frame(payload, MSGPACK)
            if isinstance(frame, f.Ready) and not self.ready.done():
                self.ready.set_result(None)
            elif isinstance(frame, f.Ping) and self.transport is not None:
                self.transport.write(frame_bytes(encode(f.Pong(ref=frame.id), MSGPACK)))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready: {exc}"))


class IdleWs:
    """An authenticated WebSocket connection (JSON) that only answers pings: the server's application-level ``ping``
    frames with ``pong`` as IdleTcp does, and WebSocket control pings (aiohttp's autoping, done while reading)."""

    __slots__ = ("reader", "ws")

    PONG = encode(f.Pong(), Encoding.JSON).decode()

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.reader = asyncio.get_running_loop().create_task(self._answer_pings())

    async def _answer_pings(self) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            async for message in self.ws:  # ends at the close
                if message.type is aiohttp.WSMsgType.TEXT and isinstance(
                    decode_server_frame(message.data, Encoding.JSON), f.Ping
                ):
                    await self.ws.send_str(self.PONG)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        self.reader.cancel()


@dataclass(frozen=True, slots=True)
class IdleSpec:
    transport: str
    http_port: int
    tcp_port: int
    accounts: list[Account]
    count: int
    first_device: int


def idle_client_main(spec: IdleSpec, pipe: Pipe) -> None:
    """Entry point of an idle-connection holder: open, report, hold until told, close."""
    uvloop.run(_idle_client(spec, pipe))


async def _idle_client(spec: IdleSpec, pipe: Pipe) -> None:
    slots = asyncio.Semaphore(100)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        opener = _open_tcp if spec.transport == "tcp" else _open_ws

        async def one(i: int) -> Any:
            account = spec.accounts[i % len(spec.accounts)]
            async with slots:
                return await asyncio.wait_for(opener(spec, session, account, f"idle{spec.first_device + i}"), 30)

        outcomes = await asyncio.gather(*(one(i) for i in range(spec.count)), return_exceptions=True)
        held = [o for o in outcomes if not isinstance(o, BaseException)]
        failures = [repr(o) for o in outcomes if isinstance(o, BaseException)]
        pipe.send(("open", len(held), failures[:3]))
        await asyncio.to_thread(pipe.poll, 600)
        await asyncio.gather(*(conn.close() for conn in held if isinstance(conn, IdleWs)))
        for conn in held:
            if isinstance(conn, IdleTcp) and conn.transport is not None:
                conn.transport.close()
        await asyncio.sleep(0.2)


async def _open_tcp(spec: IdleSpec, session: aiohttp.ClientSession, account: Account, device: str) -> IdleTcp:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: IdleTcp(account, device), bu.HOST, spec.tcp_port)
    await conn.ready
    return conn


async def _open_ws(
    spec: IdleSpec, session: aiohttp.ClientSession, account: Account, device: str
) -> IdleWs:
    ws = await session.ws_connect(
        f"ws://{bu.HOST}:{spec.http_port}/v1/ws?device={device}",
        headers={"Authorization": f"Bearer {account.token}"},
        autoping=True,
        heartbeat=None,
    )
    first = await ws.receive(timeout=30)
    if first.type is not aiohttp.WSMsgType.TEXT or '"ready"' not in first.data:
        raise ConnectionError(f"unexpected first WebSocket message {first!r}")
    return IdleWs(ws)


def hold_idle(spec: IdleSpec) -> tuple[list[Worker], int, list[str]]:
    """Start holder processes for ``spec.count`` connections; returns them once all have opened theirs."""
    ctx = mp.get_context("spawn")
    holders: list[Worker] = []
    parts = max(1, math.ceil(spec.count / MAX_CONNS_PER_PROCESS))
    for index in range(parts):
        count = spec.count // parts + (1 if index < spec.count % parts else 0)
        part = IdleSpec(spec.transport, spec.http_port, spec.tcp_port, spec.accounts, count,
                        spec.first_device + index * MAX_CONNS_PER_PROCESS)
        parent, child = ctx.Pipe()
        process = ctx.Process(target=idle_client_main, args=(part, child), daemon=True)
        process.start()
        holders.append(Worker(process, parent))
    opened = 0
    failures: list[str] = []
    for holder in holders:
        _, count, errors = recv(holder, 300.0)
        opened += count
        failures.extend(errors)
    return holders, opened, failures


def release_idle(holders: list[Worker]) -> None:
    for holder in holders:
        with contextlib.suppress(OSError):
            holder.pipe.send("close")
    for holder in holders:
        holder.process.join(60)
        if holder.process.is_alive():
            holder.process.terminate()
            holder.process.join(5)


def measure_idle(args: argparse.Namespace, work: Path, accounts: list[Account], transport: str) -> dict[str, Any]:
    """A fresh server on the same data directory (tokens stay valid): warm up, baseline RSS, hold N, RSS again."""
    count = min(args.idle_conns, MAX_IDLE_CONNS)
    with start_server(work, f"idle-{transport}") as server:
        http_port, tcp_port = server.ports
        warm = IdleSpec(transport, http_port, tcp_port, accounts, min(100, count), 0)
        release_idle(hold_idle(warm)[0])
        before = bu.settled_rss(server.pid, settle=args.settle)
        holders, opened, failures = hold_idle(IdleSpec(transport, http_port, tcp_port, accounts, count, 1_000_000))
        try:
            after = bu.settled_rss(server.pid, settle=args.settle)
        finally:
            release_idle(holders)
    per_conn = (after - before) / opened / 1024 if opened else math.nan
    bu.log(f"idle {transport}: {opened} connections, {per_conn:.1f} KiB each")
    return {"transport": transport, "connections": opened, "failed": count - opened, "failures": failures,
            "rss_before": before, "rss_after": after, "kib_per_conn": per_conn}


# ====================================================================================================== server


def start_server(work: Path, label: str, *extra: str, env: dict[str, str] | None = None) -> bu.ServerProcess:
    """``pica serve`` on free ports with its data in ``work``, started; ``extra`` flags and ``env`` for the benchmarks
    that configure it (webhooks, push, media)."""
    server = bu.ServerProcess(
        [sys.executable, "-m", "pica", "serve", "--port", "0", "--tcp-port", "0", "--host", bu.HOST,
         "--data-dir", str(work / "data"), "--ready-file", str(work / "ready"), "--log-level", "WARNING", *extra],
        work / "ready",
        work / f"server-{label}.log",
        env=env,
    )
    server.start()
    return server


# ====================================================================================================== output


def load_table(results: list[dict[str, Any]]) -> str:
    headers = ["phase", "offered msg/s", "acked msg/s", "delivered msg/s", "ack p50 ms", "ack p99 ms", "ack max ms",
               "delivery p50 ms", "delivery p99 ms", "delivery max ms", "server CPU µs/msg", "server CPU %",
               "server loop thread %", "loadgen CPU %", "other CPU %", "errors", "skipped"]
    rows = []
    for r in results:
        ack, dlv = r["ack_ms"], r["delivery_ms"]
        offered = "max (closed loop)" if r["offered_per_s"] is None else float(r["offered_per_s"])
        rows.append([r["phase"], offered, r["acked_per_s"], r["delivered_per_s"], ack["p50"], ack["p99"],
                     ack["max"], dlv["p50"], dlv["p99"], dlv["max"], r["server_cpu_us_per_msg"],
                     r["server_cpu_pct"], r["server_loop_thread_pct"], r["loadgen_cpu_pct"], r["other_cpu_pct"],
                     r["errors"], r["skipped"]])
    return bu.markdown_table(headers, rows)


def idle_table(results: list[dict[str, Any]]) -> str:
    headers = ["transport", "connections", "server RSS before MiB", "server RSS after MiB", "KiB per connection"]
    rows = [[r["transport"], r["connections"], r["rss_before"] / 2**20, r["rss_after"] / 2**20, r["kib_per_conn"]]
            for r in results]
    return bu.markdown_table(headers, rows)


def targets_table(load: list[dict[str, Any]], idle: list[dict[str, Any]]) -> str:
    sat = load[0]["acked_per_s"]
    at_5k = next((r for r in load[1:] if r["offered_per_s"] == 5000), None)
    p99 = max(at_5k["ack_ms"]["p99"], at_5k["delivery_ms"]["p99"]) if at_5k else math.nan
    worst_idle = max((r["kib_per_conn"] for r in idle), default=math.nan)
    rows = [
        [">= 20,000 durable 1:1 msg/s", f"{sat:,.0f} msg/s", _met(sat >= 20_000)],
        ["p99 < 10 ms at 5,000 msg/s (ack and delivery)",
         "not run" if at_5k is None else f"{p99:.2f} ms" + ("" if sustained(at_5k) else " (rate not sustained)"),
         "n/a" if at_5k is None else _met(p99 < 10 and sustained(at_5k))],
        ["<= 16 KiB per idle connection (worst transport)", f"{worst_idle:.1f} KiB",
         "n/a" if worst_idle != worst_idle else _met(worst_idle <= 16)],
    ]
    return bu.markdown_table(["target", "measured", "met"], rows)


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


# ====================================================================================================== main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--users", type=int, default=100, help="users to register (pairs = users / 2; default 100)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per load phase (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each load phase (default 2)")
    p.add_argument("--rate", type=_rates, default=[5000.0],
                   help="offered msg/s for the latency phase; a comma list runs several (default 5000)")
    p.add_argument("--window", type=int, default=16, help="saturation: sends in flight per connection (default 16)")
    p.add_argument("--idle-conns", type=int, default=5000, help="idle connections per transport (default 5000)")
    p.add_argument("--procs", type=int, default=1, help="load-generator processes (default 1)")
    p.add_argument("--server-workers", type=int, default=1, metavar="N",
                   help="run the server as pica serve --workers N on its embedded store (default 1: plain serve)")
    p.add_argument("--drain", type=float, default=10.0, help="seconds to wait for outstanding acks after a phase")
    p.add_argument("--settle", type=float, default=2.0, help="seconds to let RSS settle before sampling it")
    p.add_argument("--no-fallback", dest="fallback", action="store_const", const=0, default=2,
                   help="do not try lower rates when the given one is not sustained")
    p.add_argument("--quiet-wait", type=float, default=30.0, metavar="S",
                   help="before each load phase wait up to S s for the machine to be idle (default 30; 0: never)")
    p.add_argument("--skip-idle", action="store_true", help="skip the idle-connection memory phase")
    p.add_argument("--skip-latency", action="store_true", help="run the saturation phase only")
    p.add_argument("--idle-only", action="store_true", help="run the idle-connection memory phase only")
    p.add_argument("--quick", action="store_true", help="tiny run for CI smoke tests (< 20 s)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.users, args.duration, args.warmup, args.rate = 10, 1.5, 0.3, [500.0]
        args.idle_conns, args.drain, args.settle, args.fallback = 100, 5.0, 0.3, 0
        args.quiet_wait = 0.0
    args.users = max(2, args.users - args.users % 2)
    args.procs = max(1, min(args.procs, args.users // 2))
    return args


def _rates(text: str) -> list[float]:
    rates = [float(part) for part in text.split(",") if part.strip()]
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError("rates must be positive numbers")
    return rates


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bu.exit_on_sigterm()
    started = time.monotonic()
    calibration = [bu.cpu_calibration_ms()]
    with tempfile.TemporaryDirectory(prefix="pica-bench-") as tmp:
        work = Path(tmp)
        workers = ("--workers", str(args.server_workers)) if args.server_workers > 1 else ()
        with start_server(work, "load", *workers) as server:
            http_port, tcp_port = server.ports
            bu.log(f"server pid {server.pid}: http {http_port}, tcp {tcp_port}; registering {args.users} users")
            t0 = time.monotonic()
            accounts = uvloop.run(register_users(f"http://{bu.HOST}:{http_port}", args.users))
            registration_s = time.monotonic() - t0
            load = [] if args.idle_only else run_load(args, tcp_port, server.pid, accounts)
        idle = [] if args.skip_idle else [measure_idle(args, work, accounts, t) for t in ("tcp", "ws")]
    print(f"## Pica chat benchmark: {args.users} users ({args.users // 2} pairs), TCP + MessagePack, "
          f"{args.procs} load-generator process(es), window {args.window}, {args.duration:g} s per phase"
          f"{f', server --workers {args.server_workers}' if args.server_workers > 1 else ''}\n")
    if load:
        print(load_table(load) + "\n")
    if idle:
        print(idle_table(idle) + "\n")
    if load:
        print(targets_table(load, idle) + "\n")
    calibration.append(bu.cpu_calibration_ms())
    machine = bu.machine_info()
    print(f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB, Python "
          f"{machine['python']}; pica {machine['pica_revision']}; SQLite synchronous=FULL (default), rate limits "
          f"{bu.RATE_LIMITS}, data dir under {work.parent}; CPU calibration {calibration[0]:.0f} / "
          f"{calibration[1]:.0f} ms (before / after)")
    bu.write_json(args.json, {"machine": machine, "args": vars(args), "registration_s": registration_s,
                              "cpu_calibration_ms": calibration,
                              "load": load, "idle": idle, "elapsed_s": time.monotonic() - started})
    bu.log(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
