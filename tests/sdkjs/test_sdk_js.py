"""Node's test runner over the JS SDK: the unit tests (ordering, de-duplication, backoff, resume) and the integration
tests against real `pica serve` processes they start themselves (1:1, a group, kill -9 with sends in flight)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sdkjs.conftest import node_args


def node_test(sdk: Path, folder: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*node_args(), "--test", "--test-reporter=spec", f"build-test/test/{folder}/"],
        cwd=sdk, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PICA_PYTHON": sys.executable},
    )


def test_unit_tests_pass(sdk_built: Path) -> None:
    done = node_test(sdk_built, "unit")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout or "fail 0" in done.stdout


@pytest.mark.slow
def test_integration_tests_pass_against_real_servers(sdk_built: Path) -> None:
    done = node_test(sdk_built, "integration")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "pass 3" in done.stdout, done.stdout[-4000:]
