"""pytest-timeout that also ends a test waiting on the event loop (the suite runs on uvloop: tests/conftest.py).

pytest-timeout's default method arms SIGALRM and raises ``Failed`` from the handler. Under uvloop that exception
goes nowhere: uvloop runs Python's signal handlers inside one of its own callbacks and hands whatever a callback
raises to the loop's exception handler, which logs it, and the test went on waiting (a WebRTC test hung a whole CI
run past its 120 s). So, when the alarm goes off while a loop runs, the handler cancels the test's coroutine
instead: the test fails with ``CancelledError: Timeout (>N s)`` whose traceback shows the await it was stuck in,
and its ``async with`` / ``finally`` clean-ups and its fixtures' teardown still run (a coturn, a server process).
Plain code still gets pytest-timeout's own ``Failed``.

A test that has not ended ``GRACE`` seconds after its timeout (a clean-up that hangs too, a main thread stuck in C)
gets pytest-timeout's thread method: every thread's stack on the terminal, then ``os._exit(1)``; under
pytest-xdist the controller reports the worker's crash and starts another worker.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import threading
from types import FrameType

import pytest
import pytest_timeout

GRACE = 20.0
"""Seconds a timed-out test has to clean up before its process is ended."""


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: pytest_timeout.Settings) -> bool | None:
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None  # pytest-timeout's thread method, which needs no help
    backstop = threading.Timer(settings.timeout + GRACE, pytest_timeout.timeout_timer, (item, settings))
    backstop.name = f"timeout backstop {item.nodeid}"
    backstop.daemon = True

    def expired(signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            pytest_timeout.timeout_sigalrm(item, settings)  # raises Failed into the test's own code
        elif settings.disable_debugger_detection or not pytest_timeout.is_debugging():
            cancel_test(loop, item, f"Timeout (>{settings.timeout}s) from pytest-timeout (tests/timeouts.py)")

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        backstop.cancel()

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # where pytest-timeout's cancel hook looks
    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    backstop.start()
    return True


def cancel_test(loop: asyncio.AbstractEventLoop, item: pytest.Item, message: str) -> None:
    """Cancel the task running the test's coroutine; in an async fixture's set-up or teardown (no such task),
    every task of the loop, which is what asyncio.Runner does to them at its close anyway."""
    function = getattr(item, "obj", None)
    test_code = getattr(inspect.unwrap(function), "__code__", None) if callable(function) else None
    tasks = asyncio.all_tasks(loop)
    mine = [task for task in tasks if getattr(task.get_coro(), "cr_code", None) is test_code]
    for task in mine or tasks:
        task.cancel(message)
