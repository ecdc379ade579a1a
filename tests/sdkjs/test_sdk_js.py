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


def test_the_page_bundle_is_what_the_sources_make(sdk_built: Path, tmp_path: Path) -> None:
    """pica/web/static/pica-client.js is committed (no build step to run a server): it must be the current SDK."""
    fresh = tmp_path / "pica-client.js"
    done = subprocess.run([*node_args(), "scripts/bundle.mjs", str(fresh)], cwd=sdk_built, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    committed = sdk_built.parents[1] / "pica" / "web" / "static" / "pica-client.js"
    assert committed.read_text() == fresh.read_text(), "out of date: run `npm run bundle` in sdk/js and commit"
