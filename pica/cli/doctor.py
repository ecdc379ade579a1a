"""``pica doctor``: look at what a node needs, change nothing, and say what to fix.

Each check prints one line, ``ok``, ``warn`` or ``FAIL``, its subject and what was found, and for the last two what
to do. The exit status is 1 when anything failed, else 0. It reads the same configuration as ``pica serve`` (flags
``--config``, ``--data-dir``, ``--store``), so it checks the node as it would start.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import resource
import shutil
import socket
import ssl
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from pica.config import Config, ConfigError, load_config
from pica.errors import PicaError
from pica.store import sqlite_files
from pica.store.factory import is_postgres, sqlite_path
from pica.store.schema import bundled

MIN_OPEN_FILES: Final = 4096
"""Below this soft limit of open files a node holds only a few thousand clients (a descriptor each)."""
MIN_FREE_BYTES: Final = 1 << 30
"""Free space under which the data directory's disk is reported (SQLite needs room for its WAL and checkpoints)."""
MAX_CLOCK_SKEW_MS: Final = 2_000
"""A node's clock this far from PostgreSQL's or Redis's is reported: revocations and presence compare timestamps."""
CERT_WARN_DAYS: Final = 21

Level = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    subject: str
    found: str
    fix: str = ""

    def line(self) -> str:
        tail = f" (fix: {self.fix})" if self.fix else ""
        return f"{self.level:<4}  {self.subject}: {self.found}{tail}"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check what a node needs (config, ports, limits, disk, store, Redis, clock, "
                                      "TLS) and say what to fix")
    p.add_argument("--config", help="TOML configuration file (env: PICA_CONFIG), as for 'pica serve'")
    p.add_argument("--data-dir", help="the node's data directory (default ./pica-data)")
    p.add_argument("--store", help="the store's URL, as for 'pica serve'")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(config_file=args.config, overrides={"data_dir": args.data_dir, "store": args.store})
    except ConfigError as exc:
        print(Finding("FAIL", "configuration", str(exc), "correct the key named").line())
        return 1
    findings = [Finding("ok", "configuration", "loads")]
    for check in CHECKS:
        findings += check(config)
    findings += asyncio.run(_remote(config))
    for finding in findings:
        print(finding.line())
    return 1 if any(f.level == "FAIL" for f in findings) else 0


def _python(config: Config) -> list[Finding]:
    version = ".".join(map(str, sys.version_info[:3]))
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return [Finding("warn", "python", f"{version} without uvloop", "pip install uvloop (a dependency of pica)")]
    return [Finding("ok", "python", f"{version} with uvloop")]


def _open_files(config: Config) -> list[Finding]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < MIN_OPEN_FILES:
        return [Finding("warn", "open files", f"soft limit {soft} (hard {hard}): a node holds one per client",
                        f"raise it to at least {MIN_OPEN_FILES}: ulimit -n, or LimitNOFILE= in the systemd unit")]
    return [Finding("ok", "open files", f"soft limit {soft}")]


def _ports(config: Config) -> list[Finding]:
    ports = [("HTTP port", config.port)] + ([("TCP port", config.tcp_port)] if config.tcp_port >= 0 else [])
    findings = []
    for name, port in ports:
        subject = f"{name} {config.host}:{port}"
        if port == 0:
            findings.append(Finding("ok", subject, "any free port is taken at start"))
            continue
        sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((config.host, port))
            findings.append(Finding("ok", subject, "free"))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                if name == "HTTP port" and _pica_answers(config, port):
                    findings.append(Finding("ok", subject, "a Pica node answers there (running)"))
                else:
                    findings.append(Finding("FAIL", subject, "in use by another program",
                                            "stop it, or choose another port (--port / --tcp-port)"))
            elif exc.errno == errno.EACCES:
                findings.append(Finding("FAIL", subject, "permission denied",
                                        "use a port above 1023, or grant CAP_NET_BIND_SERVICE"))
            else:
                findings.append(Finding("FAIL", subject, exc.strerror or str(exc), "check host"))
        finally:
            sock.close()
    return findings


def _pica_answers(config: Config, port: int) -> bool:
    scheme = "https" if config.tls.cert else "http"
    context = ssl._create_unverified_context() if config.tls.cert else None  # only asking "is it Pica?"
    try:
        with urllib.request.urlopen(f"{scheme}://{config.host}:{port}/healthz", timeout=2, context=context) as resp:
            return b'"status"' in resp.read(200)
    except (OSError, ValueError):
        return False


def _data_dir(config: Config) -> list[Finding]:
    findings = []
    directory = Path(config.data_dir)
    probe_dir = directory if directory.exists() else next((p for p in directory.parents if p.exists()), Path("/"))
    if not os.access(probe_dir, os.W_OK):
        return [Finding("FAIL", f"data directory {directory}", f"{probe_dir} is not writable by this user",
                        "give the service's user the directory (chown), or choose --data-dir")]
    free = shutil.disk_usage(probe_dir).free
    level: Level = "ok" if free >= MIN_FREE_BYTES else "warn"
    findings.append(Finding(level, f"data directory {directory}", f"writable, {free / 2**30:.1f} GiB free",
                            "" if level == "ok" else "free some space: SQLite needs room for its log and checkpoints"))
    secret = directory / "token_secret"
    if not config.auth.token_secret and secret.exists() and secret.stat().st_mode & 0o077:
        findings.append(Finding("warn", "token secret", f"{secret} is readable by others",
                                f"chmod 600 {secret}"))
    return findings


def _tls(config: Config) -> list[Finding]:
    if not config.tls.cert:
        return [Finding("ok", "TLS", "off (plaintext listeners: keep them behind a TLS proxy or on a private network)")]
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(config.tls.cert, config.tls.key)
        decoded: dict[str, Any] = ssl._ssl._test_decode_cert(config.tls.cert)  # type: ignore[attr-defined]
    except (OSError, ssl.SSLError) as exc:
        return [Finding("FAIL", "TLS", f"{config.tls.cert} / {config.tls.key} do not load: {exc}",
                        "PEM files, the key the certificate's")]
    expires = ssl.cert_time_to_seconds(decoded["notAfter"])
    days = (expires - time.time()) / 86400
    if days < 0:
        return [Finding("FAIL", "TLS", f"the certificate expired {-days:.0f} days ago", "renew it, then SIGHUP")]
    if days < CERT_WARN_DAYS:
        return [Finding("warn", "TLS", f"the certificate expires in {days:.0f} days", "renew it, then SIGHUP")]
    return [Finding("ok", "TLS", f"certificate valid for {days:.0f} more days")]


async def _remote(config: Config) -> list[Finding]:
    findings = [await _store(config)]
    if config.cluster:
        findings.append(await _redis(config))
    return findings


async def _store(config: Config) -> Finding:
    latest = bundled().latest
    try:
        if is_postgres(config.store):
            from pica.store.postgres import probe

            found = await probe(config.store, config.postgres)
        else:
            found = await asyncio.to_thread(sqlite_files.probe, sqlite_path(config))
    except (PicaError, ValueError, OSError) as exc:
        return Finding("FAIL", "store", str(exc), "start the database, or correct --store")
    subject = "store"
    if found.schema_version > latest:
        return Finding("FAIL", subject, f"{found.detail}: schema version {found.schema_version}, newer than this "
                       f"release's {latest}", "run the release that wrote it (docs/operations.md, Upgrades)")
    pending = latest - found.schema_version
    state = f"schema version {found.schema_version}" + (f", {pending} migration(s) to apply at start" if pending
                                                        else ", up to date")
    running = f"; held by pica serve pid {found.held_by}" if found.held_by else ""
    skew = _skew(found.now_ms)
    if skew is not None:
        return skew_finding(subject, f"{found.detail}, {state}", skew)
    return Finding("ok", subject, f"{found.detail}, {state}{running}")


async def _redis(config: Config) -> Finding:
    from pica.cluster.driver import probe
    from pica.cluster.link import REDIS_ERRORS

    try:
        version, now_ms = await probe(config.cluster, config.redis)
    except REDIS_ERRORS as exc:
        return Finding("FAIL", "cluster bus (Redis)", f"unreachable: {type(exc).__name__}: {exc}",
                       "start Redis, or correct --cluster")
    skew = _skew(now_ms)
    if skew is not None:
        return skew_finding("cluster bus (Redis)", f"Redis {version}", skew)
    return Finding("ok", "cluster bus (Redis)", f"Redis {version}")


def _skew(remote_ms: int | None) -> int | None:
    """This machine's clock minus the remote one, when that is beyond MAX_CLOCK_SKEW_MS."""
    if remote_ms is None:
        return None
    skew = int(time.time() * 1000) - remote_ms
    return skew if abs(skew) > MAX_CLOCK_SKEW_MS else None


def skew_finding(subject: str, found: str, skew_ms: int) -> Finding:
    return Finding("warn", subject, f"{found}; this machine's clock is {skew_ms / 1000:+.1f} s off its clock",
                   "synchronise clocks (NTP): revocations and presence compare times across machines")


CHECKS: Final[tuple[Callable[[Config], list[Finding]], ...]] = (_python, _open_files, _ports, _data_dir, _tls)
