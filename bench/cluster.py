"""Cluster benchmark: durable 1:1 messages across 2 and 3 Pica nodes on PostgreSQL + Redis.

For each cluster size in ``--nodes`` it makes a fresh PostgreSQL schema (``t_<hex>``, dropped afterwards) and Redis
key prefix (``pica-bench-<hex>:``, keys deleted afterwards), runs ``pica migrate``, starts that many ``pica serve``
processes (``--store`` / ``--cluster``, free ports, one shared token secret), registers ``2 * --pairs`` users, and
puts the two users of every pair on **different nodes** (user a on node k mod N, user b on node k+1 mod N), so that
every message crosses the Redis bus. The load generators are those of ``bench/chat.py`` (raw TCP + MessagePack, each
connection keeps ``--window`` sends in flight to its partner: closed loop); a ``sent`` ack means the message was
committed in PostgreSQL.

Besides messages/s and latencies it samples, over the measured window:

* CPU of the node processes (psutil), of the PostgreSQL backends serving those nodes (matched by client port in
  ``pg_stat_activity``), of PostgreSQL's background processes (WAL writer, checkpointer, ...: of every server on the
  machine), and of the Redis server (the process listening on the Redis port) when visible;
* PostgreSQL ``xact_commit`` (whole database: other users of a shared server count too) and rows inserted into the
  benchmark's own schema (``pg_stat_user_tables.n_tup_ins``; PostgreSQL flushes these counters about once a second,
  so short windows are approximate), and the exact growth of its ``messages`` table;
* Redis ``total_commands_processed`` (whole server).

Benchmark users get cheap password hashes (``PICA_AUTH_ARGON2_*``) so that set-up does not dominate; this changes
nothing on the message path. All traffic goes to 127.0.0.1.

    .venv/bin/python bench/cluster.py                      # 2 and 3 nodes, 30 pairs, 10 s each
    .venv/bin/python bench/cluster.py --quick              # CI smoke run (2 nodes, a few seconds)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing as mp
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import benchutil as bu
import chat
import psutil
import uvloop

PASSWORD = chat.PASSWORD


# ====================================================================================================== services


@dataclass(frozen=True, slots=True)
class Services:
    store: str
    """postgresql:// URL of the database (a schema of its own is made in it)."""
    bus: str
    """redis:// URL."""

    @property
    def redis_host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.bus)
        return parts.hostname or bu.HOST, parts.port or 6379

    @property
    def pg_port(self) -> int:
        return urlsplit(self.store).port or 5432


async def _pg(dsn: str, query: str, *args: Any) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def pg(dsn: str, query: str, *args: Any) -> list[Any]:
    return uvloop.run(_pg(dsn, query, *args))


def redis_client(services: Services) -> Any:
    import redis

    host, port = services.redis_host_port
    return redis.Redis(host=host, port=port, socket_timeout=5)


def redis_pid(port: int) -> int | None:
    """The process listening on the Redis port, when this user may see it."""
    with contextlib.suppress(psutil.Error, OSError):
        for c in psutil.net_connections("tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid:
                return int(c.pid)
    return None


PG_BACKGROUND = ("walwriter", "wal writer", "checkpointer", "background writer", "autovacuum", "logical replication",
                 "stats collector")


def pg_background_pids() -> list[int]:
    """PostgreSQL's own background processes (WAL writer, checkpointer, ...), of every server on this machine."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            title = " ".join(proc.info["cmdline"] or [])
            if proc.info["name"] == "postgres" and any(part in title for part in PG_BACKGROUND):
                found.append(proc.pid)
    return found


def pg_backend_pids(services: Services, node_pids: list[int]) -> list[int]:
    """PostgreSQL backends serving the nodes: their client ports, as the nodes' own sockets show them."""
    ports: set[int] = set()
    for pid in node_pids:
        with contextlib.suppress(psutil.Error):
            for c in psutil.Process(pid).net_connections("tcp"):
                if c.raddr and c.raddr.port == services.pg_port:
                    ports.add(c.laddr.port)
    rows = pg(services.store, "SELECT pid, client_port FROM pg_stat_activity WHERE client_port IS NOT NULL")
    return [int(r["pid"]) for r in rows if r["client_port"] in ports]


@dataclass(frozen=True, slots=True)
class Counters:
    at: float
    cpu: dict[int, float]
    """CPU seconds (user + system) of each sampled pid; a pid that went away is left out."""
    xact_commit: int
    tup_inserted: int
    schema_rows: int
    messages: int
    """Rows in the schema's messages table (exact, unlike the statistics counters)."""
    redis_commands: int


def counters(services: Services, schema: str, pids: list[int]) -> Counters:
    cpu: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            cpu[pid] = times.user + times.system
    database = urlsplit(services.store).path.lstrip("/") or "postgres"
    (db,) = pg(services.store, "SELECT xact_commit, tup_inserted FROM pg_stat_database WHERE datname = $1", database)
    (own,) = pg(services.store, "SELECT coalesce(sum(n_tup_ins), 0)::bigint AS rows FROM pg_stat_user_tables "
                                "WHERE schemaname = $1", schema)
    (messages,) = pg(services.store, f'SELECT count(*) AS n FROM "{schema}".messages')
    try:
        commands = int(redis_client(services).info("stats")["total_commands_processed"])
    except Exception:
        commands = -1
    return Counters(time.monotonic(), cpu, int(db["xact_commit"]), int(db["tup_inserted"]), int(own["rows"]),
                    int(messages["n"]), commands)


def cpu_between(first: Counters, last: Counters, pids: list[int]) -> float:
    return sum(last.cpu[p] - first.cpu[p] for p in pids if p in first.cpu and p in last.cpu)


# ====================================================================================================== load generator


@dataclass(frozen=True, slots=True)
class PairSpec:
    a: chat.Account
    a_port: int
    b: chat.Account
    b_port: int


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    index: int
    pairs: list[PairSpec]


def worker_main(spec: WorkerSpec, pipe: Pipe) -> None:
    """Entry point of a load-generator process (the phase loop of bench/chat.py over connections to many nodes)."""
    uvloop.run(_worker(spec, pipe))


async def _worker(spec: WorkerSpec, pipe: Pipe) -> None:
    loop = asyncio.get_running_loop()
    conns: list[chat.BenchConnection] = []
    for n, pair in enumerate(spec.pairs):
        for account, port, peer, side in ((pair.a, pair.a_port, pair.b, "a"), (pair.b, pair.b_port, pair.a, "b")):
            conn = chat.BenchConnection(account, peer.user_id, f"w{spec.index}p{n}{side}")
            await loop.create_connection(lambda c=conn: c, bu.HOST, port)  # type: ignore[misc]
            conns.append(conn)
    await asyncio.wait_for(asyncio.gather(*(c.ready for c in conns)), 30)
    await chat.serve_phases(conns, pipe)


def start_workers(procs: int, pairs: list[PairSpec]) -> list[chat.Worker]:
    ctx = mp.get_context("spawn")
    workers = []
    for index in range(procs):
        parent, child = ctx.Pipe()
        process = ctx.Process(target=worker_main, args=(WorkerSpec(index, pairs[index::procs]), child), daemon=True)
        process.start()
        workers.append(chat.Worker(process, parent))
    for worker in workers:
        reply = chat.recv(worker, 60.0)
        if not (isinstance(reply, tuple) and reply[0] == "ready"):
            raise RuntimeError(f"load generator failed to start: {reply!r}")
    return workers


# ====================================================================================================== one cluster


@dataclass
class Run:
    size: int
    schema: str
    prefix: str
    nodes: list[bu.ServerProcess]


def node_env(schema: str, prefix: str, secret: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PICA_POSTGRES_SCHEMA": schema,
        "PICA_REDIS_PREFIX": prefix,
        "PICA_AUTH_TOKEN_SECRET": secret,
        "PICA_AUTH_ARGON2_TIME_COST": "1",
        "PICA_AUTH_ARGON2_MEMORY_KIB": "1024",
    }


def start_cluster(services: Services, size: int, work: Path) -> Run:
    schema = f"t_{secrets.token_hex(6)}"
    prefix = f"pica-bench-{secrets.token_hex(6)}:"
    env = node_env(schema, prefix, secrets.token_hex(32))
    work.mkdir(parents=True, exist_ok=True)
    pg(services.store, f'CREATE SCHEMA "{schema}"')
    run = Run(size, schema, prefix, [])
    try:
        migrated = subprocess.run([sys.executable, "-m", "pica", "migrate", "--store", services.store], env=env,
                                  capture_output=True, text=True, timeout=120, check=False, cwd=work)
        if migrated.returncode != 0:
            raise RuntimeError(f"pica migrate failed: {migrated.stderr[-2000:]}")
        for i in range(size):
            home = work / f"n{i + 1}"
            home.mkdir(parents=True, exist_ok=True)
            run.nodes.append(bu.ServerProcess(
                [sys.executable, "-m", "pica", "serve", "--port", "0", "--tcp-port", "0", "--host", bu.HOST,
                 "--data-dir", str(home / "data"), "--ready-file", str(home / "ready"), "--log-level", "WARNING",
                 "--node-id", f"n{i + 1}", "--store", services.store, "--cluster", services.bus],
                home / "ready", home / "server.log", env=env,
            ))
        for node in run.nodes:
            node.start()
    except BaseException:
        stop_cluster(services, run)
        raise
    return run


def stop_cluster(services: Services, run: Run) -> None:
    for node in run.nodes:
        node.stop()
    with contextlib.suppress(Exception):
        pg(services.store, f'DROP SCHEMA IF EXISTS "{run.schema}" CASCADE')
    with contextlib.suppress(Exception):
        client = redis_client(services)
        keys = list(client.scan_iter(match=f"{run.prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])


async def register_users(urls: list[str], count: int) -> list[chat.Account]:
    slots = asyncio.Semaphore(4)

    async def one(index: int) -> chat.Account:
        from pica.client.http import PicaHttp

        name = f"bench{index:05d}"
        async with slots, PicaHttp(urls[index % len(urls)]) as http:
            await http.register(name, PASSWORD)
            login = await http.login(name, PASSWORD)
        return chat.Account(login.user_id, login.token)

    return list(await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), 600))


def measure(services: Services, args: argparse.Namespace, size: int, work: Path) -> dict[str, Any]:
    run = start_cluster(services, size, work / f"size{size}")
    try:
        urls = [f"http://{bu.HOST}:{node.ports[0]}" for node in run.nodes]
        tcp_ports = [node.ports[1] for node in run.nodes]
        accounts = uvloop.run(register_users(urls, 2 * args.pairs))
        pairs = [PairSpec(accounts[2 * k], tcp_ports[k % size], accounts[2 * k + 1], tcp_ports[(k + 1) % size])
                 for k in range(args.pairs)]
        workers = start_workers(args.procs, pairs)
        try:
            return _measure_phase(services, args, run, workers)
        finally:
            chat.stop_workers(workers)
    finally:
        stop_cluster(services, run)


def _measure_phase(services: Services, args: argparse.Namespace, run: Run,
                   workers: list[chat.Worker]) -> dict[str, Any]:
    if args.quiet_wait > 0:
        bu.wait_for_quiet(limit_pct=10.0, max_wait=args.quiet_wait)
    start_at = time.monotonic() + 0.3
    phase = chat.Phase("saturation", start_at, args.warmup, args.duration, None, args.window, args.drain)
    for worker in workers:
        worker.pipe.send(phase)
    node_pids = [node.pid for node in run.nodes]
    gen_pids = [w.process.pid or 0 for w in workers]
    time.sleep(max(0.0, phase.measure_from - time.monotonic() - 0.2))
    backends = pg_backend_pids(services, node_pids)
    bus_pid = redis_pid(services.redis_host_port[1])
    background = pg_background_pids()
    pids = [*node_pids, *gen_pids, *backends, *background, *([bus_pid] if bus_pid else [])]
    rss = {pid: bu.rss(pid) for pid in node_pids}
    time.sleep(max(0.0, phase.measure_from - time.monotonic()))
    first = counters(services, run.schema, pids)
    busy0 = bu.system_busy()
    time.sleep(max(0.0, phase.measure_to - time.monotonic()))
    last = counters(services, run.schema, pids)
    busy1 = bu.system_busy()
    total = chat.PhaseResult()
    for worker in workers:
        total.merge(chat.recv(worker, args.drain + 30.0))
    wall = last.at - first.at
    node_cpu = cpu_between(first, last, node_pids)
    acked = total.acked_in_window
    per_node_cpu = [100 * cpu_between(first, last, [pid]) / wall for pid in node_pids]
    sampled = cpu_between(first, last, pids)
    return {
        "nodes": run.size,
        "clients": 2 * args.pairs,
        "acked_per_s": acked / args.duration,
        "delivered_per_s": total.delivered_in_window / args.duration,
        "acked": total.acked,
        "delivered": total.delivered,
        "errors": total.errors,
        "undrained": total.undrained,
        "ack_ms": bu.latency_summary_ms(total.ack_ns),
        "delivery_ms": bu.latency_summary_ms(total.deliver_ns),
        "node_cpu_us_per_msg": 1e6 * node_cpu / acked if acked else math.nan,
        "node_cpu_pct": 100 * node_cpu / wall,
        "node_cpu_pct_each": per_node_cpu,
        "node_rss_mib_each": [rss[pid] / 2**20 for pid in node_pids],
        "pg_backends": len(backends),
        "pg_cpu_pct": 100 * cpu_between(first, last, backends) / wall if backends else math.nan,
        "pg_background_cpu_pct": 100 * cpu_between(first, last, background) / wall if background else math.nan,
        "redis_cpu_pct": 100 * cpu_between(first, last, [bus_pid]) / wall if bus_pid else math.nan,
        "loadgen_cpu_pct": 100 * cpu_between(first, last, gen_pids) / wall,
        "other_cpu_pct": 100 * (busy1 - busy0 - sampled) / wall,
        "pg_commits_per_s": (last.xact_commit - first.xact_commit) / wall,
        "pg_rows_per_s": (last.schema_rows - first.schema_rows) / wall,
        "pg_messages_per_s": (last.messages - first.messages) / wall,
        "redis_cmds_per_s": ((last.redis_commands - first.redis_commands) / wall
                             if first.redis_commands >= 0 and last.redis_commands >= 0 else math.nan),
        "wall_s": wall,
    }


# ====================================================================================================== output


def load_table(results: list[dict[str, Any]]) -> str:
    headers = ["nodes", "clients", "acked msg/s", "delivered msg/s", "ack p50 ms", "ack p99 ms", "delivery p50 ms",
               "delivery p99 ms", "node CPU µs/msg", "nodes CPU %", "PG backends CPU %", "PG background CPU %",
               "Redis CPU %",
               "loadgen CPU %", "other CPU %", "PG commits/s", "PG rows/s", "PG message rows/s", "Redis cmds/s",
               "errors"]
    rows = []
    for r in results:
        ack, dlv = r["ack_ms"], r["delivery_ms"]
        rows.append([r["nodes"], r["clients"], r["acked_per_s"], r["delivered_per_s"], ack["p50"], ack["p99"],
                     dlv["p50"], dlv["p99"], r["node_cpu_us_per_msg"], r["node_cpu_pct"], r["pg_cpu_pct"],
                     r["pg_background_cpu_pct"], r["redis_cpu_pct"], r["loadgen_cpu_pct"], r["other_cpu_pct"],
                     r["pg_commits_per_s"], r["pg_rows_per_s"], r["pg_messages_per_s"], r["redis_cmds_per_s"],
                     r["errors"]])
    return bu.markdown_table(headers, rows)


def capacity_table(results: list[dict[str, Any]]) -> str:
    """Per-node figures for a capacity plan. ``msg/s per node-core`` = 10^6 / node CPU µs per message: the rate one
    fully used core of node CPU sustains (each message costs CPU on its sender's and its receiver's node)."""
    headers = ["nodes", "connections per node", "acked msg/s per node", "CPU % per node", "node RSS MiB",
               "msg/s per node-core (est.)", "PG rows per msg", "PG commits per msg", "Redis cmds per msg"]
    rows = []
    for r in results:
        acked = r["acked_per_s"]
        rows.append([
            r["nodes"], r["clients"] / r["nodes"], acked / r["nodes"],
            " / ".join(f"{v:.0f}" for v in r["node_cpu_pct_each"]),
            " / ".join(f"{v:.0f}" for v in r["node_rss_mib_each"]),
            1e6 / r["node_cpu_us_per_msg"] if r["node_cpu_us_per_msg"] else math.nan,
            r["pg_rows_per_s"] / acked if acked else math.nan,
            r["pg_commits_per_s"] / acked if acked else math.nan,
            r["redis_cmds_per_s"] / acked if acked else math.nan,
        ])
    return bu.markdown_table(headers, rows)


# ====================================================================================================== main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--nodes", default="2,3", help="cluster sizes to measure, comma-separated (default 2,3)")
    p.add_argument("--pairs", type=int, default=30, help="1:1 pairs, each across two nodes (default 30)")
    p.add_argument("--window", type=int, default=8, help="sends in flight per connection (default 8)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per cluster size (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before measuring (default 2)")
    p.add_argument("--drain", type=float, default=10.0, help="seconds to wait for outstanding acks after a phase")
    p.add_argument("--procs", type=int, default=1, help="load-generator processes (default 1)")
    p.add_argument("--store", default="postgresql://postgres@127.0.0.1:5432/test",
                   help="PostgreSQL URL; the benchmark makes (and drops) a schema of its own in it")
    p.add_argument("--cluster", default="redis://127.0.0.1:6379/0",
                   help="Redis URL; the benchmark uses (and deletes) keys under a prefix of its own")
    p.add_argument("--quiet-wait", type=float, default=30.0, metavar="S",
                   help="before each measured phase wait up to S s for the machine to be idle (default 30; 0: never)")
    p.add_argument("--quick", action="store_true", help="tiny run for CI smoke tests (2 nodes, a few seconds)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    args.sizes = [int(part) for part in args.nodes.split(",") if part.strip()]
    if not args.sizes or min(args.sizes) < 2:
        p.error("--nodes: cluster sizes of at least 2")
    if args.quick:
        args.sizes, args.pairs, args.window, args.duration, args.warmup = [2], 4, 4, 1.5, 0.5
        args.drain, args.quiet_wait = 5.0, 0.0
    args.procs = max(1, min(args.procs, args.pairs))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bu.exit_on_sigterm()
    started = time.monotonic()
    services = Services(args.store, args.cluster)
    try:
        pg(services.store, "SELECT 1")
        redis_client(services).ping()
    except Exception as exc:
        print(f"bench/cluster.py needs PostgreSQL ({services.store}) and Redis ({services.bus}): {exc!r}",
              file=sys.stderr)
        return 2
    calibration = [bu.cpu_calibration_ms()]
    results = []
    with tempfile.TemporaryDirectory(prefix="pica-bench-cluster-") as tmp:
        for size in args.sizes:
            bu.log(f"{size} nodes: starting, {2 * args.pairs} clients")
            result = measure(services, args, size, Path(tmp))
            bu.log(f"{size} nodes: {result['acked_per_s']:,.0f} acked/s, {result['delivered_per_s']:,.0f} "
                   f"delivered/s")
            results.append(result)
    calibration.append(bu.cpu_calibration_ms())
    print(f"## Pica cluster benchmark: 1:1 pairs across nodes, TCP + MessagePack, {args.pairs} pairs, window "
          f"{args.window}, {args.duration:g} s measured per cluster size\n")
    print(load_table(results) + "\n")
    print("Per node, for a capacity plan (idle memory per connection: see BENCHMARKS.md):\n")
    print(capacity_table(results) + "\n")
    machine = bu.machine_info()
    print(f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB, Python "
          f"{machine['python']}; pica {machine['pica_revision']}; rate limits {bu.RATE_LIMITS}; "
          f"store {services.store}, bus {services.bus} "
          f"(shared: PG commits/s and Redis cmds/s count every user of those servers); CPU calibration "
          f"{calibration[0]:.0f} / {calibration[1]:.0f} ms (before / after)")
    bu.write_json(args.json, {"machine": machine, "args": {k: v for k, v in vars(args).items()},
                              "cpu_calibration_ms": calibration, "results": results,
                              "elapsed_s": time.monotonic() - started})
    bu.log(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
