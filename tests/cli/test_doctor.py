"""``pica doctor`` on the machine as it is: a line per check, what to fix for each warning or failure, exit status 1
when anything failed. Real ports, a real running node, real PostgreSQL and an unreachable Redis."""

from __future__ import annotations

import asyncio
import datetime
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

import trustme

from tests.cli.conftest import pica
from tests.conftest import ServerProcess, start_server_process
from tests.store.conftest import PG_DSN


def lines(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Each finding by its subject: ``level  subject: found (fix: ...)`` → {subject: "level found (fix...)"}."""
    found = {}
    for line in done.stdout.splitlines():
        level, rest = line.split(maxsplit=1)
        subject, _, what = rest.partition(": ")
        found[subject] = f"{level} {what}"
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_machine_ready_for_a_first_node(tmp_path: Path) -> None:
    http, tcp = free_port(), free_port()
    done = pica("doctor", data_dir=tmp_path / "data", env={"PICA_PORT": str(http), "PICA_TCP_PORT": str(tcp)})
    assert done.returncode == 0, done.stdout
    found = lines(done)
    assert found["configuration"] == "ok loads"
    assert found[f"HTTP port 127.0.0.1:{http}"] == "ok free"
    assert found[f"TCP port 127.0.0.1:{tcp}"] == "ok free"
    assert found[f"data directory {tmp_path / 'data'}"].startswith("ok writable, ")
    assert found["store"].startswith(f"ok no database yet at {tmp_path / 'data' / 'pica.db'}")


async def test_a_running_node_a_port_taken_by_another_program_and_a_low_file_limit(
    tmp_path: Path, server_process_factory: list[ServerProcess]
) -> None:
    server = await asyncio.to_thread(start_server_process, tmp_path / "data")
    server_process_factory.append(server)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    env = {"PICA_PORT": str(server.http_port), "PICA_TCP_PORT": str(taken)}

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    try:
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "pica", "doctor", "--data-dir", str(server.data_dir)],
            capture_output=True, text=True, timeout=60, env={**os.environ, **env}, preexec_fn=low_limit)
    finally:
        squatter.close()
    assert done.returncode == 1, done.stdout
    found = lines(done)
    assert found[f"HTTP port 127.0.0.1:{server.http_port}"] == "ok a Pica node answers there (running)"
    assert found[f"TCP port 127.0.0.1:{taken}"] == ("FAIL in use by another program (fix: stop it, or choose another "
                                                    "port (--port / --tcp-port))")
    assert found["open files"].startswith("warn soft limit 1024 ")
    assert f"held by pica serve pid {server.proc.pid}" in found["store"] and "up to date" in found["store"]


def test_postgresql_reachable_redis_not_and_a_certificate_about_to_expire(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", not_after=datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    env = {"PICA_STORE": PG_DSN, "PICA_CLUSTER": "redis://127.0.0.1:1/0", "PICA_AUTH_TOKEN_SECRET": "s" * 40,
           "PICA_PORT": "0", "PICA_TCP_PORT": "0",
           "PICA_TLS_CERT": str(tmp_path / "cert.pem"), "PICA_TLS_KEY": str(tmp_path / "key.pem")}
    done = pica("doctor", data_dir=tmp_path / "data", env=env)
    assert done.returncode == 1, done.stdout
    found = lines(done)
    assert found["store"].startswith("ok PostgreSQL ")
    assert found["cluster bus (Redis)"].startswith("FAIL unreachable: ")
    assert found["cluster bus (Redis)"].endswith("(fix: start Redis, or correct --cluster)")
    assert found["TLS"].startswith("warn the certificate expires in ")
