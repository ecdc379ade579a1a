"""Which worker of a ``pica serve --workers N`` holds a connection, and connecting until one lands on another."""

from __future__ import annotations

import subprocess
from typing import Protocol

import psutil

from pica.client import Login, PicaConnection

MAX_TRIES = 40


class Supervisor(Protocol):
    @property
    def proc(self) -> subprocess.Popen[bytes]: ...

    @property
    def tcp_port(self) -> int: ...

    @property
    def url(self) -> str: ...


def workers_of(supervisor: Supervisor) -> list[psutil.Process]:
    """The supervisor's ``pica serve`` children (on the embedded store it also runs the shared writer)."""
    return [p for p in psutil.Process(supervisor.proc.pid).children() if _serves(p)]


def _serves(process: psutil.Process) -> bool:
    try:
        return process.is_running() and "serve" in process.cmdline()
    except psutil.Error:  # gone meanwhile
        return False


def own_ports_to(port: int) -> set[int]:
    """Local ports of this test process's TCP connections to 127.0.0.1:port."""
    return {c.laddr.port for c in psutil.Process().net_connections("tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED}


def worker_holding(supervisor: Supervisor, local_port: int) -> int | None:
    for worker in workers_of(supervisor):
        for c in worker.net_connections("tcp"):
            if c.raddr and c.raddr.port == local_port and c.laddr.port == supervisor.tcp_port:
                return int(worker.pid)
    return None


async def connect_on_worker(supervisor: Supervisor, who: Login, not_on: int | None) -> tuple[PicaConnection, int]:
    """Connect until the kernel hands the connection to a worker other than ``not_on`` (bounded)."""
    for _ in range(MAX_TRIES):
        before = own_ports_to(supervisor.tcp_port)
        conn = await PicaConnection.open(supervisor.url, who.token, transport="tcp", tcp_port=supervisor.tcp_port)
        (port,) = own_ports_to(supervisor.tcp_port) - before
        pid = worker_holding(supervisor, port)
        if pid is not None and pid != not_on:
            return conn, pid
        await conn.close()
    raise AssertionError(f"no connection landed on another worker in {MAX_TRIES} tries")
