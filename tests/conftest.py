"""Shared fixtures: a real Pica node on 127.0.0.1 with free ports and its own SQLite file per test.

Every server the suite starts hashes passwords cheaply (see ``CHEAP_HASHING_ENV``), except in the tests about hashing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from pica.api.checks import ResponseCheck
from pica.app import PicaServer
from pica.client import Login, PicaConnection, PicaHttp, PicaHttpError
from pica.config import Config, SqliteConfig, load_config
from pica.core.ports import SystemClock
from pica.store.sqlite import SqliteStore

pytest_plugins = ["pytester", "tests.timeouts"]  # tests.timeouts: pytest-timeout that also ends a test on uvloop

PASSWORD = "correct horse battery"

CHEAP_HASHING_ENV = {
    "PICA_AUTH_ARGON2_TIME_COST": "1",
    "PICA_AUTH_ARGON2_MEMORY_KIB": "8",
    "PICA_AUTH_ARGON2_PARALLELISM": "1",
}
"""Argon2id at its floor (1 pass over 8 KiB: about 0.03 ms a hash instead of 25 ms with the production parameters,
which made registering users most of the suite's time). Put into this process's environment at start, so that every
``pica`` subprocess (servers, admin commands, benchmark scripts) inherits it; in-process servers get ``TEST_AUTH``.
A value already in the environment wins: ``PICA_AUTH_ARGON2_TIME_COST=2 PICA_AUTH_ARGON2_MEMORY_KIB=19456
scripts/test`` runs the suite with production hashing. The tests about hashing (tests/core/test_passwords.py) set the
production parameters themselves."""
for _key, _value in CHEAP_HASHING_ENV.items():
    os.environ.setdefault(_key, _value)
TEST_AUTH = load_config(env={key: os.environ[key] for key in CHEAP_HASHING_ENV}).auth

TEST_RATES_ENV = {
    "PICA_RATES_REGISTER_PER_ADDRESS": "100000/min",
    "PICA_RATES_LOGIN_PER_ADDRESS": "100000/min",
    "PICA_RATES_HTTP_PER_ADDRESS": "100000/min",
    "PICA_RATES_SENDS_PER_USER": "100000/s",
    "PICA_RATES_REQUESTS_PER_CONNECTION": "100000/s",
}
"""Rate limits the suite raises: every test's users register and log in from 127.0.0.1 within a second (the
defaults allow 10 registrations an hour per address), and many tests send bursts on purpose (ordering under load,
backpressure, a kill -9 in the middle of a burst). Each limit is tested on its own in tests/api/test_rate_limits.py,
and an honest client's session at the defaults too. The others (presence, failed logins per account) stay at their
defaults. Inherited by subprocesses like ``CHEAP_HASHING_ENV``."""
for _key, _value in TEST_RATES_ENV.items():
    os.environ.setdefault(_key, _value)
TEST_RATES = load_config(env={key: os.environ[key] for key in TEST_RATES_ENV}).rates

TEST_LIMITS_ENV = {
    "PICA_LIMITS_MAX_CONNECTIONS_PER_ADDRESS": "100000",
}
"""Limits the suite raises like ``TEST_RATES_ENV``: every test connects from 127.0.0.1, and the load, crash and
slow-loris stories hold hundreds of sockets at once (the default allows 256 per address). The cap itself is tested
at its default in tests/gateway/test_connection_limits.py. Inherited by subprocesses."""
for _key, _value in TEST_LIMITS_ENV.items():
    os.environ.setdefault(_key, _value)
TEST_LIMITS = load_config(env={key: os.environ[key] for key in TEST_LIMITS_ENV}).limits

# Hypothesis times each example against its deadline (200 ms) on a machine shared with the rest of the suite (two
# xdist workers on two cores, cluster processes beside them): there a deadline measures the neighbours, not the code.
settings.register_profile("pica", deadline=None)
settings.load_profile("pica")


@dataclass
class Node:
    server: PicaServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    @property
    def tcp_port(self) -> int:
        return self.server.tcp_port


def make_config(tmp_path: Path, **limits: object) -> Config:
    return Config(
        port=0,
        tcp_port=0,
        data_dir=tmp_path / "data",
        limits=dataclasses.replace(TEST_LIMITS, **limits),  # type: ignore[arg-type]
        auth=TEST_AUTH,
        rates=TEST_RATES,
    )


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running(make_config(tmp_path)) as started_node:
        yield started_node


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An embedded store on its own file, opened, with the writer on a thread (no child process), closed after."""
    store = SqliteStore(tmp_path / "pica.db", SqliteConfig(writer="thread"))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def running(config: Config, clock: SystemClock | None = None) -> AsyncIterator[Node]:
    """A node of this configuration, started, and stopped at the end (optionally with another clock: the one port a
    test may swap). Every HTTP answer it gives is checked against its route's declaration (pica/api/checks.py): an
    answer that is not what the OpenAPI document says is a 500 during the test and fails it at the end."""
    server = PicaServer(config)
    if clock is not None:
        server.clock = clock
    server.response_check = check = ResponseCheck()
    await server.start()
    try:
        yield Node(server)
    finally:
        await server.stop()
    assert not check.mismatches, "answers that are not what their routes declare:\n" + "\n".join(check.mismatches)


@contextlib.asynccontextmanager
async def started(tmp_path: Path, clock: SystemClock | None = None, **limits: object) -> AsyncIterator[Node]:
    """A node with some limits changed (and optionally another clock)."""
    async with running(make_config(tmp_path, **limits), clock) as node:
        yield node


async def api(node: Node, who: Login, method: str, path: str, **kwargs: Any) -> Any:
    async with PicaHttp(node.url, token=who.token) as http:
        return await http.request(method, path, **kwargs)


async def api_error(node: Node, who: Login, method: str, path: str, **kwargs: Any) -> tuple[int, str]:
    """(status, code) of a request that must fail."""
    with pytest.raises(PicaHttpError) as failed:
        await api(node, who, method, path, **kwargs)
    return failed.value.status, failed.value.code


async def uploaded(node: Node, who: Login, data: bytes, filename: str) -> str:
    """The id of a file ``who`` uploads (``POST /v1/files``), for a message to reference."""
    async with PicaHttp(node.url, token=who.token) as http:
        return str((await http.upload(data, filename=filename))["file_id"])


async def new_user(url: str, prefix: str = "u") -> Login:
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    async with PicaHttp(url) as http:
        await http.register(name, PASSWORD)
        return await http.login(name, PASSWORD)


async def connect(node_url: str, login: Login, transport: str = "ws", tcp_port: int | None = None,
                  device: str | None = None) -> PicaConnection:
    return await PicaConnection.open(node_url, login.token, transport=transport,  # type: ignore[arg-type]
                                     tcp_port=tcp_port, device=device)


# ---------------------------------------------------------------------------------------------- server processes


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    http_port: int
    tcp_port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def start_server_process(data_dir: Path, http_port: int = 0, tcp_port: int = 0,
                         extra: list[str] | None = None) -> ServerProcess:
    ready = data_dir.parent / f"ready-{uuid.uuid4().hex}"
    with open(data_dir.parent / "server.log", "ab") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "pica", "serve", "--port", str(http_port), "--tcp-port", str(tcp_port),
             "--data-dir", str(data_dir), "--ready-file", str(ready), *(extra or [])],
            stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if ready.exists() and ready.read_text().strip():
            http, tcp = map(int, ready.read_text().split())
            return ServerProcess(proc, http, tcp, data_dir)
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {data_dir.parent / 'server.log'}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start within 30 s")


@pytest.fixture
def server_process_factory(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for sp in started:
        if sp.proc.poll() is None:
            sp.proc.kill()
            sp.proc.wait(10)


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outside pytest-timeout's wrapper: waiting is not the test's time
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """One ``slow`` test at a time. ``scripts/test`` runs the suite on 2 pytest-xdist workers; a worker that reaches a
    test marked ``slow`` (load, kill -9, fault stories, benchmark smoke runs) while the other worker runs one waits for
    it, on a lock file in the run's temporary directory, so that two such tests never share the machine's 2 cores.
    Every other test runs beside anything. (pytest-xdist's ``xdist_group`` would be the usual tool, but with pytest
    9.2 ``--dist loadgroup`` silently stops grouping: pytest-xdist issue #1386.)"""
    workerinput: dict[str, Any] | None = getattr(item.config, "workerinput", None)
    if workerinput is None or item.get_closest_marker("slow") is None:
        return (yield)
    basetemp = item.config.option.basetemp  # <the run's temporary directory>/popen-gwN on an xdist worker
    where = Path(basetemp).parent if basetemp else Path(tempfile.gettempdir())
    with open(where / f"slow-tests-{workerinput['testrunuid']}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        return (yield)




def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], object]]:
    """Run the tests on uvloop, the loop `pica serve` uses in production."""
    import uvloop

    return {"uvloop": uvloop.new_event_loop}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    """Say loudly what was skipped and why; under CI=true a skip is a failure."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    terminalreporter.section("SKIPPED TESTS", sep="!", red=True, bold=True)
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        terminalreporter.write_line(f"SKIPPED {report.nodeid}: {reason}", red=True, bold=True)
    if os.environ.get("CI", "").lower() == "true":
        terminalreporter.write_line("CI=true: skipped tests count as failures", red=True, bold=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and os.environ.get("CI", "").lower() == "true" and exitstatus == 0:
        session.exitstatus = 1
