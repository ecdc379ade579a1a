"""Bus benchmark: envelopes per second from one node to another over the cluster bus, on one Redis or on a Redis
Cluster, with the same code (sharded pub/sub; ``pica/cluster``).

Two cluster nodes (``pica.cluster.Cluster``) run in this one process, each with its own hub; ``--users`` users
connect to node B (through ``before_ready``, as the gateway does) and node A delivers ``--frames`` one-recipient
frames to them round-robin, keeping at most half an outbox queued. The figure is envelopes per second from the first
delivery to the last one handed to B's stand-in devices, so both nodes' Python and Redis share the measurement (a
node's own ceiling is higher when the receiver runs elsewhere). A key prefix of its own is used and its keys are
removed by the nodes' clean leave. Loopback only; bounded by ``--timeout``.

    .venv/bin/python bench/bus.py                                                  # one Redis at 127.0.0.1:6379
    .venv/bin/python bench/bus.py --url redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002
    .venv/bin/python bench/bus.py --quick                                          # CI smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchutil import markdown_table
from pica.cluster import Cluster, NodeInfo
from pica.config import RedisConfig
from pica.core.ports import SystemClock
from pica.gateway.hub import Hub
from pica.logs import redact_url
from pica.protocol import frames as f
from pica.protocol.outbound import OutboundFrame
from pica.store.base import GroupRecord


class Device:
    """What the hub needs of a connection: counts what it is handed."""

    closed = False

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.received = 0

    def push(self, frame: OutboundFrame) -> None:
        self.received += 1


class NoGroups:
    """The store as far as the bus asks it here: nobody is in a group."""

    async def list_groups(self, user_id: int) -> list[GroupRecord]:
        return []


def node(url: str, config: RedisConfig, name: str) -> tuple[Cluster, Hub]:
    hub = Hub()
    info = NodeInfo(node_id=name, http="http://127.0.0.1:1", ws="ws://127.0.0.1:1/v1/ws", tcp="", connections=0,
                    started_at=SystemClock().now_ms())
    return Cluster(url, config, info, hub, NoGroups(), SystemClock()), hub  # type: ignore[arg-type]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    config = RedisConfig(prefix=f"pica-bench-{secrets.token_hex(4)}:")
    a, _ = node(args.url, config, "bench-a")
    b, hub_b = node(args.url, config, "bench-b")
    await asyncio.gather(a.start(), b.start())
    try:
        if not (a.healthy and b.healthy):
            raise SystemExit(f"the bus at {redact_url(args.url)} is not reachable")
        devices = []
        for user_id in range(1, args.users + 1):
            await b.before_ready(user_id)
            device = Device(user_id)
            hub_b.register(device)  # type: ignore[arg-type]
            devices.append(device)
        frame = OutboundFrame(f.Msg(conversation_id="d:1:2", seq=1, sender=1, client_msg_id="m", ts=1,
                                    body={"text": "x" * args.body}))
        ceiling = config.outbox_size // 2
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + args.timeout
        for k in range(args.frames):
            while a.stats()["outbox"] >= ceiling:
                await asyncio.sleep(0)
                if loop.time() > deadline:
                    raise SystemExit("timed out while publishing")
            a.delivery.deliver((devices[k % len(devices)].user_id,), frame)
        while sum(d.received for d in devices) < args.frames:
            await asyncio.sleep(0.001)
            if loop.time() > deadline:
                break
        elapsed = loop.time() - started
        received = sum(d.received for d in devices)
        return {
            "bus": "Redis Cluster" if args.url.startswith(("redis+cluster", "rediss+cluster")) else "one Redis",
            "shards": b.stats()["subscriber_shards"], "users": args.users, "frames": args.frames,
            "received": received, "seconds": elapsed, "per_second": received / elapsed if elapsed else 0.0,
            "resyncs": a.resyncs + b.resyncs, "dropped": a.dropped + b.dropped,
        }
    finally:
        await asyncio.gather(a.stop(), b.stop())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--url", default="redis://127.0.0.1:6379/0",
                   help="the bus: redis://... or redis+cluster://seed,seed (default: one Redis on 6379)")
    p.add_argument("--users", type=int, default=1_000, help="users connected to node B (default 1,000)")
    p.add_argument("--frames", type=int, default=200_000, help="one-recipient frames node A delivers (default 200,000)")
    p.add_argument("--body", type=int, default=100, help="bytes of text per frame (default 100)")
    p.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds (default 120)")
    p.add_argument("--quick", action="store_true", help="tiny run for CI smoke tests")
    p.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.users, args.frames, args.timeout = 50, 2_000, 30.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    print(markdown_table(
        ["bus", "shards", "users on B", "envelopes", "received", "seconds", "envelopes/s", "resyncs", "dropped"],
        [[result["bus"], result["shards"], result["users"], result["frames"], result["received"],
          round(result["seconds"], 2), result["per_second"], result["resyncs"], result["dropped"]]],
    ))
    if args.json:
        Path(args.json).write_text(json.dumps({"results": [result]}, indent=2), encoding="utf-8")
    return 0 if result["received"] == result["frames"] else 1


if __name__ == "__main__":
    sys.exit(main())
