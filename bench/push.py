"""Push jobs benchmark: what a push job per message costs the 1:1 hot path, and how long a push takes from its due
time to its arrival at a Web Push service.

Same load as ``bench/chat.py`` and ``bench/webhooks.py`` (TCP + MessagePack, pairs of users, a closed loop of
``--window`` sends in flight per connection), against three fresh servers:

* ``off``: no ``[push]`` platform (the default): no push job is written;
* ``rows``: Web Push on (a VAPID key), the in-node worker off (``jobs.run_in_node = false``): every message also
  writes its push job row in its transaction, nothing runs them; this isolates the outbox's cost;
* ``deliver``: Web Push on with the worker running, and every user with a Web Push device on a local push service (a
  separate process, aiohttp on uvloop, answering 201 at once after decrypting): the load generator acknowledges no
  delivery (``recv``), so every message is pushed ``push.delay`` after its commit: the whole cost on the node.

In the saturation phase every user also sends, and a sender's message moves their delivered cursor past what they
were sent, so most push jobs there find their recipient caught up and push nothing (what a lively conversation
does); the pushes themselves are measured apart. Job latency (``deliver`` only, before its saturation phase): one
more user sends open-loop at ``--job-rate`` msg/s, over TCP, to ten users who never connect, each with a Web Push
device; the push service decrypts each push (RFC 8291) and records its arrival minus the message's ``ts`` minus
``push.delay``: the time from the job's due time to the push received (claim, reads, encryption, the request).
Usage: ``python bench/push.py [--quick] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchutil as bu
import chat
import uvloop
import webhooks

DELAY = 1.0
"""``push.delay`` of the benchmark's servers (seconds); subtracted from the measured latency."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ====================================================================================================== push service


def service_main(port_file: str, key_pem: bytes, auth: bytes) -> None:
    """A Web Push service that decrypts every push (RFC 8291) and times it from its due time."""
    import http_ece
    from cryptography.hazmat.primitives import serialization

    bu.exit_on_sigterm()
    key = serialization.load_pem_private_key(key_pem, None)

    def due_ms(body: bytes) -> float:
        push = json.loads(http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm"))
        return float(push["ts"]) + DELAY * 1000

    uvloop.run(webhooks.serve_latencies(Path(port_file), "/push/{device}", due_ms, 201))


# ====================================================================================================== server


def vapid_key() -> str:
    from cryptography.hazmat.primitives.asymmetric import ec

    return b64url(ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value.to_bytes(32, "big"))


def start_server(work: Path, mode: str) -> bu.ServerProcess:
    home = work / mode
    home.mkdir()
    config = home / "pica.toml"
    text = ""
    if mode != "off":
        text = (f"[jobs]\nrun_in_node = {'true' if mode == 'deliver' else 'false'}\n\n"
                f'[push]\ndelay = {DELAY}\nvapid_private_key = "{vapid_key()}"\nwebpush_allow_private = true\n')
    config.write_text(text)
    return chat.start_server(home, mode, "--config", str(config))


QUIET_USERS = 10


async def push_phase(base_url: str, tcp_port: int, service_port: int, keys: dict[str, str], rate: float,
                     duration: float) -> dict[str, Any]:
    """One sender at ``rate`` msg/s to users who are never online and each have a Web Push device."""
    from pica.client import PicaConnection, PicaHttp

    async with PicaHttp(base_url) as http:
        quiet = []
        for n in range(QUIET_USERS + 1):
            await http.register(f"quiet{n:03d}", chat.PASSWORD)
            quiet.append(await http.login(f"quiet{n:03d}", chat.PASSWORD))
        sender, recipients = quiet[0], quiet[1:]
        for n, login in enumerate(recipients):
            http.token = login.token
            await http.request("POST", "/v1/devices", json={"platform": "webpush", "subscription": {
                "endpoint": f"http://{bu.HOST}:{service_port}/push/{n}", "keys": keys}})
    conn = await PicaConnection.open(base_url, sender.token, transport="tcp", tcp_port=tcp_port)
    sends = []
    started = time.monotonic()
    count = int(rate * duration)
    for i in range(count):
        await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
        sends.append(asyncio.ensure_future(conn.send(recipients[i % QUIET_USERS].user_id, {"text": f"push {i}"},
                                                     client_msg_id=f"p{i}")))
    await asyncio.gather(*sends)
    elapsed = time.monotonic() - started
    await conn.close()
    return {"phase": f"push {rate:,.0f}/s", "sent": count, "sent_per_s": round(count / elapsed, 1)}


def run_mode(args: argparse.Namespace, work: Path, mode: str, service_port: int, service_pid: int,
             subscription_keys: dict[str, str]) -> dict[str, Any]:
    with start_server(work, mode) as server:
        http_port, tcp_port = server.ports
        base_url = f"http://{bu.HOST}:{http_port}"
        accounts = uvloop.run(chat.register_users(base_url, args.users))
        result: dict[str, Any] = {"mode": mode}
        if mode == "deliver":
            webhooks.receiver_stats(service_port)
            result["push_phase"] = uvloop.run(push_phase(base_url, tcp_port, service_port, subscription_keys,
                                                         args.job_rate, args.duration))
            time.sleep(args.settle + DELAY)  # the last pushes of the phase come due and arrive
            result["job_ms"] = webhooks.receiver_stats(service_port)
        workers = chat.start_workers(args.procs, tcp_port, accounts)
        try:
            if mode == "deliver":
                bu.log(f"{mode}: push latency after its due time p50 {result['job_ms']['p50']} ms, "
                       f"p99 {result['job_ms']['p99']} ms")
            result["saturation"] = chat.run_phase(workers, server.pid, "saturation", None, args, (service_pid,))
            bu.log(f"{mode}: {result['saturation']['acked_per_s']:,.0f} acked/s")
        finally:
            chat.stop_workers(workers)
    return result


# ====================================================================================================== main


def main(argv: list[str] | None = None) -> int:
    args = webhooks.parse_args(argv)
    bu.exit_on_sigterm()
    started = time.monotonic()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    auth = os.urandom(16)
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    keys = {"p256dh": b64url(public), "auth": b64url(auth)}
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    with tempfile.TemporaryDirectory(prefix="pica-bench-push-") as tmp:
        work = Path(tmp)
        service, port = webhooks.start_receiver(work, service_main, pem, auth)
        try:
            results = [run_mode(args, work, mode, port, service.pid or 0, keys) for mode in args.modes]
        finally:
            service.terminate()
            service.join(10)
    print(f"## Pica push jobs benchmark: {args.users} users, TCP + MessagePack, window {args.window}, "
          f"{args.duration:g} s per phase, push.delay {DELAY:g} s\n")
    print(webhooks.table(results, "push") + "\n")
    for r in results:
        if "job_ms" in r:
            jobs, phase = r["job_ms"], r["push_phase"]
            print(bu.markdown_table(["phase", "sent msg/s", "pushes received", "due → received p50 ms", "p99 ms",
                                     "max ms"],
                                    [[phase["phase"], phase["sent_per_s"], jobs["count"], jobs["p50"], jobs["p99"],
                                      jobs["max"]]]) + "\n")
    return webhooks.finish(args, results, started)


if __name__ == "__main__":
    sys.exit(main())
