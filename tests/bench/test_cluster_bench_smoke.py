"""Smoke test of the cluster benchmark: ``bench/cluster.py --quick`` runs against the shared PostgreSQL and Redis
(a schema and a key prefix of its own, removed afterwards) and prints its tables. Timings are not checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.test_bench_smoke import BENCH, assert_ok

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(120)]


def services_reachable() -> str | None:
    """Why the benchmark cannot run here, or None."""
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping()
    except Exception as exc:
        return f"Redis at 127.0.0.1:6379 is not reachable: {exc!r}"
    probe = subprocess.run(
        [sys.executable, "-c", "import asyncio, asyncpg; asyncio.run(asyncpg.connect("
         "'postgresql://postgres@127.0.0.1:5432/test', timeout=5))"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    if probe.returncode != 0:
        return f"PostgreSQL at 127.0.0.1:5432/test is not reachable: {probe.stderr.strip()[-300:]}"
    return None


def test_cluster_benchmark_quick(tmp_path: Path) -> None:
    missing = services_reachable()
    if missing:
        pytest.skip(f"THE CLUSTER BENCHMARK NEEDS PostgreSQL and Redis: {missing}")
    out = tmp_path / "cluster.json"
    result = subprocess.run([sys.executable, str(BENCH / "cluster.py"), "--quick", "--json", str(out)],
                            capture_output=True, text=True, timeout=100, check=False)
    assert_ok(result, ["| nodes | clients | acked msg/s | delivered msg/s |",
                       "| nodes | connections per node | acked msg/s per node |"])
    (row,) = json.loads(out.read_text(encoding="utf-8"))["results"]
    assert row["nodes"] == 2 and row["acked"] > 0
    assert row["delivered"] == row["acked"] and row["undrained"] == 0, "every acked message was delivered"
