"""Smoke test of ``bench/mqtt.py`` (beside the others in tests/bench): its ``--quick`` form runs and prints its table,
both MQTT levels, every PUBACK drained. Nothing about timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.test_bench_smoke import assert_ok, run_quick

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def test_mqtt_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "mqtt.json"
    result = run_quick("mqtt.py", out)
    assert_ok(result, ["| MQTT | phase | acked msg/s | delivered msg/s | PUBACK p50 ms | PUBACK p99 ms |"])
    results = json.loads(out.read_text(encoding="utf-8"))["results"]
    assert {(r["level"], r["phase"]) for r in results} == {(level, phase) for level in ("3.1.1", "5.0")
                                                            for phase in ("saturation", "rate 200")}
    assert all(r["undrained"] == 0 and r["acked_per_s"] > 0 for r in results)
