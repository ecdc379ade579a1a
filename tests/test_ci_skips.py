"""Under CI=true a skipped test fails the run, also when the skip happens on a pytest-xdist worker (scripts/test runs
2 workers): the check in tests/conftest.py runs in the controller, which sees every worker's reports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = '''
import pytest


def test_passes() -> None:
    pass


def test_skips() -> None:
    pytest.skip("a missing dependency")
'''


def test_a_skip_on_a_worker_fails_the_run_under_ci(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_sessionfinish, pytest_terminal_summary\n")
    (tmp_path / "test_probe.py").write_text(PROBE)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "--rootdir",
                          str(tmp_path), str(tmp_path)],
                         cwd=tmp_path, env={**os.environ, "CI": "true", "PYTHONPATH": str(ROOT)}, capture_output=True,
                         text=True, timeout=60, check=False)
    output = run.stdout[-3000:] + run.stderr[-3000:]
    assert "1 passed, 1 skipped" in run.stdout, output  # nothing failed but the skip ...
    assert "test_skips: Skipped: a missing dependency" in run.stdout, output  # ... which is named ...
    assert "CI=true: skipped tests count as failures" in run.stdout, output
    assert run.returncode == 1, output  # ... and fails the run
