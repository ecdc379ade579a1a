"""Fixtures for the command-line tests: a real server process, terminal chats in pseudo-terminals (pexpect), and
the admin commands run as the user runs them (``python -m pica ...``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import pexpect
import pytest

from pica.client import PicaHttp
from tests.conftest import PASSWORD, ServerProcess, start_server_process

TIMEOUT = 20
"""Seconds an expected line may take (a reconnection after a restart backs off up to 5 s)."""

Chat = pexpect.spawn


def pica(*args: str, data_dir: Path | None = None, stdin: str | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pica", *args]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    return subprocess.run(command, input=stdin if stdin is not None else "", capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def register(url: str, *names: str) -> dict[str, int]:
    async def go() -> dict[str, int]:
        async with PicaHttp(url) as http:
            return {name: await http.register(name, PASSWORD) for name in names}

    return asyncio.run(go())


@pytest.fixture
def server(tmp_path: Path, server_process_factory: list[ServerProcess]) -> ServerProcess:
    sp = start_server_process(tmp_path / "data")
    server_process_factory.append(sp)
    return sp


@pytest.fixture
def restart(server_process_factory: list[ServerProcess]) -> Callable[[ServerProcess], ServerProcess]:
    """kill -9 the server and start it again on the same ports and data."""

    def go(sp: ServerProcess) -> ServerProcess:
        sp.kill9()
        again = start_server_process(sp.data_dir, sp.http_port, sp.tcp_port)
        server_process_factory.append(again)
        return again

    return go


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[Callable[..., Chat]]:
    """``chat(url, username, *extra_args)``: a running ``pica chat`` in a pseudo-terminal, logged in and ready."""
    spawned: list[Chat] = []
    logs: list[TextIO] = []

    def start(url: str, username: str, *extra: str, password: str = PASSWORD, prompted: bool = False,
              ready: bool = True) -> Chat:
        env = {k: v for k, v in os.environ.items() if k != "PICA_PASSWORD"}
        if not prompted:
            env["PICA_PASSWORD"] = password
        child = pexpect.spawn(sys.executable, ["-m", "pica", "chat", "--url", url, "--username", username, *extra],
                              env=env, encoding="utf-8", timeout=TIMEOUT, dimensions=(50, 200))
        log = open(tmp_path / f"chat-{username}-{len(spawned)}.log", "w")  # noqa: SIM115
        logs.append(log)
        child.logfile_read = log
        spawned.append(child)
        if prompted:
            child.expect_exact(f"password for {username}: ")
            child.sendline(password)
        if ready:
            child.expect_exact(f"as {username} (#")
        return child

    yield start
    for child in spawned:
        if child.isalive():
            child.terminate(force=True)
    for log in logs:
        log.close()
