"""``pica serve`` refuses to start with one line that says what to fix, and exit status 2, never a traceback: a port in
use, a data directory it cannot write, a certificate that does not load, a bad configuration value."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.cli.conftest import pica


def refused(*args: str, env: dict[str, str] | None = None) -> str:
    done = pica("serve", *args, env=env)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def taken_port() -> object:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_a_port_in_use(tmp_path: Path, taken_port: int) -> None:
    line = refused("--port", str(taken_port), "--tcp-port", "0", "--data-dir", str(tmp_path / "d"))
    assert line == (f"pica: cannot start: HTTP port 127.0.0.1:{taken_port}: Address already in use (another pica "
                    "serve, or another program, listens there: choose another port)")
    line = refused("--port", "0", "--tcp-port", str(taken_port), "--data-dir", str(tmp_path / "d"))
    assert line.startswith(f"pica: cannot start: TCP port 127.0.0.1:{taken_port}: Address already in use")


def test_a_data_directory_that_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    line = refused("--port", "0", "--tcp-port", "0", "--data-dir", str(blocker / "data"))
    assert line.startswith(f"pica: cannot start: data directory {blocker / 'data'}: ")


def test_certificates_that_do_not_load(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    line = refused("--port", "0", "--data-dir", str(tmp_path / "d"), "--tls-cert", missing, "--tls-key", missing)
    assert line == f"pica: cannot start: TLS certificate and key: No such file or directory: {missing}"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    line = refused("--port", "0", "--data-dir", str(tmp_path / "d"), "--tls-cert", str(garbage), "--tls-key",
                   str(garbage))
    assert line.startswith("pica: cannot start: TLS certificate and key: OpenSSL cannot load them")
    line = refused("--port", "0", "--data-dir", str(tmp_path / "d"), "--tls-cert", str(garbage))
    assert line == "pica: configuration error: tls.cert and tls.key: give both (or neither)"


def test_a_bad_configuration_value(tmp_path: Path) -> None:
    line = refused("--port", "0", "--data-dir", str(tmp_path / "d"), env={"PICA_LIMITS_IDLE_TIMEOUT": "soon"})
    assert line == "pica: configuration error: limits.idle_timeout: expected a number, got 'soon'"
