"""Connect cost: the server CPU one authenticated connect + ``ready`` takes, over TCP and over WebSocket.

Starts one ``pica serve`` (embedded store, defaults, rate limits off as every benchmark), registers ``--users``
accounts, then per transport runs ``--rounds`` waves: a client process opens ``--conns`` connections
(``--concurrency`` at a time), each authenticating with a user's token (users are reused as separate devices) and
waiting for ``ready``; the server process's CPU time (user + system, all threads and child processes, from /proc)
is read before and after the wave. The connections are closed between waves, outside the measured window. The
figure is CPU time, not wall time: the machine is shared, and CPU time per operation is what another process's load
disturbs least. A baseline (the idle server's CPU over a few seconds) is subtracted.

Reported per transport: server CPU-µs per connect (median of the waves, and each wave), connects per second of wall
time (limited by the one client process as much as by the server), and the failures.

    .venv/bin/python bench/connect.py                          # 5,000 connects x 5 waves, TCP then WebSocket
    .venv/bin/python bench/connect.py --transport tcp --profile /tmp/connect.prof   # cProfile of the server
    .venv/bin/python bench/connect.py --quick                  # a tiny run for the smoke test

With ``--distinct``, every connect of a wave logs in a different user (``--users`` becomes ``--conns``): the users
and a session each are seeded straight into the store before the server starts (``Store.create_users`` and
``SessionService.open_many``, as bench/connections.py does: no Argon2 hash per user), and each is given ``--peers``
related users, so that each user's first device pays its presence announcement (the audience read and the frames to
the peers online). The peers of user i are i ± 1 .. i ± peers/2 around the ring of users: odd distances accepted
contacts, even ones a 1:1 conversation of one message. Every wave logs in the same users, who went offline between
waves (a node's restart, in effect).

    .venv/bin/python bench/connect.py --distinct --conns 2000 --rounds 3       # distinct users, 6 peers each

With ``--profile``, the server runs under cProfile (its event-loop thread only; slower, so the CPU figures of that
run are not comparable) and the profile is written at its exit; read it with ``python -m pstats``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

import aiohttp
import benchutil as bu
import chat
import connections
import uvloop

from pica.config import load_config
from pica.protocol.ids import direct_conversation_id
from pica.store.base import DirectAppend
from pica.store.factory import build_store

TRANSPORTS = {"tcp": "TCP", "ws": "WebSocket"}


@dataclass(frozen=True, slots=True)
class WaveSpec:
    transport: str
    http_port: int
    tcp_port: int
    accounts: list[chat.Account]
    count: int
    concurrency: int
    timeout: float


def client_main(spec: WaveSpec, pipe: Pipe) -> None:
    """A connecting process: on each ``go`` open ``spec.count`` connections, report, close them on ``close``."""
    uvloop.run(_client(spec, pipe))


async def _client(spec: WaveSpec, pipe: Pipe) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        idle = chat.IdleSpec(spec.transport, spec.http_port, spec.tcp_port, spec.accounts, spec.count, 0)
        opener = chat._open_tcp if spec.transport == "tcp" else chat._open_ws
        wave = 0
        while (await asyncio.to_thread(pipe.recv)) == "go":
            wave += 1
            slots = asyncio.Semaphore(spec.concurrency)

            async def one(i: int, wave: int = wave, slots: asyncio.Semaphore = slots) -> Any:
                account = spec.accounts[i % len(spec.accounts)]
                async with slots:
                    return await asyncio.wait_for(opener(idle, session, account, f"c{wave}-{i}"), spec.timeout)

            started = time.monotonic()
            outcomes = await asyncio.gather(*(one(i) for i in range(spec.count)), return_exceptions=True)
            elapsed = time.monotonic() - started
            held = [o for o in outcomes if not isinstance(o, BaseException)]
            failures = [repr(o) for o in outcomes if isinstance(o, BaseException)]
            pipe.send(("opened", len(held), elapsed, failures[:3]))
            await asyncio.gather(*(c.close() for c in held if isinstance(c, chat.IdleWs)))
            for conn in held:
                if isinstance(conn, chat.IdleTcp) and conn.transport is not None:
                    conn.transport.close()
            await asyncio.sleep(0.5)  # the server sees every close before the next wave
            pipe.send(("closed",))


def waves(args: argparse.Namespace, server: bu.ServerProcess, accounts: list[chat.Account], transport: str
          ) -> dict[str, Any]:
    http_port, tcp_port = server.ports
    spec = WaveSpec(transport, http_port, tcp_port, accounts, args.conns, args.concurrency, args.timeout)
    parent, child = mp.get_context("spawn").Pipe()
    process = mp.get_context("spawn").Process(target=client_main, args=(spec, child), daemon=True)
    process.start()
    worker = chat.Worker(process, parent)
    per_connect: list[float] = []
    rates: list[float] = []
    failures: list[str] = []
    opened_total = 0
    try:
        for index in range(args.rounds + 1):  # the first wave warms the server up (imports, caches) and is not kept
            if args.quiet_wait > 0:
                bu.wait_for_quiet(max_wait=args.quiet_wait, limit_pct=20.0)
            baseline = _baseline(server.pid, args.baseline)
            before = bu.cpu_sample(server.pid)
            parent.send("go")
            _, opened, elapsed, errors = chat.recv(worker, args.timeout * 4 + args.conns / 50)
            after = bu.cpu_sample(server.pid)
            chat.recv(worker, 60)
            cpu = after.total - before.total - baseline * (after.at - before.at)
            if index == 0:
                continue
            failures.extend(errors)
            opened_total += opened
            if opened:
                per_connect.append(cpu / opened * 1e6)
                rates.append(opened / elapsed)
            bu.log(f"{transport} wave {index}: {opened} connects, {cpu / max(opened, 1) * 1e6:.0f} µs CPU each, "
                   f"{opened / elapsed:.0f}/s")
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        process.join(30)
        if process.is_alive():
            process.terminate()
    return {"transport": transport, "connects": opened_total, "failures": failures,
            "cpu_us_per_connect": round(statistics.median(per_connect), 1) if per_connect else float("nan"),
            "cpu_us_waves": [round(v, 1) for v in per_connect],
            "connects_per_s": round(statistics.median(rates), 0) if rates else float("nan")}


def _baseline(pid: int, window: float) -> float:
    """The idle server's CPU seconds per second (its timers and samplers), subtracted from each wave."""
    if window <= 0:
        return 0.0
    start = bu.cpu_sample(pid)
    time.sleep(window)
    end = bu.cpu_sample(pid)
    return max(0.0, (end.total - start.total) / (end.at - start.at))


def start_server(work: Path, profile: str | None, env: dict[str, str] | None = None) -> bu.ServerProcess:
    prefix = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
    server = bu.ServerProcess(
        [*prefix, "-m", "pica", "serve", "--port", "0", "--tcp-port", "0", "--host", bu.HOST,
         "--data-dir", str(work / "data"), "--ready-file", str(work / "ready"), "--log-level", "WARNING"],
        work / "ready", work / "server.log", env=env,
    )
    server.start()
    return server


RELATE_IN_FLIGHT = 64
"""Relation transactions at once while seeding: the SQLite writer commits concurrent ones together."""


def seed_distinct(args: argparse.Namespace, work: Path) -> tuple[dict[str, str], list[chat.Account]]:
    """``args.users`` accounts and sessions straight into the embedded store (bench/connections.py's seed), then
    ``args.peers`` related users each; the environment the server must share (the token secret)."""
    shape = argparse.Namespace(workers=1, dsn=None, heartbeat=None)
    env = connections.server_env(shape, "", "")
    accounts = connections.seed_accounts(shape, env, work, args.users)
    began = time.monotonic()
    asyncio.run(_relate(env, work, [a.user_id for a in accounts], args.peers))
    bu.log(f"related each of {len(accounts):,} users to {args.peers} others in {time.monotonic() - began:.1f} s")
    return env, accounts


async def _relate(env: dict[str, str], work: Path, user_ids: list[int], peers: int) -> None:
    store = build_store(load_config(env=env, overrides={"data_dir": str(work / "data")}))
    await store.open()
    try:
        slots = asyncio.Semaphore(RELATE_IN_FLIGHT)
        now = int(time.time() * 1000)

        async def pair(a: int, b: int, distance: int) -> None:
            async with slots:
                if distance % 2:
                    await store.contact_request(a, b, now)
                    await store.contact_respond(b, a, True, now)
                else:
                    body = b'{"text":"hi"}'
                    await store.append_direct(DirectAppend(direct_conversation_id(a, b), a, b, f"seed{b}", body, now))

        count = len(user_ids)
        distances = range(1, min(peers // 2, (count - 1) // 2) + 1)
        await asyncio.gather(*(pair(user_ids[i], user_ids[(i + d) % count], d)
                               for d in distances for i in range(count)))
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conns", type=int, default=5_000, help="connects per wave (default 5,000; at most 9,000)")
    p.add_argument("--rounds", type=int, default=5, help="measured waves per transport (default 5)")
    p.add_argument("--concurrency", type=int, default=200, help="connects in progress at once (default 200)")
    p.add_argument("--transport", type=_transports, default=list(TRANSPORTS),
                   help="tcp, ws or tcp,ws (default tcp,ws)")
    p.add_argument("--users", type=int, default=20, help="accounts the connections log in as (default 20)")
    p.add_argument("--distinct", action="store_true",
                   help="every connect of a wave a different user (--users = --conns), seeded into the store, each "
                        "with --peers related users: the presence announcement of a first device is in the figure")
    p.add_argument("--peers", type=int, default=6,
                   help="with --distinct: related users per user, half accepted contacts, half 1:1 peers (default 6)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds one connect may take (default 30)")
    p.add_argument("--baseline", type=float, default=2.0, help="seconds of idle CPU measured before each wave")
    p.add_argument("--quiet-wait", type=float, default=10.0, metavar="S",
                   help="wait up to S s for the machine to be quiet before each wave (default 10)")
    p.add_argument("--profile", metavar="PATH", help="run the server under cProfile and write its profile here")
    p.add_argument("--quick", action="store_true", help="tiny run for CI smoke tests")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.conns, args.rounds, args.users, args.baseline, args.quiet_wait = 50, 1, 2, 0.0, 0.0
    args.conns = min(args.conns, chat.MAX_CONNS_PER_PROCESS)
    if args.distinct:
        args.users = args.conns
    bu.exit_on_sigterm()
    calibration = [bu.cpu_calibration_ms()]
    with tempfile.TemporaryDirectory(prefix="pica-connect-") as tmp:
        work = Path(tmp)
        env, seeded = seed_distinct(args, work) if args.distinct else (None, [])
        with start_server(work, args.profile, env) as server:
            accounts = seeded or asyncio.run(chat.register_users(f"http://{bu.HOST}:{server.ports[0]}", args.users))
            results = [waves(args, server, accounts, t) for t in args.transport]
    shape = f"{args.users:,} distinct users, {args.peers} peers each" if args.distinct else f"{args.users} users"
    print(f"## Connect cost: server CPU per authenticated connect + ready (embedded store, {shape})\n")
    print(bu.markdown_table(
        ["transport", "connects", "server CPU µs per connect (median)", "waves µs", "connects/s (one client)",
         "failures"],
        [[r["transport"], r["connects"], r["cpu_us_per_connect"], " / ".join(f"{v:.0f}" for v in r["cpu_us_waves"]),
          r["connects_per_s"], len(r["failures"])] for r in results]))
    calibration.append(bu.cpu_calibration_ms())
    info = bu.machine_info()
    print(f"\nmachine: {info}; pica {bu.pica_revision()}; rate limits {bu.RATE_LIMITS}; "
          f"CPU calibration {calibration[0]:.0f} / {calibration[1]:.0f} ms (before / after)")
    bu.write_json(args.json, {"machine": info, "revision": bu.pica_revision(), "cpu_calibration_ms": calibration,
                              "users": args.users, "distinct": args.distinct,
                              "peers": args.peers if args.distinct else 0,
                              "results": results})
    return 1 if any(r["failures"] for r in results) else 0


def _transports(text: str) -> list[str]:
    chosen = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not chosen or any(t not in TRANSPORTS for t in chosen):
        raise argparse.ArgumentTypeError(f"transports are {', '.join(TRANSPORTS)} (comma-separated); got {text!r}")
    return list(dict.fromkeys(chosen))


if __name__ == "__main__":
    sys.exit(main())
