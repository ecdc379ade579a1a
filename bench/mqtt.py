"""MQTT gateway benchmark: durable QoS 1 sends per second and publish → PUBACK latency, MQTT 3.1.1 and 5.0.

One ``pica serve`` subprocess (SQLite, ``synchronous = FULL``: a PUBACK leaves after the fsynced commit) with its MQTT
port; ``--pairs`` pairs of users. Each sender is an MQTT connection that publishes QoS 1 on ``send/u/<receiver>``;
each receiver is one subscribed to ``msg/#`` at QoS 1 that acknowledges every message (its PUBACKs move the delivered
cursors: the persistent-session bookkeeping is paid too). The load generator is this process (uvloop, Pica's own
codec to write packets, a small parser to read them), so the two of them share the machine's CPUs. Phases, each on
the same server:

* ``saturation``: a closed loop of ``--window`` unacknowledged sends per sender, for ``--duration`` s;
* ``rate R``: open loop, R msg/s over all senders, for ``--duration`` s: latency at a load below saturation.

Latency is a send's PUBLISH written → its PUBACK read (monotonic clock, same host). Usage:
``python bench/mqtt.py [--levels 4,5] [--quick] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import benchutil as bu
import chat
import uvloop

from pica.protocol import mqtt as m

# ====================================================================================================== the client


class Client(asyncio.Protocol):
    """One MQTT connection: CONNECT with a token, then PUBLISH QoS 1 (a sender) or SUBSCRIBE and PUBACK (a receiver).
    Parses only what the benchmark needs: CONNACK, SUBACK, PUBACK, PUBLISH."""

    def __init__(self, level: int, on_puback: Callable[[int], None], on_message: Callable[[], None]) -> None:
        self.level = level
        self.on_puback = on_puback
        self.on_message = on_message
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed during the handshake"))

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        pos, n, acks = 0, len(buf), []
        while n - pos >= 2:
            first, k, length, shift = buf[pos], pos + 1, 0, 0
            while k < n:
                byte = buf[k]
                k += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            else:
                break
            if k + length > n:
                break
            kind = first >> 4
            if kind == 3:  # PUBLISH, QoS 1: acknowledge it
                ident = k + 2 + ((buf[k] << 8) | buf[k + 1])
                acks.append(b"\x40\x02" + bytes(buf[ident:ident + 2]))
                self.on_message()
            elif kind == 4:  # PUBACK
                self.on_puback((buf[k] << 8) | buf[k + 1])
            elif kind in (2, 9) and not self.ready.done():  # CONNACK, SUBACK
                code = buf[k + 1] if kind == 2 else buf[k + length - 1]
                if kind == 2 and code != 0:
                    self.ready.set_exception(ConnectionError(f"CONNACK {code:#x}"))
                else:
                    self.ready.set_result(None)
            pos = k + length
        del buf[:pos]
        if acks and self.transport is not None:
            self.transport.write(b"".join(acks))

    def connect_packet(self, username: str, token: str) -> bytes:
        return m.encode(m.Connect(os.urandom(6).hex(), True, 60, username, token.encode(), level=self.level))

    def subscribe_packet(self) -> bytes:
        return m.encode(m.Subscribe(1, (("msg/#", 1),)), self.level)


async def open_client(port: int, level: int, username: str, token: str, subscribe: bool,
                      on_puback: Callable[[int], None], on_message: Callable[[], None]) -> Client:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: Client(level, on_puback, on_message), bu.HOST, port)
    assert client.transport is not None
    client.transport.write(client.connect_packet(username, token))
    await asyncio.wait_for(client.ready, 30)
    if subscribe:
        client.ready = loop.create_future()
        client.transport.write(client.subscribe_packet())
        await asyncio.wait_for(client.ready, 30)
    return client


class Sender:
    """A sending connection: PUBLISH QoS 1 on ``send/u/<to>``, a new client_msg_id each."""

    def __init__(self, stats: Stats, level: int, to: int, prefix: str) -> None:
        self.stats = stats
        self.level = level
        self.topic = f"send/u/{to}"
        self.prefix = prefix.encode()
        self.count = 0
        self.next_id = 0
        self.sent_at: dict[int, int] = {}
        self.client: Client | None = None
        self.wake: asyncio.Event | None = None

    def publish(self) -> None:
        assert self.client is not None and self.client.transport is not None
        self.count += 1
        self.next_id = self.next_id % 65535 + 1
        payload = b'{"client_msg_id":"%s%d","body":{"text":"benchmark message of a few words"}}' % (
            self.prefix, self.count)
        data = m.encode(m.Publish(self.topic, payload, 1, self.next_id), self.level)
        self.sent_at[self.next_id] = time.monotonic_ns()
        self.client.transport.write(data)
        self.stats.sent += 1

    def on_puback(self, ident: int) -> None:
        sent = self.sent_at.pop(ident, None)
        if sent is None:
            return
        now = time.monotonic_ns()
        self.stats.acked(now, now - sent)
        if self.wake is not None:
            self.wake.set()


class Stats:
    def __init__(self) -> None:
        self.sent = 0
        self.delivered = 0
        self.acked_total = 0
        self.window = (0, 0)
        """(from, to) monotonic ns of the measured window."""
        self.acked_in_window = 0
        self.delivered_in_window = 0
        self.latency_ns: array[int] = array("q")

    def acked(self, now: int, latency: int) -> None:
        self.acked_total += 1
        if self.window[0] <= now < self.window[1]:
            self.acked_in_window += 1
            self.latency_ns.append(latency)

    def message(self) -> None:
        self.delivered += 1
        now = time.monotonic_ns()
        if self.window[0] <= now < self.window[1]:
            self.delivered_in_window += 1


# ====================================================================================================== phases


async def run_phase(args: argparse.Namespace, senders: list[Sender], stats: Stats, server_pid: int, name: str,
                    rate: float | None) -> dict[str, Any]:
    if args.quiet_wait > 0:
        await asyncio.to_thread(bu.wait_for_quiet, 10.0, args.quiet_wait)
    start = time.monotonic()
    measure_from, measure_to = start + args.warmup, start + args.warmup + args.duration
    stats.window = (int(measure_from * 1e9), int(measure_to * 1e9))
    stats.acked_in_window = stats.delivered_in_window = 0
    stats.latency_ns = array("q")
    snapshots: list[bu.Snapshot] = []

    async def sample() -> None:
        await asyncio.sleep(measure_from - time.monotonic())
        snapshots.append(bu.snapshot([server_pid, os.getpid()]))
        await asyncio.sleep(measure_to - time.monotonic())
        snapshots.append(bu.snapshot([server_pid, os.getpid()]))

    async def closed_loop(sender: Sender) -> None:
        sender.wake = asyncio.Event()
        while time.monotonic() < measure_to:
            while len(sender.sent_at) < args.window:
                sender.publish()
            sender.wake.clear()
            await sender.wake.wait()
        sender.wake = None

    async def open_loop() -> None:
        assert rate is not None
        interval, sent, index = 1.0 / rate, 0, 0
        while (now := time.monotonic()) < measure_to:
            due = int((now - start) / interval) + 1
            for _ in range(min(due - sent, 1000)):
                senders[index % len(senders)].publish()
                index += 1
            sent = due
            await asyncio.sleep(0.002)

    sampler = asyncio.create_task(sample())
    if rate is None:
        await asyncio.gather(*(closed_loop(s) for s in senders))
    else:
        await open_loop()
    await sampler
    deadline = time.monotonic() + args.drain
    while any(s.sent_at for s in senders) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    undrained = sum(len(s.sent_at) for s in senders)
    for s in senders:
        s.sent_at.clear()
    first, last = snapshots
    wall = last.at - first.at
    server_cpu, gen_cpu = first.cpu(last, server_pid), first.cpu(last, os.getpid())
    result = {
        "phase": name,
        "offered_per_s": rate,
        "acked_per_s": stats.acked_in_window / args.duration,
        "delivered_per_s": stats.delivered_in_window / args.duration,
        "puback_ms": bu.latency_summary_ms(stats.latency_ns),
        "undrained": undrained,
        "server_cpu_us_per_msg": 1e6 * server_cpu / stats.acked_in_window if stats.acked_in_window else None,
        "server_cpu_pct": 100 * server_cpu / wall,
        "loadgen_cpu_pct": 100 * gen_cpu / wall,
        "other_cpu_pct": first.foreign_pct(last),
    }
    bu.log(f"{name}: {result['acked_per_s']:,.0f} acked/s, PUBACK p50 {result['puback_ms']['p50']:.2f} ms, "
           f"p99 {result['puback_ms']['p99']:.2f} ms")
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((bu.HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(work: Path) -> tuple[bu.ServerProcess, int]:
    mqtt_port = free_port()
    server = bu.ServerProcess(
        [sys.executable, "-m", "pica", "serve", "--port", "0", "--tcp-port", "0", "--mqtt-port", str(mqtt_port),
         "--host", bu.HOST, "--data-dir", str(work / "data"), "--ready-file", str(work / "ready"),
         "--log-level", "WARNING", "--synchronous", "FULL"],
        work / "ready",
        work / "server.log",
    )
    server.start()
    return server, mqtt_port


async def run_level(args: argparse.Namespace, level: int, server: bu.ServerProcess, mqtt_port: int,
                    accounts: list[chat.Account], names: list[str]) -> list[dict[str, Any]]:
    stats = Stats()
    senders: list[Sender] = []
    clients: list[Client] = []
    prefix = os.urandom(3).hex() + f"-{level}-"
    for i in range(0, len(accounts), 2):
        sender = Sender(stats, level, accounts[i + 1].user_id, f"{prefix}{i}-")
        sender.client = await open_client(mqtt_port, level, names[i], accounts[i].token, False, sender.on_puback,
                                          stats.message)
        receiver = await open_client(mqtt_port, level, names[i + 1], accounts[i + 1].token, True,
                                     lambda ident: None, stats.message)
        senders.append(sender)
        clients += [sender.client, receiver]
    try:
        results = [await run_phase(args, senders, stats, server.pid, "saturation", None)]
        for rate in args.rate:
            results.append(await run_phase(args, senders, stats, server.pid, f"rate {rate:,.0f}", rate))
        if any(c.lost for c in clients):
            raise RuntimeError(f"{sum(c.lost for c in clients)} connections were closed by the server")
    finally:
        for c in clients:
            if c.transport is not None:
                c.transport.write(b"\xe0\x00")
                c.transport.close()
    for r in results:
        r["level"] = "3.1.1" if level == 4 else "5.0"
    return results


# ====================================================================================================== main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--pairs", type=int, default=50, help="sender → receiver pairs (default 50)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each phase (default 2)")
    p.add_argument("--window", type=int, default=16, help="saturation: unacknowledged sends per sender (default 16)")
    p.add_argument("--rate", default="500", help="offered msg/s of the latency phases, comma-separated (default 500)")
    p.add_argument("--levels", default="4,5", help="MQTT protocol levels to run, 4 (3.1.1) and/or 5 (default 4,5)")
    p.add_argument("--drain", type=float, default=10.0, help="seconds to wait for outstanding PUBACKs after a phase")
    p.add_argument("--quiet-wait", type=float, default=30.0, metavar="S",
                   help="before each phase wait up to S s for the machine to be idle (default 30; 0: never)")
    p.add_argument("--quick", action="store_true", help="tiny run for CI smoke tests")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.pairs, args.duration, args.warmup, args.rate, args.drain, args.quiet_wait = 4, 1.0, 0.2, "200", 5.0, 0.0
    args.rate = [float(r) for r in args.rate.split(",") if r]
    args.levels = [int(v) for v in args.levels.split(",") if v]
    if set(args.levels) - {4, 5}:
        p.error("--levels: 4 and/or 5")
    return args


def table(results: list[dict[str, Any]]) -> str:
    rows = [[r["level"], r["phase"], r["acked_per_s"], r["delivered_per_s"], r["puback_ms"]["p50"],
             r["puback_ms"]["p99"], r["server_cpu_us_per_msg"], r["server_cpu_pct"], r["loadgen_cpu_pct"],
             r["other_cpu_pct"]] for r in results]
    return bu.markdown_table(["MQTT", "phase", "acked msg/s", "delivered msg/s", "PUBACK p50 ms", "PUBACK p99 ms",
                              "server CPU µs/msg", "server CPU %", "loadgen CPU %", "other CPU %"], rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bu.exit_on_sigterm()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pica-bench-mqtt-") as tmp:
        server, mqtt_port = start_server(Path(tmp))
        with server:
            accounts = uvloop.run(chat.register_users(f"http://{bu.HOST}:{server.ports[0]}", args.pairs * 2))
            names = [f"bench{i:05d}" for i in range(args.pairs * 2)]  # chat.register_users's names
            results = []
            for level in args.levels:
                results += uvloop.run(run_level(args, level, server, mqtt_port, accounts, names))
    print(f"## Pica MQTT gateway benchmark: {args.pairs} pairs, QoS 1, durable PUBACK (synchronous FULL), window "
          f"{args.window}, {args.duration:g} s per phase\n")
    print(table(results) + "\n")
    machine = bu.machine_info()
    print(f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}); pica {machine['pica_revision']}; rate limits "
          f"{bu.RATE_LIMITS}")
    bu.write_json(args.json, {"machine": machine, "args": vars(args), "results": results,
                              "elapsed_s": time.monotonic() - started})
    bu.log(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
