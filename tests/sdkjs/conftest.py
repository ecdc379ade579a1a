"""The JS SDK's own tests (sdk/js, Node's test runner) run from pytest, so that scripts/test runs them too.

Node is needed; without it the tests are skipped loudly (and fail under CI=true, tests/conftest.py). The SDK's
development dependencies (TypeScript, esbuild) come from sdk/js/package-lock.json: `.ci/run` installs them with
`npm ci`; a checkout without sdk/js/node_modules gets the same `npm ci` here, once, under a lock shared by the
pytest-xdist workers. The TypeScript is compiled once per run into sdk/js/build-test, under the same lock."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SDK = Path(__file__).resolve().parents[2] / "sdk" / "js"
NODE = shutil.which("node")
NPM = shutil.which("npm")


def node_args() -> list[str]:
    """`node`, with the flag that gives Node 20 and 21 a global WebSocket (Node >= 22 has one)."""
    assert NODE is not None
    has_websocket = subprocess.run([NODE, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"],
                                   check=False).returncode == 0
    return [NODE] if has_websocket else [NODE, "--experimental-websocket"]


def _run(args: list[str]) -> None:
    done = subprocess.run(args, cwd=SDK, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="session")
def sdk_built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """sdk/js with its dependencies installed, its sources and tests compiled (build-test/) and built (dist/)."""
    if NODE is None or NPM is None:
        pytest.skip("node and npm are not installed: the JS SDK's tests cannot run")
    lock_path = tmp_path_factory.getbasetemp().parent / "sdkjs-build.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (SDK / "node_modules" / ".package-lock.json").exists():
            _run([NPM, "ci", "--no-audit", "--no-fund"])
        stamp = tmp_path_factory.getbasetemp().parent / "sdkjs-built"
        if not stamp.exists():
            _run([NPM, "run", "--silent", "build:test"])
            _run([NPM, "run", "--silent", "build:dist"])  # dist/: what `import "@pica/client"` loads (docs examples)
            stamp.touch()
    yield SDK
