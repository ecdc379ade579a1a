"""Smoke test of the benchmarks: each runs in its ``--quick`` form and prints its tables.

It keeps the benchmark scripts from rotting as the server changes. It asserts nothing about timings: the figures
of a tiny run on a shared CI machine mean nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
RUN_TIMEOUT = 45.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def run_quick(script: str, json_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--json", str(json_path), *extra],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def assert_ok(result: subprocess.CompletedProcess[str], headers: list[str]) -> None:
    detail = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"exit {result.returncode}\n{detail}"
    for header in headers:
        assert header in result.stdout, f"missing {header!r} in:\n{result.stdout}"


def test_chat_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "chat.json"
    result = run_quick("chat.py", out)
    assert_ok(
        result,
        [
            "| phase | offered msg/s | acked msg/s | delivered msg/s |",
            "| transport | connections |",
            "| target | measured | met |",
        ],
    )
    data = json.loads(out.read_text(encoding="utf-8"))
    assert {r["phase"] for r in data["load"]} >= {"saturation"}
    assert {r["transport"] for r in data["idle"]} == {"tcp", "ws"}


def test_ws_libs_benchmark_quick(tmp_path: Path) -> None:
    pytest.importorskip("picows")
    pytest.importorskip("websockets")
    out = tmp_path / "ws_libs.json"
    result = run_quick("ws_libs.py", out)
    assert_ok(result, ["| library | version | messages/s (median) |", "| library (ratio to aiohttp) |"])
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [r["lib"] for r in data["results"]] == ["aiohttp", "websockets", "picows"]


def test_group_fanout_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "fanout.json"
    result = run_quick("group_fanout.py", out)
    assert_ok(result, ["| phase | members connected | messages acked | deliveries | deliveries/s |"])
    rows = json.loads(out.read_text(encoding="utf-8"))["rows"]
    # every connected member received every acked message, in both phases
    assert all(row[3] == row[1] * row[2] for row in rows), rows


async def test_store_benchmark_quick(tmp_path: Path) -> None:
    from tests.store.conftest import connect_admin

    await (await connect_admin()).close()  # skips, loudly, without PostgreSQL
    out = tmp_path / "store.json"
    result = run_quick("store.py", out)
    assert_ok(result, ["msgs_per_s", "cpu_us_per_msg"])
    runs = json.loads(out.read_text())["runs"]
    assert [run["backend"] for run in runs] == ["sqlite", "postgres"]
    assert all(run["messages"] > 0 and run["msgs_per_s"] > 0 for run in runs)


def test_store_benchmark_with_two_writer_processes_quick(tmp_path: Path) -> None:
    """Two processes append to one SQLite file; the benchmark itself checks seqs and counts before printing."""
    out = tmp_path / "store.json"
    result = run_quick("store.py", out, "--backend", "sqlite", "--procs", "2")
    assert_ok(result, ["msgs_per_s"])
    (run,) = json.loads(out.read_text())["runs"]
    assert run["backend"] == "sqlite x2 processes" and run["messages"] == 1_000


def test_idle_cpu_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "idle_cpu.json"
    result = run_quick("idle_cpu.py", out)
    assert_ok(result, ["| transport | heartbeat s | connections |", "CPU µs per heartbeat"])
    runs = json.loads(out.read_text())["results"]
    assert [run["transport"] for run in runs] == ["tcp", "ws"]
    for run in runs:
        assert run["connections"] == 200 and run["open_at_end"] == 200 and run["server_alive"], run
        assert run["pongs_per_s"] > 0, f"the {run['transport']} holders answered no ping: {run}"


def test_fairness_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "fairness.json"
    result = run_quick("fairness.py", out)
    assert_ok(result, ["| rate limits | quiet ack p50 / p99 / max ms | flood ack p50 / p99 / max ms | p99 ratio |"])
    results = json.loads(out.read_text())["results"]
    assert [r["limits"] for r in results] == ["on", "off"]
    on, off = results
    assert on["flooder_refused_per_s"] > 0 and off["flooder_refused_per_s"] == 0  # the limits were really on/off
    assert off["flooder_acked_per_s"] > on["flooder_acked_per_s"]


def test_search_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "search.json"
    result = run_quick("search.py", out)
    assert_ok(result, ["| backend | messages | seed msg/s | reindex msg/s |", "| query | matches (of 200) |"])
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["messages"] == 3_000 and len(data["queries"]) >= 10


def test_webhooks_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "webhooks.json"
    result = run_quick("webhooks.py", out)
    assert_ok(result, ["| webhooks | acked msg/s | ratio to off |", "| phase | acked msg/s | ack p50 ms |"])
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [r["mode"] for r in data["results"]] == ["off", "rows", "deliver"]
    assert data["results"][2]["job_ms"]["count"] > 0


def test_tokenizer_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "tokenizer.json"
    result = run_quick("tokenizer.py", out)
    assert_ok(result, ["| text (500 messages each) | document() µs of CPU per message |"])
    assert len(json.loads(out.read_text(encoding="utf-8"))["rows"]) == 4


def test_media_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "media.json"
    result = run_quick("media.py", out)
    assert_ok(result, ["| phase | requests | MB/s |"])
    assert [r["phase"] for r in json.loads(out.read_text(encoding="utf-8"))["rows"]] == ["upload", "download"]
def test_push_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "push.json"
    result = run_quick("push.py", out)
    assert_ok(result, ["| push | acked msg/s | ratio to off |", "| phase | sent msg/s | pushes received |"])
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [r["mode"] for r in data["results"]] == ["off", "rows", "deliver"]
    assert data["results"][2]["job_ms"]["count"] > 0


def run_quick_slowly(script: str, json_path: Path, timeout: float = 100.0, extra: tuple[str, ...] = ()
                     ) -> subprocess.CompletedProcess[str]:
    """``run_quick`` for the benchmarks whose set-up alone (a server, users, holder processes) takes a while."""
    return subprocess.run([sys.executable, str(BENCH / script), "--quick", "--json", str(json_path), *extra],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.timeout(120)
def test_connect_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "connect.json"
    assert_ok(run_quick_slowly("connect.py", out), ["| transport | connects | server CPU µs per connect (median) |"])
    results = json.loads(out.read_text())["results"]
    assert [(r["transport"], r["connects"], r["failures"]) for r in results] == [("tcp", 50, []), ("ws", 50, [])]


@pytest.mark.timeout(120)
def test_connect_benchmark_quick_with_distinct_users(tmp_path: Path) -> None:
    """Users seeded into the store, each with related users: every connect a different user's first device."""
    out = tmp_path / "connect.json"
    result = run_quick_slowly("connect.py", out, extra=("--distinct", "--peers", "4"))
    assert_ok(result, ["50 distinct users, 4 peers each"])
    report = json.loads(out.read_text())
    assert (report["users"], report["distinct"], report["peers"]) == (50, True, 4)
    assert [(r["transport"], r["connects"], r["failures"]) for r in report["results"]] == [
        ("tcp", 50, []), ("ws", 50, [])]


@pytest.mark.timeout(120)
def test_catchup_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "catchup.json"
    assert_ok(run_quick_slowly("catchup.py", out), ["| store | sync | page | pages |"])
    results = json.loads(out.read_text())["results"]
    assert [(r["mode"], r["messages"]) for r in results] == [("paged", 2_000), ("stream", 2_000)]


@pytest.mark.timeout(150)
def test_connections_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "connections.json"
    assert_ok(run_quick_slowly("connections.py", out, 130.0), ["| connections | failed first try / never held |"])
    result = json.loads(out.read_text())["result"]
    assert (result["connections"], result["failed"], result["errors"]) == (200, 0, 0)
    assert result["tcp"] > 0 and result["ws"] > 0
    assert result["delivered"] == result["acked"] == result["sent"] > 0
    assert result["acks_timed"] == result["acked"]  # every ack matched to its send: the store's part of a delivery


@pytest.mark.timeout(150)
def test_connections_benchmark_quick_on_workers_of_the_embedded_store(tmp_path: Path) -> None:
    out = tmp_path / "connections.json"
    result_run = run_quick_slowly("connections.py", out, 130.0, ("--workers", "2", "--embedded", "--recipients", "20"))
    assert_ok(result_run, ["2 worker(s) on the embedded store", "| connections | failed first try / never held |"])
    result = json.loads(out.read_text())["result"]
    assert (result["workers"], result["connections"], result["failed"], result["errors"]) == (2, 200, 0, 0)
    assert result["recipients"] == 20  # every message to one of 20 users: conversations already open
    assert result["delivered"] == result["acked"] == result["sent"] > 0  # across the workers, through their hub
