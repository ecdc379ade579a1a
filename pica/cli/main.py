"""The ``pica`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pica import heap
from pica.cli import admin, bots, chat, doctor, jobs, systemd
from pica.config import Config, ConfigError, load_config
from pica.errors import PicaError, StartupError
from pica.logs import configure, redact_url

log = logging.getLogger("pica")

_SUPERVISOR_CHECK = 1.0
"""Seconds between a worker's checks that its supervisor is still its parent."""


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run a Pica node")
    p.add_argument("--config", help="TOML configuration file (env: PICA_CONFIG)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP + WebSocket port (default 8080; 0 = any free port)")
    p.add_argument("--tcp-port", type=int, help="framed TCP port (default 8081; 0 = any; -1 = off)")
    p.add_argument("--mqtt-port", type=int, help="MQTT 3.1.1 gateway port (default -1 = off; 0 = any)")
    p.add_argument("--xmpp-port", type=int, help="XMPP client gateway port, STARTTLS (default -1 = off; 0 = any)")
    p.add_argument("--xmpp-domain", help="XMPP domain: users are username@domain (default localhost)")
    p.add_argument("--data-dir", help="directory for the embedded SQLite store (default ./pica-data)")
    p.add_argument("--node-id", help="name of this node in logs and the cluster")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    p.add_argument("--log-format", choices=["text", "json"], help="log line format (default text)")
    p.add_argument("--synchronous", choices=["FULL", "NORMAL"], help="SQLite durability (default FULL)")
    p.add_argument("--ready-file", help="write 'http_port tcp_port' to this file once listening (for scripts)")
    _store_arguments(p)
    p.add_argument("--cluster", help="Redis URL of the cluster bus, e.g. redis://127.0.0.1:6379/0 (default: none)")
    p.add_argument("--workers", type=int, help="processes sharing the ports via SO_REUSEPORT (default 1; >1 needs "
                                               "--cluster)")
    p.add_argument("--advertise-host", help="host name GET /v1/gateway gives clients (default: --host)")
    p.add_argument("--tls-cert", help="PEM certificate chain: every listener speaks TLS (needs --tls-key; SIGHUP "
                                      "reloads both)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set by the --workers supervisor


def _store_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", help="sqlite:///path/file.db or postgresql://user@host:port/db (default: SQLite in "
                                   "--data-dir)")


def _migrate_parser(sub: Any) -> None:
    p = sub.add_parser("migrate", help="bring the store's schema up to date, then exit")
    p.add_argument("--config", help="TOML configuration file (env: PICA_CONFIG)")
    p.add_argument("--data-dir", help="directory of the embedded SQLite store (default ./pica-data)")
    _store_arguments(p)


def _config_from_args(args: argparse.Namespace) -> Config:
    return load_config(
        config_file=args.config,
        overrides={
            "host": args.host,
            "port": args.port,
            "tcp_port": args.tcp_port,
            "mqtt.port": args.mqtt_port,
            "xmpp.port": getattr(args, "xmpp_port", None),
            "xmpp.domain": getattr(args, "xmpp_domain", None),
            "data_dir": args.data_dir,
            "node_id": args.node_id,
            "log.level": args.log_level,
            "log.format": args.log_format,
            "sqlite.synchronous": args.synchronous,
            "store": args.store,
            "cluster": args.cluster,
            "workers": args.workers,
            "advertise_host": args.advertise_host,
            "tls.cert": args.tls_cert,
            "tls.key": args.tls_key,
        },
    )


async def _migrate(config: Config) -> int:
    from pica.store.factory import migrate_store
    from pica.store.schema import Migration

    applied: list[Migration] = []

    def report(step: Migration, seconds: float) -> None:
        applied.append(step)
        print(f"pica: applied migration {step.version:04d} {step.name} in {seconds * 1000:.0f} ms", file=sys.stderr,
              flush=True)

    version = await migrate_store(config, report)
    where = redact_url(config.store) or config.data_dir
    if applied:
        print(f"pica: store schema at version {version} ({where})", file=sys.stderr)
    else:
        print(f"pica: store schema at version {version}, no migration pending ({where})", file=sys.stderr)
    return 0


async def _serve(config: Config, ready_file: str | None, reuse_port: bool = False) -> None:
    from pica.app import PicaServer

    heap.tune(config.gc_threshold)
    server = PicaServer(config, reuse_port=reuse_port)
    await server.start()
    # Here and not in PicaServer, which tests run many of in one process (pica/heap.py says why).
    heap.freeze_startup()
    tcp = f"tcp {config.host}:{server.tcp_port}" if config.tcp_port >= 0 else "tcp off"
    if config.mqtt.port >= 0:
        tcp += f", mqtt {config.host}:{server.mqtt_port}"
    if config.xmpp.port >= 0:
        tcp += f", xmpp {config.host}:{server.xmpp_port} ({config.xmpp.domain})"
    store = config.store or f"sqlite in {config.data_dir}"
    cluster = f", cluster {redact_url(config.cluster)} as {server.node_id}" if config.cluster else ""
    scheme = "https" if config.tls.cert else "http"
    print(
        f"pica serving {scheme}://{config.host}:{server.http_port} (WebSocket /v1/ws, web chat at /), "
        f"{tcp}{' (TLS)' if config.tls.cert and config.tcp_port >= 0 else ''}, store {redact_url(store)}{cluster}",
        file=sys.stderr,
        flush=True,
    )
    if ready_file:
        await asyncio.to_thread(
            Path(ready_file).write_text, f"{server.http_port} {server.tcp_port}\n", encoding="utf-8"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def reload() -> None:
        systemd.notify("RELOADING=1")
        server.reload_tls()
        systemd.notify("READY=1")

    loop.add_signal_handler(signal.SIGHUP, reload)
    systemd.notify("READY=1", f"STATUS=serving on ports {server.http_port} and {server.tcp_port}",
                   f"MAINPID={os.getpid()}")
    interval = systemd.watchdog_interval()
    pinger = loop.create_task(systemd.watchdog(interval)) if interval else None
    orphan = loop.create_task(_watch_supervisor(stop)) if reuse_port else None
    await stop.wait()
    if orphan is not None:
        orphan.cancel()
    log.info("signal received, draining")
    systemd.notify("STOPPING=1", "STATUS=draining")
    await server.stop()
    if pinger is not None:
        pinger.cancel()


async def _watch_supervisor(stop: asyncio.Event) -> None:
    """A worker of ``pica serve --workers N`` drains and exits once its supervisor is gone (killed with -9, say):
    nothing would restart it, stop it, or (on the embedded store) keep its bus, and it would hold the ports and the
    database from the server started next. The kernel gives an orphan a new parent."""
    parent = os.getppid()
    while os.getppid() == parent:  # noqa: ASYNC110 - nothing signals a parent's death but a reparenting
        await asyncio.sleep(_SUPERVISOR_CHECK)
    log.error("the supervisor (pid %d) is gone; this worker drains and exits", parent)
    stop.set()


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pica", description="Pica instant-messaging server")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _migrate_parser(sub)
    chat.add_parser(sub)
    admin.add_parsers(sub)
    doctor.add_parser(sub)
    jobs.add_parsers(sub, admin.common_arguments())
    bots.add_parsers(sub, admin.common_arguments())
    args = parser.parse_args(argv)
    if args.command == "chat":
        return chat.run(args)
    if args.command in ("user", "group", "invite", "backup", "restore", "search"):
        return admin.run(args)
    if args.command in bots.COMMANDS:
        return bots.run(args)
    if args.command in jobs.COMMANDS:
        return jobs.run(args, _run)
    if args.command == "doctor":
        return doctor.run(args)
    if args.command == "migrate":
        try:
            config = load_config(config_file=args.config, overrides={"store": args.store, "data_dir": args.data_dir})
        except ConfigError as exc:
            print(f"pica: configuration error: {exc}", file=sys.stderr)
            return 2
        configure(config.log.level, config.log.format)
        try:
            return int(_run(_migrate(config)))
        except PicaError as exc:
            print(f"pica: migration failed: {exc}", file=sys.stderr)
            return 1
    if args.command == "serve":
        try:
            config = _config_from_args(args)
        except ConfigError as exc:
            print(f"pica: configuration error: {exc}", file=sys.stderr)
            return 2
        configure(config.log.level, config.log.format)
        if config.workers > 1 and not args.reuse_port:
            from pica.cli.workers import supervise

            return supervise(config, args)
        try:
            with contextlib.suppress(KeyboardInterrupt):
                _run(_serve(config, args.ready_file, args.reuse_port))
        except StartupError as exc:  # a port in use, a data directory that cannot be written, a bad certificate
            print(f"pica: cannot start: {exc}", file=sys.stderr)
            return 2
        except PicaError as exc:  # the store could not be opened (unreachable, or a schema this code refuses)
            print(f"pica: cannot start: {exc}", file=sys.stderr)
            return 1
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
