"""Idle connections: the server CPU that heartbeats and timers cost when nothing else happens.

The capacity plan (docs/operations.md) needs the cost of *holding* connections, not only of moving messages: every
authenticated connection gets a server ``ping`` after ``limits.heartbeat_interval`` seconds without traffic and
answers ``pong``, and the timer sweep visits every connection a few times per interval. This program starts one
``pica serve`` (embedded store, the default configuration except the heartbeat interval), opens ``--conns`` idle
authenticated TCP connections from helper processes (the holders of ``bench/chat.py``, which answer pings), lets
them settle for one heartbeat interval, and then reads the server process's CPU time over ``--window`` seconds.

Reported per heartbeat interval: server CPU as % of one core, CPU-µs per connection per second, and CPU-µs per
heartbeat (ping + pong + that connection's share of the sweeps). A baseline phase with no connections is measured
first and subtracted.

    .venv/bin/python bench/idle_cpu.py                        # 15,000 connections, heartbeat 25 s and 5 s, 30 s
    .venv/bin/python bench/idle_cpu.py --quick                # a tiny run for the smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchutil as bu
import chat
import psutil


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def server_cpu_pct(pid: int, window: float) -> float:
    """% of one core the process used over ``window`` seconds (wall clock)."""
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    return 100.0 * (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start)


def start_server(work: Path, heartbeat: float) -> bu.ServerProcess:
    env = {**os.environ, "PICA_LIMITS_HEARTBEAT_INTERVAL": str(heartbeat),
           "PICA_LIMITS_IDLE_TIMEOUT": str(max(heartbeat * 3, 75.0))}
    server = bu.ServerProcess(
        [sys.executable, "-m", "pica", "serve", "--port", "0", "--tcp-port", "0", "--host", bu.HOST,
         "--data-dir", str(work / "data"), "--ready-file", str(work / "ready"), "--log-level", "WARNING"],
        work / "ready", work / f"server-hb{heartbeat:g}.log", env=env,
    )
    server.start()
    return server


def measure(args: argparse.Namespace, work: Path, accounts: list[chat.Account], heartbeat: float) -> dict[str, Any]:
    with start_server(work, heartbeat) as server:
        http_port, tcp_port = server.ports
        bu.wait_for_quiet(max_wait=args.quiet_wait)
        baseline = server_cpu_pct(server.pid, min(args.window, 10.0))
        holders, opened, failures = chat.hold_idle(
            chat.IdleSpec("tcp", http_port, tcp_port, accounts, args.conns, 1_000_000))
        try:
            time.sleep(heartbeat + 2.0)  # every connection has had its first ping: steady state
            bu.wait_for_quiet(max_wait=args.quiet_wait, limit_pct=15.0)
            busy = server_cpu_pct(server.pid, args.window)
            alive = server.proc is not None and server.proc.poll() is None
        finally:
            chat.release_idle(holders)
    idle_pct = max(0.0, busy - baseline)
    per_conn_s = idle_pct / 100.0 * 1e6 / opened if opened else float("nan")
    result = {"heartbeat_s": heartbeat, "connections": opened, "failures": failures, "window_s": args.window,
              "baseline_cpu_pct": round(baseline, 2), "cpu_pct": round(busy, 2), "idle_cpu_pct": round(idle_pct, 2),
              "cpu_us_per_conn_s": round(per_conn_s, 3), "cpu_us_per_heartbeat": round(per_conn_s * heartbeat, 1),
              "server_alive": alive}
    bu.log(f"heartbeat {heartbeat:g} s: {opened} connections, {idle_pct:.2f} % of a core")
    return result


def table(results: list[dict[str, Any]]) -> str:
    return bu.markdown_table(
        ["heartbeat s", "connections", "server CPU % (baseline)", "idle CPU % of a core", "CPU µs per conn·s",
         "CPU µs per heartbeat"],
        [[r["heartbeat_s"], r["connections"], f"{r['cpu_pct']} ({r['baseline_cpu_pct']})", r["idle_cpu_pct"],
          r["cpu_us_per_conn_s"], r["cpu_us_per_heartbeat"]] for r in results],
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conns", type=int, default=15_000, help="idle TCP connections (default 15,000)")
    p.add_argument("--heartbeats", default="25,5", help="heartbeat intervals to measure, seconds (default 25,5)")
    p.add_argument("--window", type=float, default=30.0, help="measured seconds per interval (default 30)")
    p.add_argument("--users", type=int, default=100, help="accounts the connections log in as (default 100)")
    p.add_argument("--quiet-wait", type=float, default=30.0, metavar="S",
                   help="wait up to S s for the machine to be idle before measuring (default 30)")
    p.add_argument("--quick", action="store_true", help="tiny run for CI smoke tests")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.conns, args.heartbeats, args.window, args.users, args.quiet_wait = 200, "1", 2.0, 4, 0.0
    args.conns = min(args.conns, chat.MAX_IDLE_CONNS)
    heartbeats = [float(h) for h in args.heartbeats.split(",") if h.strip()]
    with tempfile.TemporaryDirectory(prefix="pica-idle-cpu-") as tmp:
        work = Path(tmp)
        with start_server(work, 25.0) as server:  # accounts live in the data directory every phase reuses
            accounts = asyncio.run(chat.register_users(f"http://{bu.HOST}:{server.ports[0]}", args.users))
        results = [measure(args, work, accounts, hb) for hb in heartbeats]
    print("## Idle connections: server CPU for heartbeats and timers (TCP, embedded store)\n")
    print(table(results))
    info = bu.machine_info()
    print(f"\nmachine: {info}; pica {bu.pica_revision()}")
    bu.write_json(args.json, {"machine": info, "revision": bu.pica_revision(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
