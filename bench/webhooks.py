"""Webhook jobs benchmark: what the transactional outbox costs the 1:1 hot path, and how long a job takes from its
message's commit to its delivery.

Same load as ``bench/chat.py`` (its load-generator processes, TCP + MessagePack, pairs of users, a closed loop of
``--window`` sends in flight per connection), against three fresh servers:

* ``off``: no webhook configured (the default);
* ``rows``: one ``[[webhooks]]`` endpoint subscribed to ``message.created``, the in-node worker off
  (``jobs.run_in_node = false``): every message also writes its job row in its transaction, nothing delivers them;
  this isolates the outbox's cost;
* ``deliver``: the same endpoint with the in-node worker delivering to a local receiver (a separate process, aiohttp
  on uvloop, answering 200 at once): the whole cost on the node.

Job latency (``deliver`` only, before its saturation phase): open-loop sends at ``--job-rate`` msg/s; the receiver
(its CPU is counted with the load generator's) records, for each delivery, its arrival (wall clock) minus the
event's ``data.ts`` (the server's timestamp of the message, taken just before it is queued for the commit), so the
figure is submit → delivered, an upper bound of commit → delivered by the ack latency (a few ms at that rate; the
table shows it too). Usage:
``python bench/webhooks.py [--quick] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchutil as bu
import chat
import uvloop

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MODES = ("off", "rows", "deliver")


# ====================================================================================================== receiver


def receiver_main(port_file: str) -> None:
    bu.exit_on_sigterm()
    uvloop.run(serve_latencies(Path(port_file), "/hook", lambda body: json.loads(body)["data"]["ts"], 200))


async def serve_latencies(port_file: Path, path: str, sent_ms: Callable[[bytes], float], status: int) -> None:
    """An HTTP receiver answering ``status`` to every POST to ``path`` and keeping, for each, its arrival (wall
    clock) minus ``sent_ms(body)``; ``POST /stats`` answers their count and percentiles and forgets them. Its port
    is written to ``port_file``. Shared with bench/push.py."""
    from aiohttp import web

    latencies: list[float] = []
    counted = [0]

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        now_ms = time.time() * 1000
        counted[0] += 1
        latencies.append(now_ms - sent_ms(body))
        return web.Response(status=status)

    async def stats(request: web.Request) -> web.Response:
        values = sorted(latencies)
        latencies.clear()
        return web.json_response({"count": len(values), "total": counted[0],
                                  "p50": bu.percentile(values, 50) if values else None,
                                  "p99": bu.percentile(values, 99) if values else None,
                                  "max": values[-1] if values else None})

    app = web.Application()
    app.router.add_post(path, receive)
    app.router.add_post("/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, bu.HOST, 0, backlog=4096)
    await site.start()
    await asyncio.to_thread(port_file.write_text, f"{runner.addresses[0][1]}\n")
    await asyncio.Event().wait()


def start_receiver(work: Path, target: Callable[..., None], *args: Any) -> tuple[mp.process.BaseProcess, int]:
    """``target(port_file, *args)`` in a process of its own; returns it and its port once it listens."""
    port_file = work / "receiver-port"
    receiver = mp.get_context("spawn").Process(target=target, args=(str(port_file), *args), daemon=True)
    receiver.start()
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text().endswith("\n")):
        if time.monotonic() > deadline:
            receiver.terminate()
            raise RuntimeError("the receiver did not start")
        time.sleep(0.05)
    return receiver, int(port_file.read_text())


def receiver_stats(port: int) -> dict[str, Any]:
    request = urllib.request.Request(f"http://{bu.HOST}:{port}/stats", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        result: dict[str, Any] = json.load(response)
        return result


# ====================================================================================================== server


def start_server(work: Path, mode: str, receiver_port: int) -> bu.ServerProcess:
    home = work / mode
    home.mkdir()
    config = home / "pica.toml"
    text = ""
    if mode != "off":
        text = (f"[jobs]\nrun_in_node = {'true' if mode == 'deliver' else 'false'}\n\n"
                f'[[webhooks]]\nurl = "http://{bu.HOST}:{receiver_port}/hook"\nsecret = "{SECRET}"\n'
                'events = ["message.created"]\n')
    config.write_text(text)
    return chat.start_server(home, mode, "--config", str(config))


def run_mode(args: argparse.Namespace, work: Path, mode: str, receiver_port: int, receiver_pid: int) -> dict[str, Any]:
    with start_server(work, mode, receiver_port) as server:
        http_port, tcp_port = server.ports
        accounts = uvloop.run(chat.register_users(f"http://{bu.HOST}:{http_port}", args.users))
        workers = chat.start_workers(args.procs, tcp_port, accounts)
        result: dict[str, Any] = {"mode": mode}
        try:
            if mode == "deliver":
                receiver_stats(receiver_port)  # forget the user.created-free warm-up, if any
                latency = chat.run_phase(workers, server.pid, f"rate {args.job_rate:,.0f}", args.job_rate, args,
                                         (receiver_pid,))
                time.sleep(args.settle)  # the last jobs of the phase arrive
                result["latency_phase"] = latency
                result["job_ms"] = receiver_stats(receiver_port)
                bu.log(f"{mode}: job latency p50 {result['job_ms']['p50']} ms, p99 {result['job_ms']['p99']} ms")
            result["saturation"] = chat.run_phase(workers, server.pid, "saturation", None, args, (receiver_pid,))
            bu.log(f"{mode}: {result['saturation']['acked_per_s']:,.0f} acked/s")
        finally:
            chat.stop_workers(workers)
    return result


# ====================================================================================================== main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--users", type=int, default=100, help="users to register (pairs = users / 2; default 100)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each phase (default 2)")
    p.add_argument("--window", type=int, default=16, help="saturation: sends in flight per connection (default 16)")
    p.add_argument("--job-rate", type=float, default=1000.0, help="msg/s of the job latency phase (default 1000)")
    p.add_argument("--procs", type=int, default=1, help="load-generator processes (default 1)")
    p.add_argument("--drain", type=float, default=10.0, help="seconds to wait for outstanding acks after a phase")
    p.add_argument("--settle", type=float, default=2.0, help="seconds for the last jobs to arrive after a phase")
    p.add_argument("--quiet-wait", type=float, default=30.0, metavar="S",
                   help="before each phase wait up to S s for the machine to be idle (default 30; 0: never)")
    p.add_argument("--modes", default=",".join(MODES), help=f"which servers, in order (default {','.join(MODES)})")
    p.add_argument("--quick", action="store_true", help="tiny run for CI smoke tests")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.users, args.duration, args.warmup, args.job_rate = 10, 1.0, 0.2, 200.0
        args.drain, args.settle, args.quiet_wait = 5.0, 0.5, 0.0
    args.users = max(2, args.users - args.users % 2)
    args.procs = max(1, min(args.procs, args.users // 2))
    args.modes = [m for m in args.modes.split(",") if m]
    if set(args.modes) - set(MODES):
        p.error(f"--modes: choose among {', '.join(MODES)}")
    return args


def table(results: list[dict[str, Any]], label: str = "webhooks") -> str:
    base = next((r["saturation"]["acked_per_s"] for r in results if r["mode"] == "off"), None)
    rows = []
    for r in results:
        sat = r["saturation"]
        ratio = f"{sat['acked_per_s'] / base:.2f}" if base else "n/a"
        rows.append([r["mode"], sat["acked_per_s"], ratio, sat["ack_ms"]["p50"], sat["ack_ms"]["p99"],
                     sat["server_cpu_us_per_msg"], sat["server_cpu_pct"], sat["loadgen_cpu_pct"],
                     sat["other_cpu_pct"]])
    return bu.markdown_table([label, "acked msg/s", "ratio to off", "ack p50 ms", "ack p99 ms",
                              "server CPU µs/msg", "server CPU %", "loadgen + receiver CPU %", "other CPU %"], rows)


def latency_table(results: list[dict[str, Any]], received: str = "webhooks received") -> str:
    rows = []
    for r in results:
        if "job_ms" in r:
            jobs, phase = r["job_ms"], r["latency_phase"]
            rows.append([phase["phase"], phase["acked_per_s"], phase["ack_ms"]["p50"], phase["ack_ms"]["p99"],
                         jobs["count"], jobs["p50"], jobs["p99"], jobs["max"], phase["other_cpu_pct"]])
    return bu.markdown_table(["phase", "acked msg/s", "ack p50 ms", "ack p99 ms", received,
                              "job p50 ms", "job p99 ms", "job max ms", "other CPU %"], rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bu.exit_on_sigterm()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pica-bench-webhooks-") as tmp:
        work = Path(tmp)
        receiver, receiver_port = start_receiver(work, receiver_main)
        try:
            results = [run_mode(args, work, mode, receiver_port, receiver.pid or 0) for mode in args.modes]
        finally:
            receiver.terminate()
            receiver.join(10)
    print(f"## Pica webhook jobs benchmark: {args.users} users, TCP + MessagePack, window {args.window}, "
          f"{args.duration:g} s per phase\n")
    print(table(results) + "\n")
    if any("job_ms" in r for r in results):
        print(latency_table(results) + "\n")
    return finish(args, results, started)


def finish(args: argparse.Namespace, results: list[dict[str, Any]], started: float) -> int:
    """The machine line, the JSON file, the time taken (shared with bench/push.py)."""
    machine = bu.machine_info()
    print(f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}); pica {machine['pica_revision']}; rate limits "
          f"{bu.RATE_LIMITS}")
    bu.write_json(args.json, {"machine": machine, "args": vars(args), "results": results,
                              "elapsed_s": time.monotonic() - started})
    bu.log(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
