"""tests/timeouts.py, in a pytest run of its own: a test stuck on uvloop fails at its timeout with the await it was
stuck in, its clean-up runs, and the run goes on. Without it the stuck test waited for ever (uvloop swallowed
pytest-timeout's exception), which this test's deadline on the inner run would report."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CONFTEST = """
import uvloop

pytest_plugins = ["tests.timeouts"]


def pytest_asyncio_loop_factories(config, item):
    return {"uvloop": uvloop.new_event_loop}
"""

STUCK = """
import asyncio

import pytest


@pytest.mark.timeout(1)
async def test_stuck():
    try:
        await asyncio.Event().wait()
    finally:
        print("clean-up ran")


async def test_after():
    await asyncio.sleep(0)
"""


def test_a_test_stuck_on_uvloop_fails_at_its_timeout_and_cleans_up(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_stuck=STUCK)
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-s",
        "-o",
        "asyncio_mode=auto",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        timeout=60,
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*await asyncio.Event().wait()*", "*CancelledError: Timeout (>1.0s)*"])
    assert "clean-up ran" in result.stdout.str()
