"""Smoke test of the bus benchmark: ``bench/bus.py --quick`` on the shared Redis, then on a Redis Cluster of the
test's own. Timings are not checked; every envelope must arrive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.test_bench_smoke import assert_ok, run_quick
from tests.cluster.conftest import require_redis
from tests.cluster.redis_cluster import PrivateRedisCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(120)]

HEADER = "| bus | shards | users on B | envelopes | received | seconds | envelopes/s | resyncs | dropped |"


def test_bus_benchmark_quick_on_one_redis_and_on_a_redis_cluster(tmp_path: Path) -> None:
    require_redis()
    cluster = PrivateRedisCluster(tmp_path / "redis-cluster")
    try:
        cluster.start()
        for name, url in (("single", "redis://127.0.0.1:6379/0"), ("cluster", cluster.url)):
            out = tmp_path / f"{name}.json"
            assert_ok(run_quick("bus.py", out, "--url", url), [HEADER])
            (row,) = json.loads(out.read_text(encoding="utf-8"))["results"]
            assert row["received"] == row["frames"] and row["dropped"] == 0
            assert row["shards"] == (3 if name == "cluster" else 1)
    finally:
        cluster.stop()
