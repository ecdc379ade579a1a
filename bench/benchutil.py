"""Helpers shared by the benchmark scripts: server subprocesses, process sampling, statistics, output.

Imported as a sibling module (``python bench/chat.py`` puts ``bench/`` first on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psutil

HOST = "127.0.0.1"

RATE_LIMITS: Final = os.environ.get("PICA_RATE_LIMITS", "off")
"""What every server a benchmark starts runs with: rate limits off (a load generator is one address flooding on
purpose), unless ``PICA_RATE_LIMITS=on`` is in the environment. Printed with the results."""


# --------------------------------------------------------------------------------------------------- subprocesses


class ServerProcess:
    """A server started as a subprocess that writes its port(s) to ``ready_file`` once it listens."""

    def __init__(self, argv: Sequence[str], ready_file: Path, log_file: Path, env: dict[str, str] | None = None):
        self.argv = list(argv)
        self.ready_file = ready_file
        self.log_file = log_file
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: list[int] = []

    def start(self, timeout: float = 30.0) -> list[int]:
        self.ready_file.unlink(missing_ok=True)
        with self.log_file.open("ab") as log:
            # cwd: the log's directory, so that ``-m pica`` imports the pica on sys.path, not one in the caller's cwd
            env = {"PICA_RATE_LIMITS": RATE_LIMITS, **(self.env if self.env is not None else os.environ)}
            if self.env is None or "PICA_RATE_LIMITS" not in self.env:  # a benchmark's own choice wins
                env["PICA_RATE_LIMITS"] = RATE_LIMITS
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=self.log_file.parent, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            text = self.ready_file.read_text() if self.ready_file.exists() else ""
            if text.endswith("\n"):
                self.ports = [int(p) for p in text.split()]
                return self.ports
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server not ready within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 15.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to send SIGTERM when the benchmark dies, so no server is left behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


_PR_SET_PDEATHSIG = 1


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that ``with``/``finally`` blocks stop servers and child processes."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


# --------------------------------------------------------------------------------------------------- sampling


@dataclass(frozen=True, slots=True)
class CpuSample:
    at: float
    total: float
    """user + system seconds of all threads of the process and of its child processes (a server's SQLite writer
    process, or the workers of ``--workers``), counted for the children alive when sampled."""
    main_thread: float
    """user + system seconds of the main thread (the event loop)."""


def cpu_sample(pid: int, skip: Collection[int] = ()) -> CpuSample:
    """CPU of ``pid`` and its descendants, but for the subtrees rooted at ``skip``: a load generator that started
    the server it measures must not count the server as its own."""
    proc = psutil.Process(pid)
    total = 0.0
    stack = [proc]
    while stack:
        current = stack.pop()
        with contextlib.suppress(psutil.NoSuchProcess):
            times = current.cpu_times()
            total += times.user + times.system
            stack.extend(child for child in current.children() if child.pid not in skip)
    main = 0.0
    for thread in proc.threads():
        if thread.id == pid:
            main = thread.user_time + thread.system_time
    return CpuSample(time.monotonic(), total, main)


def system_busy() -> float:
    """CPU seconds all CPUs spent not idle since boot (user, system, irq, softirq, steal, ...)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """CPU use of some processes and of the whole machine at one moment."""

    at: float
    busy: float
    procs: dict[int, CpuSample]

    def cpu(self, later: Snapshot, pid: int) -> float:
        """CPU seconds ``pid`` used between this snapshot and ``later``."""
        return later.procs[pid].total - self.procs[pid].total

    def foreign_pct(self, later: Snapshot) -> float:
        """Percent of one CPU used by everything but the sampled processes (other programs, kernel threads):
        a run is only clean when this stays small."""
        own = sum(self.cpu(later, pid) for pid in self.procs)
        return 100 * (later.busy - self.busy - own) / (later.at - self.at)


def snapshot(pids: list[int]) -> Snapshot:
    return Snapshot(time.monotonic(), system_busy(), {pid: cpu_sample(pid, set(pids) - {pid}) for pid in pids})


def wait_for_quiet(limit_pct: float = 10.0, max_wait: float = 60.0, step: float = 1.0) -> float:
    """Wait (at most ``max_wait`` s) until the machine's whole CPU use over ``step`` s is under ``limit_pct`` percent of
    one CPU, so that a run does not start while some other program is busy. Returns the last figure."""
    deadline = time.monotonic() + max_wait
    while True:
        busy0, at0 = system_busy(), time.monotonic()
        time.sleep(step)
        used = 100 * (system_busy() - busy0) / (time.monotonic() - at0)
        if used < limit_pct or time.monotonic() >= deadline:
            return used


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def settled_rss(pid: int, *, settle: float, samples: int = 5) -> int:
    """Wait ``settle`` seconds, then the median of a few RSS samples taken 0.2 s apart."""
    time.sleep(settle)
    values = []
    for _ in range(samples):
        values.append(rss(pid))
        time.sleep(0.2)
    return int(sorted(values)[len(values) // 2])


def cpu_calibration_ms(n: int = 3_000_000) -> float:
    """Milliseconds for a fixed pure-Python loop: how fast this (shared, virtual) CPU is right now. Runs of the
    benchmarks are only comparable when this figure is similar."""
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return (time.perf_counter() - start) * 1000


# --------------------------------------------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (nan when empty)."""
    if not sorted_values:
        return float("nan")
    rank = math.ceil(q / 100 * len(sorted_values))
    return float(sorted_values[max(0, min(len(sorted_values), rank) - 1)])


def latency_summary_ms(values_ns: Iterable[int]) -> dict[str, float]:
    ordered = sorted(values_ns)
    ms = 1e6
    return {
        "count": float(len(ordered)),
        "p50": percentile(ordered, 50) / ms,
        "p99": percentile(ordered, 99) / ms,
        "p999": percentile(ordered, 99.9) / ms,
        "max": (ordered[-1] / ms) if ordered else float("nan"),
    }


def slow_spells(sent_at: Sequence[int], latencies: Sequence[int], threshold: float, gap: float,
                unit: float = 1.0) -> list[dict[str, float]]:
    """When the sends at least ``threshold`` slow were made, as spells (slow sends less than ``gap`` apart): seconds
    from the first send, how long the spell lasted (ms), how many, the worst (ms). All in the caller's ``unit`` per
    second (1e6 for µs, 1e9 for ns). A tail from a periodic pause shows as spells one period apart; a tail spread
    evenly shows as many small spells with no period."""
    if not sent_at:
        return []
    start = min(sent_at)
    slow = sorted((t, lat) for t, lat in zip(sent_at, latencies, strict=True) if lat >= threshold)
    spells: list[list[tuple[int, int]]] = []
    for t, lat in slow:
        if spells and t - spells[-1][-1][0] < gap:
            spells[-1].append((t, lat))
        else:
            spells.append([(t, lat)])
    ms = unit / 1e3
    return [{"at_s": round((spell[0][0] - start) / unit, 2), "lasted_ms": round((spell[-1][0] - spell[0][0]) / ms),
             "count": len(spell), "worst_ms": round(max(lat for _, lat in spell) / ms, 1)} for spell in spells]


# --------------------------------------------------------------------------------------------------- output


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine_info() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
        "pica_revision": pica_revision(),
    }


def pica_revision() -> str:
    """Which pica the benchmark imports: the checkout's git commit (``+dirty`` when pica/ has uncommitted changes;
    read-only git calls), or the directory it was imported from when that is not this checkout (a snapshot made
    with ``git archive``, put first on PYTHONPATH)."""
    import pica

    repo = Path(__file__).resolve().parent.parent
    source = Path(pica.__file__).resolve().parent.parent
    if source != repo:
        return f"snapshot {source}"
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "pica"], capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def write_json(path: str | None, data: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def log(message: str) -> None:
    """Progress goes to stderr, so that stdout holds only the tables."""
    print(message, file=sys.stderr, flush=True)


def run_on_uvloop(main: Coroutine[Any, Any, None]) -> None:
    """Run a benchmark's main coroutine on uvloop, the loop `pica serve` runs on (asyncio's without it)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
