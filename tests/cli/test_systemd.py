"""Running under systemd: the node tells a ``Type=notify`` unit when it is ready, pings the watchdog from its event
loop, says when it reloads and when it stops (sd_notify(3), over a real datagram socket); the unit files shipped in
deploy/systemd pass ``systemd-analyze verify``."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, start_server_process

REPO = Path(__file__).resolve().parents[2]


def test_the_unit_files_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("SYSTEMD UNIT CHECK NOT RUN: systemd-analyze is missing (apt-get install systemd)")
    pica = Path(sys.executable).with_name("pica")  # ExecStart must name an executable that exists here
    units = []
    for name, as_name in (("pica.service", "pica.service"), ("pica@.service", "pica@n1.service")):
        text = (REPO / "deploy" / "systemd" / name).read_text().replace("/opt/pica/.venv/bin/pica", str(pica))
        (tmp_path / as_name).write_text(text)
        units.append(str(tmp_path / as_name))
    done = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr


async def test_ready_watchdog_reload_and_stopping_are_told_to_systemd(
    tmp_path: Path, server_process_factory: list[ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    address = str(tmp_path / "notify.sock")
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(address)
    systemd.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 0.2 s
    loop = asyncio.get_running_loop()

    async def told(within: float = 10.0) -> list[str]:
        async with asyncio.timeout(within):
            return (await loop.sock_recv(systemd, 4096)).decode().split("\n")

    try:
        server = await asyncio.to_thread(start_server_process, tmp_path / "data")
        server_process_factory.append(server)
        ready = await told()
        assert ready[0] == "READY=1" and f"MAINPID={server.proc.pid}" in ready, ready
        assert ready[1] == f"STATUS=serving on ports {server.http_port} and {server.tcp_port}"
        assert await told() == ["WATCHDOG=1"]
        assert await told(1.0) == ["WATCHDOG=1"]  # and again, a watchdog period later

        server.proc.send_signal(signal.SIGHUP)
        messages: list[list[str]] = []
        while ["READY=1"] not in messages:
            messages.append(await told())
        assert ["RELOADING=1"] in messages

        server.proc.send_signal(signal.SIGTERM)
        while (message := await told()) == ["WATCHDOG=1"]:
            pass
        assert message == ["STOPPING=1", "STATUS=draining"]
        assert server.proc.wait(30) == 0
    finally:
        systemd.close()
