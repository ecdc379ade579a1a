"""Idle connections: the server CPU that heartbeats and timers cost when nothing else happens.

The capacity plan (docs/operations.md) needs the cost of *holding* connections, not only of moving messages: every
authenticated connection gets a server ``ping`` after ``limits.heartbeat_interval`` seconds without traffic and
answers ``pong``, and the timer sweep visits every connection a few times per interval. This program starts one
``pica serve`` (embedded store, the default configuration except the heartbeat interval), opens ``--conns`` idle
authenticated connections from helper processes (the holders of ``bench/chat.py``, which answer pings), lets them
settle for one heartbeat interval, and then reads the server process's CPU time over ``--window`` seconds. Each
transport of ``--transport`` (default: the length-framed TCP protocol, then WebSocket with JSON, the web page's
encoding) goes through the same phases, one after the other, each on a fresh server.

Reported per transport and heartbeat interval: server CPU as % of one core, CPU-µs per connection per second, and
CPU-µs per heartbeat (ping + pong + that connection's share of the sweeps). A baseline phase with no connections is
measured first and subtracted. The server's ``pica_frames_in_total`` over the window gives the pongs it received
per second (about connections / heartbeat when every holder answers), and ``pica_connections`` at the end shows
that no connection was dropped.

    .venv/bin/python bench/idle_cpu.py                        # 15,000 connections, heartbeat 25 s and 5 s, 30 s
    .venv/bin/python bench/idle_cpu.py --transport ws         # WebSocket only
    .venv/bin/python bench/idle_cpu.py --quick                # a tiny run for the smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import benchutil as bu
import chat
import psutil
from prometheus_client.parser import text_string_to_metric_families

TRANSPORTS = {"tcp": "TCP", "ws": "WebSocket"}


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def server_cpu_pct(pid: int, window: float) -> float:
    """% of one core the process used over ``window`` seconds (wall clock)."""
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    return 100.0 * (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start)


def server_metrics(http_port: int) -> dict[str, float]:
    """The server's /metrics counters and gauges (one cheap HTTP request, outside the measured window)."""
    with urllib.request.urlopen(f"http://{bu.HOST}:{http_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:  # labelled series (pica_connections by transport) are summed
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def start_server(work: Path, label: str, heartbeat: float) -> bu.ServerProcess:
    env = {**os.environ, "PICA_LIMITS_HEARTBEAT_INTERVAL": str(heartbeat),
           "PICA_LIMITS_IDLE_TIMEOUT": str(max(heartbeat * 3, 75.0))}
    server = bu.ServerProcess(
        [sys.executable, "-m", "pica", "serve", "--port", "0", "--tcp-port", "0", "--host", bu.HOST,
         "--data-dir", str(work / "data"), "--ready-file", str(work / "ready"), "--log-level", "WARNING"],
        work / "ready", work / f"server-{label}-hb{heartbeat:g}.log", env=env,
    )
    server.start()
    return server


def measure(
    args: argparse.Namespace, work: Path, accounts: list[chat.Account], transport: str, heartbeat: float
) -> dict[str, Any]:
    with start_server(work, transport, heartbeat) as server:
        http_port, tcp_port = server.ports
        if args.quiet_wait > 0:
            bu.wait_for_quiet(max_wait=args.quiet_wait)
        baseline = server_cpu_pct(server.pid, min(args.window, 10.0))
        holders, opened, failures = chat.hold_idle(
            chat.IdleSpec(transport, http_port, tcp_port, accounts, args.conns, 1_000_000))
        try:
            # every connection has had its first ping (the sweep runs every heartbeat / 4 s at most): steady state
            time.sleep(heartbeat + min(2.0, heartbeat))
            if args.quiet_wait > 0:
                bu.wait_for_quiet(max_wait=args.quiet_wait, limit_pct=15.0)
            before = server_metrics(http_port)
            started = time.monotonic()
            busy = server_cpu_pct(server.pid, args.window)
            after = server_metrics(http_port)
            elapsed = time.monotonic() - started
            alive = server.proc is not None and server.proc.poll() is None
        finally:
            chat.release_idle(holders)
    idle_pct = max(0.0, busy - baseline)
    per_conn_s = idle_pct / 100.0 * 1e6 / opened if opened else float("nan")
    # The connections are idle: every frame the server receives in the window is a pong.
    pongs_per_s = (after["pica_frames_in_total"] - before["pica_frames_in_total"]) / elapsed
    open_at_end = int(after["pica_connections"])
    result = {"transport": transport, "heartbeat_s": heartbeat, "connections": opened, "failures": failures,
              "window_s": args.window, "baseline_cpu_pct": round(baseline, 2), "cpu_pct": round(busy, 2),
              "idle_cpu_pct": round(idle_pct, 2), "cpu_us_per_conn_s": round(per_conn_s, 3),
              "cpu_us_per_heartbeat": round(per_conn_s * heartbeat, 1), "pongs_per_s": round(pongs_per_s, 1),
              "open_at_end": open_at_end, "server_alive": alive}
    bu.log(f"{transport}, heartbeat {heartbeat:g} s: {opened} connections ({open_at_end} open at the end), "
           f"{pongs_per_s:.0f} pongs/s, {idle_pct:.2f} % of a core")
    if open_at_end != opened:
        bu.log(f"WARNING: {opened - open_at_end} {transport} connections were closed during the measurement")
    return result


def table(results: list[dict[str, Any]]) -> str:
    return bu.markdown_table(
        ["transport", "heartbeat s", "connections", "server CPU % (baseline)", "idle CPU % of a core",
         "CPU µs per conn·s", "CPU µs per heartbeat", "pongs/s"],
        [[r["transport"], r["heartbeat_s"], r["connections"], f"{r['cpu_pct']} ({r['baseline_cpu_pct']})",
          r["idle_cpu_pct"], r["cpu_us_per_conn_s"], r["cpu_us_per_heartbeat"], r["pongs_per_s"]] for r in results],
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conns", type=int, default=15_000, help="idle connections per transport (default 15,000)")
    p.add_argument("--transport", type=_transports, default=list(TRANSPORTS),
                   help="transports to measure, one after the other: tcp, ws or tcp,ws (default tcp,ws)")
    p.add_argument("--heartbeats", default="25,5", help="heartbeat intervals to measure, seconds (default 25,5)")
    p.add_argument("--window", type=float, default=30.0, help="measured seconds per interval (default 30)")
    p.add_argument("--users", type=int, default=100, help="accounts the connections log in as (default 100)")
    p.add_argument("--quiet-wait", type=float, default=30.0, metavar="S",
                   help="wait up to S s for the machine to be idle before measuring (default 30)")
    p.add_argument("--quick", action="store_true", help="tiny run for CI smoke tests")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.conns, args.heartbeats, args.window, args.users, args.quiet_wait = 200, "0.5", 1.0, 4, 0.0
    args.conns = min(args.conns, chat.MAX_IDLE_CONNS)
    heartbeats = [float(h) for h in args.heartbeats.split(",") if h.strip()]
    calibration = [bu.cpu_calibration_ms()]
    with tempfile.TemporaryDirectory(prefix="pica-idle-cpu-") as tmp:
        work = Path(tmp)
        with start_server(work, "accounts", 25.0) as server:  # accounts live in the data directory every phase reuses
            accounts = asyncio.run(chat.register_users(f"http://{bu.HOST}:{server.ports[0]}", args.users))
        results = [measure(args, work, accounts, t, hb) for t in args.transport for hb in heartbeats]
    names = " and ".join(TRANSPORTS[t] for t in args.transport)
    print(f"## Idle connections: server CPU for heartbeats and timers ({names}, embedded store)\n")
    print(table(results))
    calibration.append(bu.cpu_calibration_ms())
    info = bu.machine_info()
    print(f"\nmachine: {info}; pica {bu.pica_revision()}; "
          f"CPU calibration {calibration[0]:.0f} / {calibration[1]:.0f} ms (before / after; see BENCHMARKS.md)")
    bu.write_json(args.json, {"machine": info, "revision": bu.pica_revision(), "cpu_calibration_ms": calibration,
                              "results": results})
    return 0


def _transports(text: str) -> list[str]:
    chosen = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [t for t in chosen if t not in TRANSPORTS]
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(f"transports are {', '.join(TRANSPORTS)} (comma-separated); got {text!r}")
    return list(dict.fromkeys(chosen))


if __name__ == "__main__":
    sys.exit(main())
