"""Connections per machine: N authenticated idle connections (TCP and WebSocket mixed), heartbeats running, and
messages still delivered on time among them.

Seeds one user and one session per connection straight into the store before the server starts
(``Store.create_users`` and ``SessionService.open_many``, 1,000 to a transaction; the tokens are minted by the
server's own code from the same configuration and secret, about 19,000 accounts a second on SQLite and 4,000-5,000 on
PostgreSQL here), then starts ``pica serve`` (``--workers 1``: the embedded store, one process, which the 20,000
open-files limit caps at about 19,000 sockets; ``--workers N``: N worker processes sharing the ports, as cluster
nodes, so a PostgreSQL schema and a Redis key prefix of their own are made and dropped afterwards, or with
``--embedded`` on the embedded store: one SQLite file, its shared writer and the supervisor's hub), then
opens ``--conns`` connections from ``--procs`` holder processes (at most ``MAX_PER_PROCESS`` each, under the
open-files limit), each dialling from its own source address 127.0.0.<2+i> so that no single address runs out of
ephemeral ports. ``--ws-share`` of them are WebSocket (JSON), the rest the framed TCP protocol. Every holder answers
the server's pings, so the heartbeats run all along. A connect that fails or takes over 30 s is retried after a
random wait (full jitter, 1 s doubling up to 30 s) until the opening deadline, as a real client reconnects; the run
reports how many failed their first attempt and how many were never held.

Phases, one after the other:

1. **memory**: the server's RSS (every worker process summed) before the connections and once they are all up and
   settled: KiB per connection; the holders' own RSS per connection too (raw asyncio Protocols,
   ``bench/holders.py``: a few KiB each, where aiohttp's WebSocket client took about 16);
2. **idle**: the server's CPU over ``--idle-window`` seconds with nothing but heartbeats (µs per connection-second;
   also net of the server's own CPU over ``--baseline-window`` seconds before any connection, which for 14 cluster
   workers is not nothing), how much of it was the kernel's, and the holders' CPU over the same window;
3. **delivery**: a sender process sends 1:1 messages at ``--rate`` a second for ``--duration`` seconds (open loop,
   paced every millisecond), each to a random held connection's user (or to one of ``--recipients`` of them:
   nearly every message is then in a conversation already open, where otherwise nearly every one opens one); the
   holders time each delivery from the send time the message carries (same machine, monotonic clock): p50 / p99 /
   max, and how many arrived; the sender times each ack from its send the same way (p50 / p99), which is the
   store's part of a delivery. Where the tail
   comes from is printed as well: when the slowest 1 % were sent, in spells (a periodic pause in the server shows as
   spells one period apart), and when a holder's own event loop was late by 20 ms or more (a slow delivery inside
   such a stall is the generator's, not the server's). The senders stay connected until the deliveries are counted:
   each has written to thousands of users, and its going offline is a presence announcement to all of them.

Bounded in count (``--conns`` at most 200,000) and time (every wait has a deadline: the seed 10 minutes, the opening
``--conns / 100`` seconds, at least 5 minutes, or ``--open-deadline``); loopback only. Cleans up after itself, failed
or not: the holders and the sender are killed if they outlive their deadlines, the server's whole process tree if it
outlives its stop, then the schema and the Redis keys are dropped. The heartbeat interval is the server's default
(25 s) unless ``--heartbeat`` says otherwise.

    .venv/bin/python bench/connections.py --conns 18000                       # one process, embedded store
    PICA_POSTGRES_POOL_SIZE=3 .venv/bin/python bench/connections.py --conns 40000 --workers 4 --procs 4
    PICA_POSTGRES_POOL_SIZE=3 .venv/bin/python bench/connections.py --conns 200000 --workers 14 --procs 14
    .venv/bin/python bench/connections.py --conns 200000 --workers 14 --procs 11 --embedded  # no PostgreSQL, no Redis
    .venv/bin/python bench/connections.py --quick                             # a small run for the smoke test

``PICA_POSTGRES_POOL_SIZE=3``: each worker opens a pool of up to 3 connections and 2 write lanes, so 14 workers
take at most 70 of PostgreSQL's 100 connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import multiprocessing as mp
import os
import random
import secrets
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

import benchutil as bu
import chat
import psutil
import uvloop
from holders import Held, HeldTcp, HeldWs

from pica.app import token_secret
from pica.config import load_config
from pica.core.passwords import PasswordHasher
from pica.core.ports import SystemClock
from pica.core.sessions import SessionService
from pica.core.tokens import RefreshTokens, TokenService
from pica.protocol import frames as f
from pica.protocol.codec import Encoding, decode_server_frame, encode
from pica.protocol.framing import frame_bytes
from pica.store.factory import build_store

MSGPACK = Encoding.MSGPACK
MAX_CONNS = 200_000
MAX_PER_PROCESS = 19_000
"""Connections one holder process opens at most: the open-files limit is 20,000 per process."""
PASSWORD = "bench-password-123"
TOKEN_TTL = 3600
"""Seconds the seeded access tokens stay valid: the last connection of a 200,000 run opens minutes after the seed."""
SEED_BATCH = 1_000
"""Accounts per store transaction when seeding (and sessions per transaction after them)."""
SEED_IN_FLIGHT = 3
"""Seed transactions at once: under the PostgreSQL pool (PICA_POSTGRES_POOL_SIZE=3 for 14 workers)."""
SEED_DEADLINE = 600.0
START_DEADLINE = 180.0
CONNECT_DEADLINE = 30.0
"""Seconds one connect attempt (TCP connect, then authentication up to ``ready``) may take before it is retried."""
OPEN_IN_FLIGHT = 100
"""Connect attempts at once per holder process."""
RETRY_FIRST = 1.0
RETRY_MAX = 30.0
"""A failed connect is retried after a random wait of up to RETRY_FIRST seconds, doubling up to RETRY_MAX (full
jitter, as clients reconnect), until the opening deadline."""
OPEN_FLOOR = 100.0
"""Connects a second below which the opening phase is given up: its deadline is ``--conns / OPEN_FLOOR`` seconds
(at least OPEN_MIN_DEADLINE; 2,000 s for 200,000, which opened at 290-1,100 a second in smaller runs here)."""
OPEN_MIN_DEADLINE = 300.0
OPEN_GRACE = 10.0
"""Seconds after the opening deadline a holder waits for attempts in flight before it cuts them and reports."""
HOLD_DEADLINE = 3600.0
"""Seconds a holder waits for its next command before it lets its connections go by itself."""
HOLDER_STALL_REPORTED_US = 20_000
STOP_DEADLINE = 60.0
"""Seconds the server (every worker draining its connections) has to exit before it is killed."""
DEFAULT_DSN = os.environ.get("PICA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
DEFAULT_REDIS = os.environ.get("PICA_TEST_REDIS", "redis://127.0.0.1:6379/0")


# ====================================================================================================== holders


@dataclass(frozen=True, slots=True)
class HolderSpec:
    index: int
    source: str
    http_ports: list[int]
    tcp_ports: list[int]
    tokens: list[str]
    ws_share: float
    open_until: float
    """The opening deadline, wall-clock seconds (the parent's and the holders' clocks are one): no connect attempt
    runs past it. Absolute, because 11 holders importing under load started a minute late in the 200,000 run, and a
    deadline counted from each one's start outlived the parent's wait for their reports."""


def holder_main(spec: HolderSpec, pipe: Pipe) -> None:
    uvloop.run(_holder(spec, pipe))


async def _holder(spec: HolderSpec, pipe: Pipe) -> None:
    """Open every connection of ``spec`` (at most OPEN_IN_FLIGHT at once), each retried with backoff until the
    opening deadline as a real client reconnects; report, then hold them until told to close."""
    held = Held()
    loop = asyncio.get_running_loop()
    watch = loop.create_task(held.watch_loop())
    slots = asyncio.Semaphore(OPEN_IN_FLIGHT)
    conns: list[HeldTcp | HeldWs] = []
    deadline = time.monotonic() + spec.open_until - time.time()
    first_failures: list[str] = []
    attempts = [0]
    opened = array("i")
    """The indexes in ``spec.tokens`` of the connections held: the delivery phase sends to those users only."""

    async def dial(i: int, token: str) -> HeldTcp | HeldWs:
        device = f"h{spec.index}-{i}"
        port = i % len(spec.tcp_ports)
        conn: HeldTcp | HeldWs
        if (i * 7919 % 1000) / 1000 < spec.ws_share:  # spread evenly, whatever the order
            http_port = spec.http_ports[port]
            _, conn = await loop.create_connection(lambda: HeldWs(held, token, device, bu.HOST, http_port),
                                                   bu.HOST, http_port, local_addr=(spec.source, 0))
        else:
            _, conn = await loop.create_connection(lambda: HeldTcp(held, token, device), bu.HOST,
                                                   spec.tcp_ports[port], local_addr=(spec.source, 0))
        assert conn.ready is not None
        try:
            await conn.ready
        except BaseException:
            if conn.transport is not None:
                conn.transport.abort()
            raise
        conn.ready = None  # nothing waits on it any more: one object less per connection
        return conn

    async def one(i: int, token: str) -> None:
        backoff = RETRY_FIRST
        while True:
            try:
                async with slots:  # the attempt's deadline counts from its turn, not from the queue
                    if time.monotonic() >= deadline:  # queued past the deadline: give up, do not dial
                        raise TimeoutError("the opening deadline passed before this connect's turn")
                    attempts[0] += 1
                    async with asyncio.timeout(min(CONNECT_DEADLINE, max(0.1, deadline - time.monotonic()))):
                        conns.append(await dial(i, token))
                        opened.append(i)
                return
            except (OSError, TimeoutError) as exc:
                if backoff == RETRY_FIRST:
                    first_failures.append(repr(exc))
                wait = random.uniform(0, backoff)  # full jitter: a storm of failures does not come back as one
                if time.monotonic() + wait >= deadline:
                    raise
                await asyncio.sleep(wait)
                backoff = min(backoff * 2, RETRY_MAX)

    dials = [loop.create_task(one(i, t)) for i, t in enumerate(spec.tokens)]
    # The report goes at the deadline whatever a dial is doing: an attempt stuck past its own timeout (a loop too
    # busy to run it) would otherwise hold back the whole run's report, as it did twice at 200,000.
    _, late = await asyncio.wait(dials, timeout=max(0.0, deadline - time.monotonic()) + OPEN_GRACE)
    for task in late:
        task.cancel()
    outcomes = await asyncio.gather(*dials, return_exceptions=True)
    failures = [repr(o) for o in outcomes if isinstance(o, BaseException)]
    if late:
        print(f"holder {spec.index}: {len(late):,} connects still dialling {OPEN_GRACE:.0f} s after the opening "
              "deadline were cut", file=sys.stderr, flush=True)
    gc.collect()
    n_tcp = sum(1 for c in conns if isinstance(c, HeldTcp))
    pipe.send(("open", n_tcp, len(conns) - n_tcp, (failures or first_failures)[:3], len(failures),
               len(first_failures), attempts[0], psutil.Process().memory_info().rss, opened.tobytes()))
    while True:
        command = await asyncio.to_thread(_poll, pipe, HOLD_DEADLINE)
        if command != "report":
            break
        pipe.send(("report", held.latencies.tobytes(), held.sent_at.tobytes(), held.stalls.tobytes(), held.pings))
        held.latencies, held.sent_at, held.stalls = array("q"), array("q"), array("q")
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    watch.cancel()


def _poll(pipe: Pipe, timeout: float) -> Any:
    return pipe.recv() if pipe.poll(timeout) else None


# ====================================================================================================== sender


@dataclass(frozen=True, slots=True)
class SenderSpec:
    tcp_ports: list[int]
    tokens: list[str]
    recipients: list[int]
    rate: float
    duration: float


def sender_main(spec: SenderSpec, pipe: Pipe) -> None:
    uvloop.run(_sender(spec, pipe))


class SenderConn(HeldTcp):
    __slots__ = ("ack_latencies", "acked", "errors", "sent_us")

    def __init__(self, held: Held, token: str, device: str) -> None:
        super().__init__(held, token, device)
        self.acked = 0
        self.errors = 0
        self.sent_us: dict[int, int] = {}
        """Send time (monotonic µs) by frame id, until its ack: the store's part of a delivery, apart from the bus's."""
        self.ack_latencies = array("q")

    def data_received(self, data: bytes) -> None:
        for payload in self.reader.feed(data):
            frame = decode_server_frame(payload, MSGPACK)
            if isinstance(frame, f.Sent):
                self.acked += 1
                t0 = self.sent_us.pop(frame.ref, None) if frame.ref is not None else None
                if t0 is not None:
                    self.ack_latencies.append(time.monotonic_ns() // 1000 - t0)
            elif isinstance(frame, f.Error):
                self.errors += 1
            elif isinstance(frame, f.Ping) and self.transport is not None:
                self.transport.write(frame_bytes(encode(f.Pong(ref=frame.id), MSGPACK)))
            elif isinstance(frame, f.Ready) and self.ready is not None and not self.ready.done():
                self.ready.set_result(None)


async def _sender(spec: SenderSpec, pipe: Pipe) -> None:
    loop = asyncio.get_running_loop()
    conns: list[SenderConn] = []
    for i, token in enumerate(spec.tokens):
        _, conn = await asyncio.wait_for(loop.create_connection(
            lambda t=token, d=f"sender{i}": SenderConn(Held(), t, d),  # type: ignore[misc]
            bu.HOST, spec.tcp_ports[i % len(spec.tcp_ports)]), CONNECT_DEADLINE)
        assert conn.ready is not None
        await asyncio.wait_for(conn.ready, CONNECT_DEADLINE)
        conns.append(conn)
    pipe.send("ready")
    if await asyncio.to_thread(_poll, pipe, 120) != "go":
        return
    start = time.monotonic_ns()
    end = start + int(spec.duration * 1e9)
    sent = 0
    rng = random.Random(7)
    while (now := time.monotonic_ns()) < end:
        due = int((now - start) * spec.rate / 1e9) + 1
        while sent < due:
            conn = conns[sent % len(conns)]
            sent += 1
            frame = f.Send(to=rng.choice(spec.recipients), client_msg_id=f"m{sent}",
                           body={"text": "ping", "t0_us": now // 1000}, id=sent)
            assert conn.transport is not None
            conn.sent_us[sent] = now // 1000
            conn.transport.write(frame_bytes(encode(frame, MSGPACK)))
        await asyncio.sleep(0.001)
    deadline = time.monotonic() + 30
    while sum(c.acked + c.errors for c in conns) < sent and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    acks = array("q")
    for conn in conns:
        acks.extend(conn.ack_latencies)
    pipe.send(("sent", sent, sum(c.acked for c in conns), sum(c.errors for c in conns), acks.tobytes()))
    # Held open until the deliveries are all counted: each sender has written to thousands of users by now, so its
    # going offline announces its presence to all of them, and that burst would land on the last deliveries.
    await asyncio.to_thread(_poll, pipe, 120)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()


# ====================================================================================================== server


@dataclass
class Server:
    process: bu.ServerProcess
    http_ports: list[int]
    tcp_ports: list[int]

    def pids(self) -> list[int]:
        proc = psutil.Process(self.process.pid)
        return [proc.pid, *(c.pid for c in proc.children(recursive=True))]

    def rss(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += psutil.Process(pid).memory_info().rss
        return total


def server_env(args: argparse.Namespace, schema: str, prefix: str) -> dict[str, str]:
    """The environment of the server and of the seeding alike: the same store, token secret and lifetimes."""
    env = {**os.environ, "PICA_AUTH_TOKEN_SECRET": secrets.token_hex(32), "PICA_AUTH_TOKEN_TTL": str(TOKEN_TTL)}
    if args.heartbeat:
        env["PICA_LIMITS_HEARTBEAT_INTERVAL"] = str(args.heartbeat)
        env["PICA_LIMITS_IDLE_TIMEOUT"] = str(max(args.heartbeat * 3, 75.0))
    if schema:
        env.update(PICA_POSTGRES_SCHEMA=schema, PICA_REDIS_PREFIX=prefix)
    return env


def seed_accounts(args: argparse.Namespace, env: dict[str, str], work: Path, count: int) -> list[chat.Account]:
    """``count`` users and a session each, written straight into the store (no HTTP, one Argon2 hash for all)."""
    return asyncio.run(asyncio.wait_for(_seed(args, env, work, count), SEED_DEADLINE))


async def _seed(args: argparse.Namespace, env: dict[str, str], work: Path, count: int) -> list[chat.Account]:
    store_url = args.dsn if clustered(args) else None
    config = load_config(env=env, overrides={"data_dir": str(work / "data"), "store": store_url})
    auth = config.auth
    hasher = PasswordHasher(time_cost=auth.argon2_time_cost, memory_kib=auth.argon2_memory_kib,
                            parallelism=auth.argon2_parallelism, concurrency=1)
    password_hash = await hasher.hash(PASSWORD)  # one real hash: every account can also log in with PASSWORD
    secret = token_secret(config)
    store = build_store(config)
    await store.open()
    try:
        sessions = SessionService(store, TokenService(secret, auth.token_ttl, auth.token_algorithm),
                                  RefreshTokens(secret), SystemClock(), auth)
        slots = asyncio.Semaphore(SEED_IN_FLIGHT)

        async def batch(first: int) -> list[chat.Account]:
            names = [f"c{i:06d}" for i in range(first, min(count, first + SEED_BATCH))]
            async with slots:
                made = await store.create_users(names, password_hash, int(time.time() * 1000))
                user_ids = [user_id for user_id in made if user_id is not None]
                if len(user_ids) != len(names):
                    raise RuntimeError(f"{len(names) - len(user_ids)} of the seeded names were taken")
                tokens = await sessions.open_many(user_ids, bu.HOST, "bench/connections.py")
            return [chat.Account(t.user_id, t.token) for t in tokens]

        began = time.monotonic()
        parts = await asyncio.gather(*(batch(first) for first in range(0, count, SEED_BATCH)))
        seconds = time.monotonic() - began
        bu.log(f"seeded {count:,} users and sessions in {seconds:.1f} s ({count / seconds:,.0f}/s)")
        return [account for part in parts for account in part]
    finally:
        await store.close()


def prepare_cluster(args: argparse.Namespace) -> tuple[str, str]:
    """A PostgreSQL schema and a Redis key prefix of the run's own."""
    import cluster

    schema, prefix = f"t_{secrets.token_hex(6)}", f"pica-bench-{secrets.token_hex(6)}:"
    cluster.pg(args.dsn, f'CREATE SCHEMA "{schema}"')
    return schema, prefix


def clustered(args: argparse.Namespace) -> bool:
    """Workers as cluster nodes on --dsn and --redis (not --embedded)."""
    return args.workers > 1 and not args.embedded


def start_server(args: argparse.Namespace, env: dict[str, str], work: Path) -> bu.ServerProcess:
    extra = ["--workers", str(args.workers)] if args.workers > 1 else []
    if clustered(args):
        extra += ["--store", args.dsn, "--cluster", args.redis]
    return bu.ServerProcess(
        [sys.executable, "-m", "pica", "serve", "--port", "0", "--tcp-port", "0", "--host", bu.HOST,
         "--data-dir", str(work / "data"), "--ready-file", str(work / "ready"), "--log-level", "WARNING", *extra],
        work / "ready", work / "server.log", env=env)


def stop_server(server: Server | None) -> None:
    """SIGTERM and the server's own drain (every worker closes its connections), then SIGKILL whatever of its
    process tree is left: a supervisor killed after its deadline must not leave workers behind."""
    if server is None:
        return
    pids = server.pids() if server.process.proc is not None and server.process.proc.poll() is None else []
    server.process.stop(timeout=STOP_DEADLINE)
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            proc.kill()
            proc.wait(5)


def kernel_seconds(pids: list[int]) -> float:
    """System (kernel) CPU seconds of these processes: on loopback, a write also pays for the peer's receive."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += psutil.Process(pid).cpu_times().system
    return total


def drop_cluster(args: argparse.Namespace, schema: str, prefix: str) -> None:
    if schema:
        import cluster

        services = cluster.Services(args.dsn, args.redis)
        cluster.stop_cluster(services, cluster.Run(0, schema, prefix, []))


# ====================================================================================================== phases


def percentiles(values: array[int]) -> dict[str, float]:
    ordered = sorted(values)
    return {"count": len(ordered), "p50_ms": bu.percentile(ordered, 50) / 1000,
            "p99_ms": bu.percentile(ordered, 99) / 1000, "max_ms": (ordered[-1] / 1000) if ordered else math.nan}


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    schema = prefix = ""
    server: Server | None = None
    holders: list[chat.Worker] = []
    sender: mp.process.BaseProcess | None = None
    try:
        if clustered(args):
            schema, prefix = prepare_cluster(args)
        env = server_env(args, schema, prefix)
        seeded_at = time.monotonic()
        accounts = seed_accounts(args, env, work, args.conns + args.senders)
        seed_seconds = time.monotonic() - seeded_at
        senders, held_accounts = accounts[:args.senders], accounts[args.senders:]
        server = Server(start_server(args, env, work), [], [])
        http_port, tcp_port = server.process.start(timeout=START_DEADLINE)
        server.http_ports, server.tcp_ports = [http_port], [tcp_port]
        time.sleep(2)
        rss_before = server.rss()
        base_first = bu.snapshot(server.pids())
        time.sleep(args.baseline_window)
        base_second = bu.snapshot(server.pids())
        baseline_cpu = sum(base_first.cpu(base_second, pid) for pid in base_first.procs if pid in base_second.procs)
        baseline_pct = 100 * baseline_cpu / max(base_second.at - base_first.at, 1e-9)
        procs = max(args.procs, math.ceil(args.conns / MAX_PER_PROCESS))
        ctx = mp.get_context("spawn")
        opened_at = time.monotonic()
        open_budget = args.open_deadline or max(OPEN_MIN_DEADLINE, args.conns / OPEN_FLOOR)
        open_until = time.time() + open_budget
        open_deadline = opened_at + open_budget + OPEN_GRACE + 60  # the holders' reports, after their last attempts
        for index in range(procs):
            part = [a.token for a in held_accounts[index::procs]]
            spec = HolderSpec(index, f"127.0.0.{2 + index}", server.http_ports, server.tcp_ports, part,
                              args.ws_share, open_until)
            parent, child = ctx.Pipe()
            process = ctx.Process(target=holder_main, args=(spec, child), daemon=True)
            process.start()
            holders.append(chat.Worker(process, parent))
        tcp = ws = failed = first_failed = attempts = holder_rss = 0
        failures: list[str] = []
        recipients: list[int] = []
        for index, holder in enumerate(holders):
            _, n_tcp, n_ws, errors, n_failed, n_first, n_attempts, rss, opened = chat.recv(
                holder, max(1.0, open_deadline - time.monotonic()))
            mine = held_accounts[index::procs]
            recipients.extend(mine[i].user_id for i in array("i", opened))
            tcp, ws, failed, holder_rss = tcp + n_tcp, ws + n_ws, failed + n_failed, holder_rss + rss
            first_failed, attempts = first_failed + n_first, attempts + n_attempts
            failures.extend(errors)
        open_seconds = time.monotonic() - opened_at
        held = tcp + ws
        bu.log(f"holding {held:,} connections ({tcp:,} TCP, {ws:,} WebSocket) after {open_seconds:.0f} s; "
               f"{first_failed:,} failed their first attempt, {failed:,} never held ({attempts:,} attempts)")
        rss_after = bu.settled_rss(server.process.pid, settle=args.settle) and server.rss()
        holder_pids = [h.process.pid for h in holders if h.process.pid is not None]
        first, kernel_first = bu.snapshot(server.pids()), kernel_seconds(server.pids())
        holders_first = bu.snapshot(holder_pids)
        time.sleep(args.idle_window)
        second, kernel_second = bu.snapshot(server.pids()), kernel_seconds(server.pids())
        holders_second = bu.snapshot(holder_pids)
        idle_cpu = sum(first.cpu(second, pid) for pid in first.procs if pid in second.procs)
        idle_seconds = second.at - first.at
        holders_idle = sum(holders_first.cpu(holders_second, pid) for pid in holder_pids)
        for holder in holders:  # latencies so far are not the delivery phase's
            holder.pipe.send("report")
            chat.recv(holder, 60)
        if args.recipients:  # a few users, so that nearly every message lands in a conversation already open
            recipients = random.Random(11).sample(recipients, min(args.recipients, len(recipients)))
        parent, child = ctx.Pipe()
        sender = ctx.Process(target=sender_main, args=(SenderSpec(server.tcp_ports, [a.token for a in senders],
                                                                  recipients, args.rate, args.duration), child),
                             daemon=True)
        sender.start()
        sender_worker = chat.Worker(sender, parent)
        chat.recv(sender_worker, 60)
        cpu_start = bu.snapshot(server.pids())
        parent.send("go")
        _, sent, acked, errors, ack_data = chat.recv(sender_worker, args.duration + 60)
        ack_latencies = array("q")
        ack_latencies.frombytes(ack_data)
        ack = percentiles(ack_latencies)
        cpu_end = bu.snapshot(server.pids())
        time.sleep(1)  # the last deliveries reach the holders
        latencies, sent_at, stalls = array("q"), array("q"), array("q")
        pings = 0
        for holder in holders:
            holder.pipe.send("report")
            _, data, times, holder_stalls, holder_pings = chat.recv(holder, 60)
            latencies.frombytes(data)
            sent_at.frombytes(times)
            stalls.frombytes(holder_stalls)
            pings += holder_pings
        delivery = percentiles(latencies)
        # When the slowest 1 % were sent, in spells less than a second apart (µs here).
        slow = bu.slow_spells(sent_at, latencies, delivery["p99_ms"] * 1000, gap=1e6, unit=1e6)
        start = min(sent_at, default=0)
        stalled = [(round((stalls[i] - start) / 1e6, 2), round(stalls[i + 1] / 1e3, 1))
                   for i in range(0, len(stalls), 2) if stalls[i + 1] >= HOLDER_STALL_REPORTED_US
                   and stalls[i] + stalls[i + 1] >= start]
        parent.send("close")
        sender.join(10)
        load_cpu = sum(cpu_start.cpu(cpu_end, pid) for pid in cpu_start.procs if pid in cpu_end.procs)
        return {
            "workers": args.workers, "connections": held, "tcp": tcp, "ws": ws, "failed": failed,
            "first_try_failed": first_failed, "attempts": attempts,
            "failures": failures[:5], "open_seconds": round(open_seconds, 1),
            "connects_per_s": round(held / open_seconds), "seed_seconds": round(seed_seconds, 1),
            "holders_kib_per_conn": round(holder_rss / max(held, 1) / 1024, 2),
            "rss_before_mib": round(rss_before / 2**20, 1),
            "rss_after_mib": round(rss_after / 2**20, 1),
            "kib_per_conn": round((rss_after - rss_before) / max(held, 1) / 1024, 2),
            "idle_cpu_pct": round(100 * idle_cpu / idle_seconds, 1),
            "idle_us_per_conn_s": round(idle_cpu / idle_seconds / max(held, 1) * 1e6, 3),
            "baseline_cpu_pct": round(baseline_pct, 1),
            "idle_us_per_conn_s_net": round((idle_cpu / idle_seconds - baseline_pct / 100) / max(held, 1) * 1e6, 3),
            "idle_kernel_pct": round(100 * (kernel_second - kernel_first) / idle_seconds, 1),
            "holders_idle_cpu_pct": round(100 * holders_idle / idle_seconds, 1),
            "rate": args.rate, "recipients": args.recipients or held, "sent": sent, "acked": acked, "errors": errors,
            "delivered": delivery["count"], "delivery_p50_ms": round(delivery["p50_ms"], 2),
            "delivery_p99_ms": round(delivery["p99_ms"], 2), "delivery_max_ms": round(delivery["max_ms"], 2),
            "acks_timed": ack["count"], "ack_p50_ms": round(ack["p50_ms"], 2), "ack_p99_ms": round(ack["p99_ms"], 2),
            "load_cpu_pct": round(100 * load_cpu / (cpu_end.at - cpu_start.at), 1), "pings_answered": pings,
            "slow_spells": slow, "holder_stalls": stalled, "first_send_monotonic_s": start / 1e6,
            "holder_stall_max_ms": round(max(stalls[1::2], default=0) / 1e3, 1),
        }
    finally:
        for holder in holders:
            with contextlib.suppress(OSError):
                holder.pipe.send("close")
        closing = time.monotonic() + 60
        for holder in holders:
            holder.process.join(max(0.1, closing - time.monotonic()))
            if holder.process.is_alive():
                holder.process.kill()
                holder.process.join(5)
        if sender is not None and sender.is_alive():
            sender.kill()
            sender.join(5)
        stop_server(server)
        drop_cluster(args, schema, prefix)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conns", type=int, default=18_000, help=f"connections to hold (default 18,000; at most "
                   f"{MAX_CONNS:,}; one server process holds at most about 19,000)")
    p.add_argument("--ws-share", type=float, default=0.5, help="share of WebSocket connections (default 0.5)")
    p.add_argument("--procs", type=int, default=2, help="holder processes, each from its own 127.0.0.x (default 2;"
                   f" more when needed for {MAX_PER_PROCESS:,} per process)")
    p.add_argument("--workers", type=int, default=1, help="pica serve --workers (more than 1: cluster mode on "
                   "--dsn and --redis, unless --embedded)")
    p.add_argument("--embedded", action="store_true", help="the workers on the embedded store (one SQLite file, "
                   "its shared writer and the supervisor's hub; no PostgreSQL, no Redis)")
    p.add_argument("--rate", type=float, default=1_000.0, help="messages per second in the delivery phase")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of the delivery phase (default 20)")
    p.add_argument("--senders", type=int, default=10, help="sending connections (default 10)")
    p.add_argument("--recipients", type=int, default=0, help="send to this many of the held users only (default: "
                   "all of them, so nearly every message opens a conversation; a few dozen: open conversations)")
    p.add_argument("--idle-window", type=float, default=30.0, help="seconds of idle CPU measured (default 30)")
    p.add_argument("--baseline-window", type=float, default=10.0, help="seconds of the server's CPU measured "
                   "before any connection (default 10), subtracted in idle_us_per_conn_s_net")
    p.add_argument("--settle", type=float, default=5.0, help="seconds before RSS is read (default 5)")
    p.add_argument("--open-deadline", type=float, default=0.0, help="seconds the holders keep opening and "
                   "retrying connections (default: --conns / 100, at least 300)")
    p.add_argument("--heartbeat", type=float, default=0.0, help="server heartbeat interval (default: its own, 25 s)")
    p.add_argument("--dsn", default=DEFAULT_DSN)
    p.add_argument("--redis", default=DEFAULT_REDIS)
    p.add_argument("--quick", action="store_true", help="a small run for CI smoke tests")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    if args.quick:
        args.conns, args.rate, args.duration, args.idle_window, args.settle, args.senders = 200, 100.0, 2.0, 1.0, 0.5, 2
        args.baseline_window = 0.5
    if not 0 < args.conns <= MAX_CONNS:
        p.error(f"--conns must be 1..{MAX_CONNS}")
    bu.exit_on_sigterm()
    calibration = bu.cpu_calibration_ms()
    with tempfile.TemporaryDirectory(prefix="pica-connections-") as tmp:
        result = run(args, Path(tmp))
    print(f"## {result['connections']:,} connections ({result['tcp']:,} TCP, {result['ws']:,} WebSocket), "
          f"{args.workers} worker(s){' on the embedded store' if args.embedded and args.workers > 1 else ''}\n")
    print(bu.markdown_table(
        ["connections", "failed first try / never held", "seeded in s", "opened in s (conn/s)",
         "server RSS MiB before / after",
         "KiB per connection (holders' KiB)",
         "idle CPU % (µs per conn·s) [kernel %; holders %]", "msg/s sent / acked / delivered (to users)",
         "delivery p50 / p99 / max ms", "ack p50 / p99 ms",
         "server CPU % under load"],
        [[result["connections"], f"{result['first_try_failed']:,} / {result['failed']:,}", result["seed_seconds"],
          f"{result['open_seconds']} ({result['connects_per_s']:,})",
          f"{result['rss_before_mib']} / {result['rss_after_mib']}",
          f"{result['kib_per_conn']} ({result['holders_kib_per_conn']})",
          f"{result['idle_cpu_pct']} ({result['idle_us_per_conn_s']}, net of the "
          f"{result['baseline_cpu_pct']} % baseline {result['idle_us_per_conn_s_net']}) "
          f"[{result['idle_kernel_pct']}; {result['holders_idle_cpu_pct']}]",
          f"{result['sent'] / args.duration:,.0f} / {result['acked']:,} / {result['delivered']:,} "
          f"({result['recipients']:,})",
          f"{result['delivery_p50_ms']} / {result['delivery_p99_ms']} / {result['delivery_max_ms']}",
          f"{result['ack_p50_ms']} / {result['ack_p99_ms']}", result["load_cpu_pct"]]]))
    if result["holder_stalls"]:
        print(f"\nholders' own event loops late by {HOLDER_STALL_REPORTED_US // 1000} ms or more (s from the first "
              "send, ms late; a slow delivery inside one is the generator's, not the server's): " + ", ".join(
                  f"{at} s: {ms}" for at, ms in result["holder_stalls"][:30]))
    if result["slow_spells"]:
        print("\nthe slowest 1 % by send time (s from the first send: count, worst ms): " + ", ".join(
            f"{s['at_s']} s: {s['count']}, {s['worst_ms']}" for s in result["slow_spells"]))
    info = bu.machine_info()
    print(f"\nmachine: {info}; pica {bu.pica_revision()}; rate limits {bu.RATE_LIMITS}; "
          f"CPU calibration {calibration:.0f} ms")
    bu.write_json(args.json, {"machine": info, "revision": bu.pica_revision(), "result": result})
    return 0 if result["failed"] == 0 and result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
