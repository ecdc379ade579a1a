"""The SQLite writer in a process of its own (``sqlite.writer = "process"``).

Why: in one Python process the event loop (sockets, frames, fan-out) and the writer (transactions, binding, SQLite)
share one GIL, so the embedded default never used more than one core. Here the server's process keeps the event loop
and the reader threads (WAL lets them read the file while the writer commits), and a child process owns the only
write connection and runs exactly the writer of :mod:`pica.store.sqlite_writer`: the same batches, the same
transactions, the same group commit. Each side now holds a GIL of its own.

The two talk over a Unix socket pair made at start: length-prefixed (4 bytes, big-endian) pickles. The server sends
one frame per event-loop turn, a list of ``(number, make, append)`` (``make`` a module-level transaction function or
a partial of one, ``append`` a client's message); the writer answers, after each commit, with one frame
``("done", ([(number, result, error), ...], timing))``, ``timing`` being the batch's size and durations for
/metrics (:data:`pica.store.sqlite_writer.Timing`, or None). Its first frame is ``("ready", None)`` once the
database is open and migrated, or ``("failed", error)``. Pickle is safe here: both ends are this code, and the
socket pair is never reachable by anything else.

The durability contract is unchanged: a result leaves the writer after the commit that holds it, and the server acks
nothing before it reads that result. Failures:

- The server's process ends (even with kill -9): the writer reads end-of-file, finishes the batch it holds (whose
  callers are gone; the clients re-send with the same ids, and de-dup answers them) and exits. It ignores SIGINT and
  SIGTERM, so that Ctrl-C on the server's terminal or a signal to the process group does not cut it off before the
  server has closed the store.
- The writer dies: every write in flight fails with ``store_unavailable`` (retryable; nothing half-written: SQLite's
  transaction is atomic), writes fail the same way until a new writer is up, which the store starts at once, then at
  most once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import itertools
import json
import logging
import operator
import pickle
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final, cast

from pica import heap
from pica.config import SqliteConfig
from pica.errors import InternalError, PicaError, StoreUnavailable
from pica.store import base
from pica.store.sqlite_writer import (
    Checkpoints,
    Outcome,
    Timing,
    WriteOp,
    open_writer,
    report,
    resolve,
    write_loop,
)

log = logging.getLogger(__name__)

_HEADER: Final = struct.Struct("!I")
_RESTART_INTERVAL: Final = 1.0
"""Seconds between two starts of a writer that keeps dying."""
_CLOSE_TIMEOUT: Final = 30.0
"""Seconds the server waits for the writer to commit what it holds and exit before killing it."""


def _by_fields(cls: type) -> Callable[[Any], tuple[type, tuple[Any, ...]]]:
    """Pickle a frozen dataclass as its class and its fields in order: rebuilt by one call of its ``__init__``, which
    takes a third of the time of pickle's default for slotted dataclasses (a state dict built through
    ``dataclasses.fields`` on every object), on both sides of the socket."""
    names = [f.name for f in dataclasses.fields(cls)]
    assert all(f.init for f in dataclasses.fields(cls)), cls
    get = operator.attrgetter(*names)
    if len(names) == 1:
        return lambda obj: (cls, (get(obj),))
    return lambda obj: (cls, get(obj))


_REDUCERS: Final[dict[type, Any]] = {
    cls: _by_fields(cls)
    for cls in vars(base).values()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == base.__name__
}
"""The records of the store's contract (appends and their results above all) cross the socket on every message."""


def _frame(message: object) -> bytes:
    buffer = io.BytesIO()
    buffer.write(b"\0" * _HEADER.size)
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _REDUCERS
    pickler.dump(message)
    _HEADER.pack_into(buffer.getbuffer(), 0, buffer.tell() - _HEADER.size)
    return buffer.getvalue()


class _Frames:
    """Splits a byte stream into the payloads of length-prefixed frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        frames = []
        offset = 0
        while len(self._buffer) - offset >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer, offset)
            end = offset + _HEADER.size + size
            if len(self._buffer) < end:
                break
            frames.append(bytes(self._buffer[offset + _HEADER.size : end]))
            offset = end
        del self._buffer[:offset]
        return frames


# ====================================================================================================== server side


class WriterProcess:
    """The server's handle on its writer process: starts it, submits operations, resolves their futures."""

    def __init__(self, path: Path, config: SqliteConfig) -> None:
        self._path = path
        self._config = config
        self._numbers = itertools.count()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._link: _Link | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._closing = False
        self._restart: asyncio.Task[None] | None = None
        self._last_start = 0.0
        self._rules: base.JobRules | None = None
        self.observer: base.CommitObserver | None = None
        self.starts = 0
        """Writer processes started so far (more than one: a writer died and was replaced)."""

    @property
    def backlog(self) -> int:
        """Operations sent to the writer and not yet answered."""
        return len(self._pending)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Start the writer and wait until it has the database open and migrated (or raise its error)."""
        self._last_start = time.monotonic()
        self.starts += 1
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        root = logging.getLogger()
        settings = {
            "path": str(self._path),
            "config": asdict(self._config),
            "log_level": root.level,
            "log_json": any(type(h.formatter).__name__ == "JsonFormatter" for h in root.handlers),
            "gc_threshold": heap.young_threshold(),
        }
        with theirs:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pica.store.sqlite_process", str(theirs.fileno()), json.dumps(settings),
                pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL,
            )
        ready: asyncio.Future[None] = loop.create_future()
        _, link = await loop.create_unix_connection(lambda: _Link(self, ready), sock=ours)
        self._link = link
        try:
            await ready
        except BaseException:
            await self._reap()
            raise
        log.info("SQLite writer process %d is ready", self._proc.pid)
        if self._rules is not None:  # a new writer after one died: it starts with none
            link.send(_frame(self._rules))

    def set_rules(self, rules: base.JobRules | None) -> None:
        """The job rules the writer's batch transactions apply from now on: a frame of their own, so in order with
        the operations."""
        self._rules = rules
        if self._link is not None and self._link.connected:
            self._link.send(_frame(rules if rules is not None else base.JobRules()))

    def submit(self, ops: list[WriteOp]) -> None:
        link = self._link
        if link is None or not link.connected:
            error = StoreUnavailable("the SQLite writer is restarting")
            for op in ops:
                resolve(op.token, None, error)
            return
        batch = []
        for op in ops:
            number = next(self._numbers)
            self._pending[number] = op.token
            batch.append((number, op.make, op.append))
        try:
            link.send(_frame(batch))
        except Exception as exc:  # something in an operation that pickle cannot carry: a bug, kept to its callers
            log.exception("cannot send %d operations to the SQLite writer", len(batch))
            for number, _, _ in batch:
                resolve(self._pending.pop(number), None, InternalError(f"store error: {type(exc).__name__}"))

    def _outcomes(self, outcomes: list[Outcome], timing: Timing | None) -> None:
        report(self.observer, timing)
        for number, result, error in outcomes:
            future = self._pending.pop(number, None)
            if future is not None:
                resolve(future, result, error)

    def _lost(self) -> None:
        """The writer's end of the socket closed: whatever it had not answered will never be answered."""
        self._link = None
        error = StoreUnavailable("the SQLite writer exited")
        pending, self._pending = self._pending, {}
        for future in pending.values():
            resolve(future, None, error)
        if self._closing:
            return
        log.error("the SQLite writer process exited unexpectedly (%d writes failed); starting a new one", len(pending))
        self._restart = asyncio.get_running_loop().create_task(self._start_again())

    async def _start_again(self) -> None:
        await self._reap()
        while not self._closing:
            await asyncio.sleep(max(0.0, self._last_start + _RESTART_INTERVAL - time.monotonic()))
            if self._closing:
                return
            try:
                await self.start()
                return
            except Exception:
                log.exception("cannot start the SQLite writer process; trying again")

    async def close(self) -> None:
        """Let the writer commit and answer everything submitted, then wait for it to exit."""
        self._closing = True
        if self._restart is not None:
            self._restart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restart
        link = self._link
        if link is not None:
            link.finish()  # end-of-file for the writer after everything sent
            await link.closed
        await self._reap()

    async def _reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await proc.wait()
        except TimeoutError:
            log.error("the SQLite writer process %d did not exit; killing it", proc.pid)
            proc.kill()
            await proc.wait()


class _Link(asyncio.Protocol):
    def __init__(self, owner: WriterProcess, ready: asyncio.Future[None]) -> None:
        self._owner = owner
        self._ready = ready
        self._frames = _Frames()
        self._transport: asyncio.Transport | None = None
        self.connected = False
        self._was_ready = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def send(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)

    def finish(self) -> None:
        self.connected = False
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write_eof()

    def data_received(self, data: bytes) -> None:
        for payload in self._frames.feed(data):
            kind, body = pickle.loads(payload)
            if kind == "done":
                self._owner._outcomes(*body)
            elif kind == "ready":
                self.connected = self._was_ready = True
                resolve(self._ready, None, None)
            else:
                resolve(self._ready, None, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connected = False
        resolve(self._ready, None, StoreUnavailable("the SQLite writer process exited before it was ready"))
        resolve(self.closed, None, None)
        if self._was_ready:
            self._owner._lost()


# ====================================================================================================== writer side


class _Channel:
    """The writer's end of the socket: blocking reads of whole frames, and answers."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._frames = _Frames()
        self._eof = False
        self.rules: base.JobRules | None = None

    def send(self, message: object) -> None:
        self._send(_frame(message))

    def send_outcomes(self, outcomes: list[Outcome], timing: Timing | None) -> None:
        try:
            data = _frame(("done", (outcomes, timing)))
        except Exception as exc:  # a result pickle cannot carry: fail those operations, not the writer
            log.exception("cannot send outcomes to the server")
            failure = InternalError(f"store error: {type(exc).__name__}")
            data = _frame(("done", ([(number, None, failure) for number, _, _ in outcomes], timing)))
        self._send(data)

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the server is gone; the loop ends at the next read
            self._sock.sendall(data)

    def take(self, timeout: float | None) -> list[WriteOp] | None:
        """What the server submitted, waiting up to ``timeout`` for the first of it; None at end-of-file."""
        ops: list[WriteOp] = []
        while not ops:
            if self._eof:
                return None
            if timeout is not None and not select.select([self._sock], [], [], timeout)[0]:
                return ops
            data = self._recv(0)
            while data:  # and whatever else is already there, without waiting
                for payload in self._frames.feed(data):
                    message = pickle.loads(payload)
                    if isinstance(message, base.JobRules):
                        self.rules = None if message.empty else message
                        continue
                    ops.extend(WriteOp(number, make, append) for number, make, append in message)
                try:
                    data = self._recv(socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
        return ops

    def current_rules(self) -> base.JobRules | None:
        return self.rules

    def _recv(self, flags: int) -> bytes:
        try:
            data = self._sock.recv(1 << 20, flags)
        except ConnectionError:  # the server's process is gone: the same as end-of-file
            data = b""
        if not data:
            self._eof = True
        return data


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fd, settings = int(argv[0]), json.loads(argv[1])
    from pica.logs import configure

    configure(logging.getLevelName(settings["log_level"]), "json" if settings["log_json"] else "text")
    config = SqliteConfig(**settings["config"])
    path = Path(settings["path"])
    channel = _Channel(socket.socket(fileno=fd))
    try:
        conn = open_writer(path, config)
    except PicaError as exc:
        channel.send(("failed", exc))
        return 1
    checkpoints = Checkpoints(path, config)
    checkpoints.start()
    heap.tune(settings["gc_threshold"])
    heap.freeze_startup()
    channel.send(("ready", None))
    try:
        write_loop(conn, config, channel.take, channel.send_outcomes, channel.current_rules, checkpoints)
    finally:
        conn.close()
        checkpoints.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
