"""Fairness under a flood: one honest user's ack latency while another user floods the same node.

For each setting in ``--limits`` (default ``on,off``) it starts ``python -m pica serve`` (fresh temporary data
directory, free ports, ``PICA_RATE_LIMITS`` set accordingly, every ``rates.*`` at its default), registers an
honest user, a flooder and a partner for each, and runs two phases of ``--duration`` seconds:

* quiet: the honest user sends ``--rate`` messages a second (open loop, one every 1/rate s, over TCP with the SDK's
  ``PicaConnection``) to its partner and records the time from each ``send`` to its ``sent`` ack;
* flood: the same, while a separate process floods from the other user over one raw TCP connection: it keeps
  ``--window`` sends in flight and sends a new one as soon as any answer (an ack or an ``error``) arrives, i.e. as
  fast as the server answers.

It prints the honest user's ack p50 / p99 / max in both phases, the ratio of the p99s (the issue's target: at most
3 with rate limits on), and what the flooder got (acked and refused per second). All traffic goes to 127.0.0.1.

    .venv/bin/python bench/fairness.py                  # both settings, 10 s phases
    .venv/bin/python bench/fairness.py --quick          # CI smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import benchutil as bu
import uvloop

from pica.client import Login, PicaConnection, PicaHttp
from pica.protocol import frames as f
from pica.protocol.codec import Encoding, decode_server_frame, encode
from pica.protocol.framing import FrameReader, frame_bytes

PASSWORD = "bench-password-123"
MSGPACK = Encoding.MSGPACK


async def _register(url: str, prefix: str) -> Login:
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    async with PicaHttp(url) as http:
        await http.register(name, PASSWORD)
        return await http.login(name, PASSWORD)


# ====================================================================================================== flooder


def flood_main(tcp_port: int, token: str, to: int, window: int, stop_after: float, out: Any) -> None:
    """In its own process: flood for ``stop_after`` seconds, then report (acked, refused, other errors)."""
    uvloop.install()
    out.put(asyncio.run(_flood(tcp_port, token, to, window, stop_after)))


async def _flood(tcp_port: int, token: str, to: int, window: int, stop_after: float) -> tuple[int, int, int]:
    reader, writer = await asyncio.open_connection(bu.HOST, tcp_port)
    writer.write(frame_bytes(encode(f.Auth(token=token), MSGPACK)))
    frames = FrameReader(1 << 24)
    acked = refused = other = 0
    next_id = 1
    ready = False
    deadline = time.monotonic() + stop_after

    def send_one() -> None:
        nonlocal next_id
        frame = f.Send(id=next_id, to=to, client_msg_id=f"flood-{next_id}", body={"text": "x" * 100})
        writer.write(frame_bytes(encode(frame, MSGPACK)))
        next_id += 1

    while time.monotonic() < deadline:
        try:
            data = await asyncio.wait_for(reader.read(1 << 16), max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
        if not data:
            break
        answered = 0
        for payload in frames.feed(data):
            frame = decode_server_frame(payload, MSGPACK)
            if isinstance(frame, f.Ready):
                ready = True
                for _ in range(window):
                    send_one()
            elif isinstance(frame, f.Sent):
                acked += 1
                answered += 1
            elif isinstance(frame, f.Error) and frame.ref is not None:
                if frame.code == "rate_limited":
                    refused += 1
                else:
                    other += 1
                answered += 1
        if ready:
            for _ in range(answered):
                send_one()
        await writer.drain()
    writer.close()
    return acked, refused, other


# ====================================================================================================== honest user


async def _honest(url: str, tcp_port: int, who: Login, to: int, rate: float, duration: float) -> list[int]:
    """Open loop: a send every 1/rate s; returns each ack's latency in ns (errors are not expected: it is honest)."""
    conn = await PicaConnection.open(url, who.token, transport="tcp", tcp_port=tcp_port)
    latencies: list[int] = []

    async def one(i: int) -> None:
        start = time.perf_counter_ns()
        await conn.send(to, {"text": f"honest {i}"})
        latencies.append(time.perf_counter_ns() - start)

    tasks = []
    begin = time.monotonic()
    count = int(rate * duration)
    async with conn:
        for i in range(count):
            await asyncio.sleep(max(0.0, begin + i / rate - time.monotonic()))
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.gather(*tasks)
    return latencies


# ====================================================================================================== runs


def run_setting(limits: str, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"pica-fairness-{limits}-"))
    try:
        return _run_setting(limits, args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_setting(limits: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    server = bu.ServerProcess(
        [sys.executable, "-m", "pica", "serve", "--port", "0", "--tcp-port", "0", "--host", bu.HOST,
         "--data-dir", str(work / "data"), "--ready-file", str(work / "ready"), "--log-level", "WARNING"],
        work / "ready", work / "server.log", env=_server_env(limits),
    )
    with server:
        http_port, tcp_port = server.start()
        url = f"http://{bu.HOST}:{http_port}"
        honest, partner, flooder, victim = asyncio.run(_users(url))
        if args.quiet_wait > 0:
            bu.wait_for_quiet(limit_pct=10.0, max_wait=args.quiet_wait)
        quiet = asyncio.run(_honest(url, tcp_port, honest, partner.user_id, args.rate, args.duration))
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        flood = ctx.Process(target=flood_main,
                            args=(tcp_port, flooder.token, victim.user_id, args.window, args.duration + 2.0, out))
        flood.start()
        time.sleep(1.0)  # let the flood reach its pace before measuring
        before = bu.snapshot([server.pid])
        loud = asyncio.run(_honest(url, tcp_port, honest, partner.user_id, args.rate, args.duration))
        after = bu.snapshot([server.pid])
        acked, refused, other = out.get(timeout=args.duration + 60)
        flood.join(30)
    window = args.duration + 2.0
    quiet_ms, loud_ms = bu.latency_summary_ms(quiet), bu.latency_summary_ms(loud)
    return {
        "limits": limits, "quiet_ms": quiet_ms, "flood_ms": loud_ms,
        "p99_ratio": loud_ms["p99"] / quiet_ms["p99"] if quiet_ms["p99"] else float("nan"),
        "flooder_acked_per_s": acked / window, "flooder_refused_per_s": refused / window,
        "flooder_other_errors": other, "server_cpu_pct_during_flood": 100 * before.cpu(after, server.pid)
        / (after.at - before.at),
    }


def _server_env(limits: str) -> dict[str, str]:
    """The caller's environment with ``rate_limits`` set and every ``rates.*`` at its default: the fairness measured
    is the one a public server gets (a test suite's raised limits must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICA_RATES_")}
    env["PICA_RATE_LIMITS"] = limits
    return env


async def _users(url: str) -> tuple[Login, Login, Login, Login]:
    honest, partner = await _register(url, "honest"), await _register(url, "partner")
    flooder, victim = await _register(url, "flooder"), await _register(url, "victim")
    return honest, partner, flooder, victim


def table(results: list[dict[str, Any]]) -> str:
    headers = ["rate limits", "quiet ack p50 / p99 / max ms", "flood ack p50 / p99 / max ms", "p99 ratio",
               "flooder acked/s", "flooder refused/s", "server CPU % (flood)"]
    rows = []
    for r in results:
        q, fl = r["quiet_ms"], r["flood_ms"]
        rows.append([r["limits"], f"{q['p50']:.2f} / {q['p99']:.2f} / {q['max']:.2f}",
                     f"{fl['p50']:.2f} / {fl['p99']:.2f} / {fl['max']:.2f}", r["p99_ratio"],
                     r["flooder_acked_per_s"], r["flooder_refused_per_s"], r["server_cpu_pct_during_flood"]])
    return bu.markdown_table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limits", default="on,off", help="settings of rate_limits to run (default on,off)")
    parser.add_argument("--rate", type=float, default=20.0, help="honest user's messages per second (default 20)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase (default 10)")
    parser.add_argument("--window", type=int, default=256, help="flooder's sends in flight (default 256)")
    parser.add_argument("--quiet-wait", type=float, default=30.0, metavar="S",
                        help="wait up to S s for an idle machine before measuring (0: do not wait)")
    parser.add_argument("--quick", action="store_true", help="tiny run for CI smoke tests")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rate, args.window, args.quiet_wait = 2.0, 10.0, 32, 0.0
    uvloop.install()
    results = [run_setting(limits, args) for limits in args.limits.split(",")]
    print(f"## Fairness: an honest user at {args.rate:g} msg/s while another floods ({args.window} in flight), "
          f"{args.duration:g} s per phase\n")
    print(table(results) + "\n")
    machine = bu.machine_info()
    print(f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), Python {machine['python']}; "
          f"pica {machine['pica_revision']}; target: flood p99 <= 3x quiet p99 with rate limits on")
    bu.write_json(args.json, {"machine": machine, "args": vars(args), "results": results})


if __name__ == "__main__":
    main()
