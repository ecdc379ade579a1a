"""``pica serve --workers N``: N node processes sharing the listening ports through SO_REUSEPORT.

The kernel spreads new connections over the workers; each worker is a full cluster node (its own event loop, store
connections and bus subscription, named ``<node-id>-w<i>``), so messages between users on different workers cross
the cluster bus exactly as between machines. This process starts, watches and stops them: a worker that dies
is started again (at most ``_MAX_RESTARTS`` per minute, then the whole group stops, since something is wrong that a
restart will not fix).

Without ``cluster`` (the embedded store) the workers share the SQLite file, and this process gives them what a
cluster's Redis and shared store give its nodes: it migrates the database once before any worker opens it, holds the
file's server lock for them all, makes the token secret they share, starts the one writer process that commits for
them all (:class:`~pica.store.sqlite_process.SharedWriter`: one writer, so no two fight over SQLite's lock, and their
messages share group commits) and keeps their bus (:mod:`pica.cluster.hub`, a thread here). It starts either again
should it die. Each worker is told the hub's socket as its ``cluster`` URL (``hub+unix://``) and the writer's as
``sqlite.writer_socket``, and is a cluster node in every other respect.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pica.app import bind_socket, token_secret
from pica.cli import systemd
from pica.cluster.hub import HubThread
from pica.config import HUB_SCHEME, Config
from pica.store.factory import migrate_store, sqlite_path
from pica.store.sqlite_files import server_lock
from pica.store.sqlite_process import SharedWriter

log = logging.getLogger(__name__)

_MAX_RESTARTS = 5
_START_TIMEOUT = 60.0
# serve flags handed on to every worker unchanged (ports, node id, workers and the ready file are set per worker)
_PASSED_ON = ("config", "host", "data_dir", "log_level", "log_format", "synchronous", "store", "cluster",
              "advertise_host", "tls_cert", "tls_key", "mqtt_port",
              "xmpp_port", "xmpp_domain")


@dataclass
class _Worker:
    index: int
    argv: list[str]
    ready_file: Path
    env: dict[str, str] = field(default_factory=dict)
    keep_fds: tuple[int, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.ready_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(self.argv, env={**systemd.child_environment(), **self.env},
                                     pass_fds=self.keep_fds)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class _Embedded:
    """What the workers on the embedded store share besides the file: the hub (their bus) and the writer."""

    hub: HubThread
    writer: SharedWriter

    def check(self) -> None:
        """Start again whichever died (the workers reconnect; a hub restart makes them resync their clients)."""
        if not self.hub.alive:
            log.error("the workers' hub stopped; starting it again (the workers reconnect and resync)")
            self.hub = HubThread(self.hub.path)
            self.hub.start()
        if not self.writer.alive():
            code = self.writer.proc.returncode if self.writer.proc is not None else None
            log.error("the shared SQLite writer exited; starting it again", extra={"exit_code": code})
            self.writer.start()


def _worker_argv(args: argparse.Namespace, port: int, tcp_port: int, node_id: str, ready: Path,
                 hub: Path | None) -> list[str]:
    argv = [sys.executable, "-m", "pica", "serve"]
    for name in _PASSED_ON:
        value = getattr(args, name, None)
        if value is not None:
            argv += ["--" + name.replace("_", "-"), str(value)]
    if hub is not None:
        argv += ["--cluster", HUB_SCHEME + str(hub)]
    return [*argv, "--port", str(port), "--tcp-port", str(tcp_port), "--node-id", node_id, "--workers", "1",
            "--reuse-port", "--ready-file", str(ready)]


def _reserve(host: str, port: int) -> tuple[int, socket.socket | None]:
    """A fixed port is used as is; port 0 is resolved once here, so that every worker binds the same one."""
    if port != 0:
        return port, None
    sock = bind_socket(host, 0, reuse_port=True)  # bound, never listening: it receives no connections
    return sock.getsockname()[1], sock


def supervise(config: Config, args: argparse.Namespace) -> int:
    # The workers' ready files and the hub's socket: gone with the supervisor.
    folder = Path(tempfile.mkdtemp(prefix="pica-workers-"))
    try:
        if config.cluster:
            return _supervise(config, args, folder, None)
        return _supervise_embedded(config, args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _supervise_embedded(config: Config, args: argparse.Namespace, folder: Path) -> int:
    database = sqlite_path(config)
    database.parent.mkdir(parents=True, exist_ok=True)
    # The workers and the writer inherit the lock: should this process die, they keep the file from a second server
    # until they have exited too (a worker whose supervisor is gone drains and exits: pica.cli.main).
    with server_lock(database) as lock:
        token_secret(config)  # made once here: N workers would otherwise race to make N
        asyncio.run(migrate_store(config))  # once, before the writer and the workers open the file
        writer = SharedWriter(database, config.sqlite, folder / "writer.sock", keep_fds=(lock,))
        shared = _Embedded(HubThread(folder / "hub.sock"), writer)
        shared.hub.start()
        try:
            shared.writer.start()
            return _supervise(config, args, folder, shared, (lock,))
        finally:
            shared.writer.stop()  # after the workers: it commits what they sent last
            shared.hub.stop()


def _supervise(config: Config, args: argparse.Namespace, folder: Path, shared: _Embedded | None,
               keep_fds: tuple[int, ...] = ()) -> int:
    http_port, http_hold = _reserve(config.host, config.port)
    tcp_port, tcp_hold = (config.tcp_port, None) if config.tcp_port < 0 else _reserve(config.host, config.tcp_port)
    base = config.node_id or f"{socket.gethostname()}-{os.getpid()}"
    ready = [folder / f"ready-{i}" for i in range(config.workers)]
    hub = shared.hub.path if shared is not None else None
    env = {"PICA_SQLITE_WRITER_SOCKET": str(shared.writer.address)} if shared is not None else {}
    workers = [
        _Worker(i, _worker_argv(args, http_port, tcp_port, f"{base}-w{i}", ready[i], hub), ready[i], env, keep_fds)
        for i in range(config.workers)
    ]
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    def reload(signum: int, _frame: object) -> None:  # certificate renewal: every worker reloads its TLS files
        for worker in workers:
            if worker.alive() and worker.proc is not None:
                worker.proc.send_signal(signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + _START_TIMEOUT
    while not all(w.ready_file.exists() and w.ready_file.read_text().strip() for w in workers):
        if stopping or time.monotonic() > deadline or not all(w.alive() for w in workers):
            log.error("workers did not all start; stopping")
            _stop_all(workers, config.limits.shutdown_grace)
            return 1
        time.sleep(0.05)
    for held in (http_hold, tcp_hold):
        if held is not None:
            held.close()
    if args.ready_file:
        Path(args.ready_file).write_text(f"{http_port} {tcp_port}\n", encoding="utf-8")
    scheme = "https" if config.tls.cert else "http"
    print(f"pica: {len(workers)} workers serving {scheme}://{config.host}:{http_port}, tcp {tcp_port}", file=sys.stderr,
          flush=True)
    systemd.notify("READY=1", f"STATUS={len(workers)} workers serving", f"MAINPID={os.getpid()}")
    ping_every = systemd.watchdog_interval()
    pinged = 0.0
    status = 0
    while not stopping:
        time.sleep(0.2)
        if shared is not None:
            shared.check()
        if ping_every is not None and time.monotonic() - pinged >= ping_every:
            systemd.notify("WATCHDOG=1")  # the supervisor's loop turns; each worker's health is its restart
            pinged = time.monotonic()
        for worker in workers:
            if stopping or worker.alive():
                continue
            code = worker.proc.returncode if worker.proc is not None else None
            now = time.monotonic()
            worker.restarts = [t for t in worker.restarts if now - t < 60] + [now]
            if len(worker.restarts) > _MAX_RESTARTS:
                log.error("worker keeps dying; stopping all", extra={"worker": worker.index, "exit_code": code})
                stopping, status = True, 1
                break
            log.warning("worker exited; starting it again", extra={"worker": worker.index, "exit_code": code})
            worker.start()
    systemd.notify("STOPPING=1")
    _stop_all(workers, config.limits.shutdown_grace)
    return status


def _stop_all(workers: list[_Worker], grace: float) -> None:
    """SIGTERM (each worker drains), then SIGKILL whatever is still running after the grace period."""
    for worker in workers:
        if worker.alive():
            assert worker.proc is not None
            worker.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace + 10
    for worker in workers:
        if worker.proc is None:
            continue
        try:
            worker.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            worker.proc.wait()
