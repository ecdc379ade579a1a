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

**Shared by several servers** (``sqlite.writer_socket``, the workers of ``pica serve --workers N``): their supervisor
starts one writer listening on a Unix socket (:class:`SharedWriter`, ``--listen``), and each server connects to it
instead of starting its own. The same loop serves every connection: an operation's token is its connection and its
number, so each answer goes back where it came from, and one batch (one transaction, one fsync) may hold the
messages of several servers. One writer rather than one per server: SQLite would serialise them on its file lock,
and its busy handler sleeps 1, 2, 5, 10 ... 100 ms before trying again, which at saturation put seconds into the
tail of the acks. The shared writer ends once its supervisor closed its standard input and every server has left.

The durability contract is unchanged: a result leaves the writer after the commit that holds it, and the server acks
nothing before it reads that result. Failures:

- The server's process ends (even with kill -9): the writer reads end-of-file, finishes the batch it holds (whose
  callers are gone; the clients re-send with the same ids, and de-dup answers them) and exits. It ignores SIGINT and
  SIGTERM, so that Ctrl-C on the server's terminal or a signal to the process group does not cut it off before the
  server has closed the store.
- The writer dies: every write in flight fails with ``store_unavailable`` (retryable; nothing half-written: SQLite's
  transaction is atomic), writes fail the same way until a new writer is up, which the store starts at once, then at
  most once a second (a shared writer: its supervisor starts it again, and the servers join it as soon as it
  listens).
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
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
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
_JOIN_TIMEOUT: Final = 30.0
"""Seconds a server waits for a shared writer's socket before its store fails to open."""
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
        self._shared = Path(config.writer_socket) if config.writer_socket else None
        """The socket of a writer that several servers share (started by their supervisor), or None: this server
        starts its own."""
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
        """Start the writer (or join the shared one) and wait until it has the database open and migrated (or raise
        its error)."""
        self._last_start = time.monotonic()
        self.starts += 1
        if self._shared is not None:
            await self._join(self._shared)
            return
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with theirs:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pica.store.sqlite_process", str(theirs.fileno()),
                _settings(self._path, self._config), pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL,
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
        self._ready(link)

    async def _join(self, address: Path) -> None:
        """Connect to the shared writer, waiting up to ``_JOIN_TIMEOUT`` for its socket (its supervisor starts it
        before the servers, and again at once should it die)."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + _JOIN_TIMEOUT
        while True:
            ready: asyncio.Future[None] = loop.create_future()
            try:
                _, link = await loop.create_unix_connection(partial(_Link, self, ready), str(address))
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise StoreUnavailable(f"no shared SQLite writer at {address}: {exc}") from None
                await asyncio.sleep(0.05)
        self._link = link
        await ready
        log.info("joined the shared SQLite writer at %s", address)
        self._ready(link)

    def _ready(self, link: _Link) -> None:
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
        log.error("the SQLite writer process exited unexpectedly (%d writes failed); %s", len(pending),
                  "starting a new one" if self._shared is None else "joining the one its supervisor starts")
        self._restart = asyncio.get_running_loop().create_task(self._start_again())

    async def _start_again(self) -> None:
        await self._reap()
        # A shared writer is started again by its supervisor: join it as soon as it listens.
        interval = _RESTART_INTERVAL if self._shared is None else 0.0
        while not self._closing:
            await asyncio.sleep(max(0.0, self._last_start + interval - time.monotonic()))
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


def _settings(path: Path, config: SqliteConfig) -> str:
    root = logging.getLogger()
    return json.dumps({
        "path": str(path),
        "config": asdict(config),
        "log_level": root.level,
        "log_json": any(type(h.formatter).__name__ == "JsonFormatter" for h in root.handlers),
        "gc_threshold": heap.young_threshold(),
    })


class SharedWriter:
    """A writer process that several servers on one file share (:attr:`SqliteConfig.writer_socket`), for the
    supervisor of ``pica serve --workers N``: started before the workers, started again should it die, stopped
    after them (closing its standard input: it commits what the last workers sent and exits once they have left)."""

    def __init__(self, path: Path, config: SqliteConfig, address: Path, keep_fds: tuple[int, ...] = ()) -> None:
        self.path = path
        self.config = config
        self.address = address
        self.keep_fds = keep_fds
        """Descriptors the writer inherits (the database's server lock, so that it is held while the writer runs)."""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = _JOIN_TIMEOUT) -> None:
        self.address.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pica.store.sqlite_process", "--listen", str(self.address),
             _settings(self.path, self.config)], stdin=subprocess.PIPE, pass_fds=self.keep_fds,
        )
        deadline = time.monotonic() + timeout
        while not self.address.exists():  # bound once the database is open: it listens from then on
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise StoreUnavailable(f"the shared SQLite writer did not start (exit code {self.proc.returncode})")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = _CLOSE_TIMEOUT) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("the shared SQLite writer process %d did not exit; killing it", proc.pid)
            proc.kill()
            proc.wait()
        self.address.unlink(missing_ok=True)


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


class _Client:
    """One server's connection, as the writer sees it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.frames = _Frames()
        self.pending = 0
        """Operations taken from it and not yet answered."""
        self.eof = False


class _Channel:
    """The writer's end of its sockets: blocking reads of whole frames, and answers. One server's socket pair
    (``pica serve``: the writer ends with it), or a listening socket that several servers connect to (the workers of
    ``pica serve --workers N``: the writer ends once its supervisor closed ``control`` and every worker left). An
    operation's token is its server and its number, so that each answer goes back where it came from."""

    def __init__(self, sock: socket.socket | None = None, listener: socket.socket | None = None,
                 control: int | None = None) -> None:
        self._clients: dict[int, _Client] = {}
        self._listener = listener
        self._control = control
        self._greeting = b""
        if sock is not None:
            self._clients[sock.fileno()] = _Client(sock)
        self.rules: base.JobRules | None = None

    def greet(self, message: object) -> None:
        """``message`` to every server connected now (the first frame on each); later ones get it on connecting."""
        self._greeting = _frame(message)
        for client in self._clients.values():
            _send(client, self._greeting)

    def send_outcomes(self, outcomes: list[Outcome], timing: Timing | None) -> None:
        by_client: dict[int, list[Outcome]] = {}
        for (key, number), result, error in outcomes:
            by_client.setdefault(key, []).append((number, result, error))
        for key, answers in by_client.items():
            client = self._clients.get(key)
            if client is None:
                continue
            try:
                data = _frame(("done", (answers, timing)))
            except Exception as exc:  # a result pickle cannot carry: fail those operations, not the writer
                log.exception("cannot send outcomes to the server")
                failure = InternalError(f"store error: {type(exc).__name__}")
                data = _frame(("done", ([(number, None, failure) for number, _, _ in answers], timing)))
            _send(client, data)
            client.pending -= len(answers)
            if client.eof and client.pending <= 0:
                self._drop(client)

    def take(self, timeout: float | None) -> list[WriteOp] | None:
        """What the servers submitted, waiting up to ``timeout`` for the first of it; None once no server is left
        to serve."""
        ops: list[WriteOp] = []
        while not ops:
            if self._done():
                return None
            watched: list[Any] = [client.sock for client in self._clients.values() if not client.eof]
            if self._listener is not None:
                watched.append(self._listener)
            if self._control is not None:
                watched.append(self._control)
            readable = select.select(watched, [], [], timeout)[0]
            if not readable and timeout is not None:
                return ops
            for ready in readable:
                if ready is self._listener:
                    self._accept()
                elif ready is self._control:
                    self._control_read()
                else:
                    self._read(self._clients[ready.fileno()], ops)
        return ops

    def _done(self) -> bool:
        """No server left, and none to come: a socket pair's writer has no listener; a shared writer's is closed
        once its supervisor closed ``control``."""
        return self._listener is None and not self._clients

    def _accept(self) -> None:
        assert self._listener is not None
        with contextlib.suppress(BlockingIOError, ConnectionError):
            sock, _ = self._listener.accept()
            sock.setblocking(True)
            client = self._clients[sock.fileno()] = _Client(sock)
            _send(client, self._greeting)

    def _control_read(self) -> None:
        """The supervisor closed its end (it is stopping, or gone): accept no one new; end when the last leaves."""
        assert self._control is not None
        if not os.read(self._control, 4096):
            assert self._listener is not None
            self._listener.close()
            self._listener, self._control = None, None

    def _read(self, client: _Client, ops: list[WriteOp]) -> None:
        data = _recv(client, 0)
        key = client.sock.fileno()
        while data:  # and whatever else is already there, without waiting
            for payload in client.frames.feed(data):
                message = pickle.loads(payload)
                if isinstance(message, base.JobRules):
                    self.rules = None if message.empty else message
                    continue
                ops.extend(WriteOp((key, number), make, append) for number, make, append in message)
                client.pending += len(message)
            try:
                data = _recv(client, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
        if client.eof and client.pending <= 0:
            self._drop(client)

    def _drop(self, client: _Client) -> None:
        self._clients.pop(client.sock.fileno(), None)
        client.sock.close()

    def current_rules(self) -> base.JobRules | None:
        return self.rules


def _send(client: _Client, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the server is gone; its end-of-file is read next
        client.sock.sendall(data)


def _recv(client: _Client, flags: int) -> bytes:
    try:
        data = client.sock.recv(1 << 20, flags)
    except ConnectionError:  # the server's process is gone: the same as end-of-file
        data = b""
    if not data:
        client.eof = True
    return data


def main(argv: list[str]) -> int:
    """``<fd> <settings>``: the writer of the server that made socket ``fd``. ``--listen <path> <settings>``: a writer
    shared by the servers that connect to ``path``, until its standard input closes and they have all left."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    settings = json.loads(argv[-1])
    from pica.logs import configure

    configure(logging.getLevelName(settings["log_level"]), "json" if settings["log_json"] else "text")
    config = SqliteConfig(**settings["config"])
    path = Path(settings["path"])
    listening = argv[0] == "--listen"
    channel = None if listening else _Channel(socket.socket(fileno=int(argv[0])))
    try:
        conn = open_writer(path, config)
    except PicaError as exc:
        if channel is None:
            log.error("the shared SQLite writer cannot open %s: %s", path, exc)
        else:
            channel.greet(("failed", exc))
        return 1
    if channel is None:  # the socket appears once the database is open: its supervisor waits for it
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address = Path(argv[1])
        address.unlink(missing_ok=True)
        binding = address.with_name(address.name + ".binding")
        binding.unlink(missing_ok=True)
        listener.bind(str(binding))
        os.chmod(binding, 0o600)  # the workers run as this user; nobody else may write through it
        listener.listen(128)
        listener.setblocking(False)
        binding.rename(address)  # listening before it is found
        channel = _Channel(listener=listener, control=sys.stdin.fileno())
    checkpoints = Checkpoints(path, config)
    checkpoints.start()
    heap.tune(settings["gc_threshold"])
    heap.freeze_startup()
    channel.greet(("ready", None))
    try:
        write_loop(conn, config, channel.take, channel.send_outcomes, channel.current_rules, checkpoints)
    finally:
        conn.close()
        checkpoints.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
