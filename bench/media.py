"""Files benchmark: upload and download throughput, and the server's memory while many clients upload at once.

A fresh server (``python -m pica serve``, SQLite and the content-addressed directory under a temporary data dir), and
``--clients`` users in one load-generator process, each uploading ``--mib`` MiB of random bytes at the same time
(``POST /v1/files``, streamed from memory in 256 KiB chunks), then each downloading its file back. Reported: MB/s
over the phase (all bytes / wall time), per-request p50/max seconds, the server's CPU seconds and its peak RSS
(sampled every 50 ms, child processes included: the SQLite writer). Random bytes, so the sniffing sees
``application/octet-stream`` and no image work is done: this measures the byte path.

    .venv/bin/python bench/media.py                    # 20 clients x 50 MiB
    .venv/bin/python bench/media.py --quick            # 4 clients x 2 MiB (CI smoke run)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import benchutil as bu
import chat
import psutil

CHUNK = 256 * 1024


def rss_bytes(pid: int) -> int:
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):  # it ended between the listing and the reading
            total += child.memory_info().rss
    return total


async def sample_rss(pid: int, stop: asyncio.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_bytes(pid))
        await asyncio.sleep(0.05)


async def register(session: aiohttp.ClientSession, url: str, name: str) -> str:
    body = {"username": name, "password": "correct horse battery"}
    async with session.post(url + "/v1/auth/register", json=body) as resp:
        assert resp.status == 201, await resp.text()
    async with session.post(url + "/v1/auth/login", json=body) as resp:
        return str((await resp.json())["token"])


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for at in range(0, len(data), CHUNK):
        yield data[at:at + CHUNK]


async def upload(session: aiohttp.ClientSession, url: str, token: str, data: bytes) -> tuple[float, str]:
    start = time.perf_counter()
    async with session.post(url + "/v1/files", data=chunks(data), params={"filename": "blob.bin"},
                            headers={"Authorization": f"Bearer {token}", "Content-Length": str(len(data))}) as resp:
        info = await resp.json()
        assert resp.status == 201, info
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    return time.perf_counter() - start, str(info["file_id"])


async def download(session: aiohttp.ClientSession, url: str, token: str, file_id: str, size: int) -> float:
    start = time.perf_counter()
    received = 0
    async with session.get(f"{url}/v1/files/{file_id}", headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
        async for chunk in resp.content.iter_chunked(CHUNK):
            received += len(chunk)
    assert received == size
    return time.perf_counter() - start


async def phase(name: str, pid: int, work: list[Any], total_bytes: int) -> dict[str, Any]:
    stop, peak = asyncio.Event(), [0]
    sampler = asyncio.get_running_loop().create_task(sample_rss(pid, stop, peak))
    cpu_before = bu.cpu_sample(pid)
    start = time.perf_counter()
    results = await asyncio.gather(*work)
    wall = time.perf_counter() - start
    cpu_after = bu.cpu_sample(pid)
    stop.set()
    await sampler
    seconds = [r[0] if isinstance(r, tuple) else r for r in results]
    return {"phase": name, "requests": len(work), "mb_per_s": round(total_bytes / wall / 1e6, 1),
            "p50_s": round(statistics.median(seconds), 2), "max_s": round(max(seconds), 2),
            "server_cpu_s": round(cpu_after.total - cpu_before.total, 1),
            "server_peak_rss_mib": round(peak[0] / 2**20, 1), "results": results}


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    size = int(args.mib * 2**20)
    with tempfile.TemporaryDirectory(prefix="pica-bench-media-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "PICA_MEDIA_QUOTA_BYTES": str(4 * size), "PICA_MEDIA_MAX_FILE_BYTES": str(2 * size)}
        with chat.start_server(work, "media", env=env) as server:
            http_port = server.ports[0]
            url = f"http://{bu.HOST}:{http_port}"
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector,
                                             timeout=aiohttp.ClientTimeout(total=None)) as session:
                tokens = [await register(session, url, f"u{i}x{os.getpid()}") for i in range(args.clients)]
                payloads = [os.urandom(size) for _ in range(args.clients)]
                idle_rss = rss_bytes(server.pid)
                up = await phase("upload", server.pid,
                                 [upload(session, url, t, d) for t, d in zip(tokens, payloads, strict=True)],
                                 size * args.clients)
                ids = [file_id for _, file_id in up.pop("results")]
                down = await phase("download", server.pid,
                                   [download(session, url, t, f, size) for t, f in zip(tokens, ids, strict=True)],
                                   size * args.clients)
                down.pop("results")
    for row in (up, down):
        row["server_idle_rss_mib"] = round(idle_rss / 2**20, 1)
    return [up, down]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--mib", type=float, default=50.0, help="MiB each client uploads")
    parser.add_argument("--quick", action="store_true", help="a small run (CI smoke test)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.mib = 4, 2.0
    rows = asyncio.run(run(args))
    print(f"{args.clients} clients x {args.mib:g} MiB, one load-generator process, {bu.HOST}")
    print(bu.markdown_table(
        ["phase", "requests", "MB/s", "request p50 s", "request max s", "server CPU s", "server peak RSS MiB",
         "server idle RSS MiB"],
        [[r["phase"], r["requests"], r["mb_per_s"], r["p50_s"], r["max_s"], r["server_cpu_s"],
          r["server_peak_rss_mib"], r["server_idle_rss_mib"]] for r in rows]))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}), encoding="utf-8")


if __name__ == "__main__":
    main()
