"""The hub of ``pica serve --workers N`` on the embedded store: the cluster bus's doorbell without Redis.

Workers on one SQLite file are nodes of a cluster like any other (:mod:`pica.cluster`): same routing, same group
subscriptions, same presence judgement, same resyncs. What Redis does for them in a cluster, the hub does here, in a
thread of the supervisor process, over a Unix socket (:mod:`pica.cluster.hub_wire`):

- *pub/sub*: a publish goes to every connection subscribed to its channel (the publisher's own included, as Redis
  does), in the order the hub received it. One connection per worker, served in order, so "the frames one node
  publishes for a user reach that user's devices on other nodes in publish order" holds as on Redis;
- *presence*: which workers hold a device of each user, and the verdict the APPLY script gives (``alone``); the
  worker's :class:`~pica.cluster.presence.ClusterPresence` judges the transitions from it, exactly as on Redis;
- *the registry*: the workers connected now. Liveness is the connection itself: a worker that dies (even by
  kill -9) closes it, so its users are reaped at once, and one surviving worker is told which users no worker holds
  any more (``gone``), to announce them offline as a reaper does;
- *shared rate-limit buckets*: :class:`pica.core.ratelimit.Buckets`, what every node uses for its own.

The hub keeps no state worth saving: when it restarts (the supervisor's thread is started again), every worker
reconnects, re-registers its users and channels and resyncs its clients, as after a Redis restart.

Sans-I/O at the centre: :class:`HubState` takes decoded messages and leaves encoded frames on each
:class:`Peer`; :class:`HubThread` is the socket and the thread around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from pica.cluster import hub_wire
from pica.core.ratelimit import Buckets, Rate

log = logging.getLogger(__name__)

K = TypeVar("K", bytes, int)

MAX_BUFFERED: Final = 64 << 20
"""Bytes written to a worker and not yet read by it beyond which the hub cuts the connection: a worker that stopped
reading must not grow the supervisor's memory without end. Cut, it reconnects and resyncs its clients (as Redis's
``client-output-buffer-limit`` does to a slow subscriber)."""
_MAX_BUCKETS: Final = 100_000
"""Shared rate-limit buckets kept per rule (:class:`pica.core.ratelimit.Buckets`: the least recently used is
forgotten first, a full bucket again, an error towards letting a request through)."""


class Peer:
    """One worker's connection, as the hub's state sees it."""

    def __init__(self) -> None:
        self.node_id: str | None = None
        self.fields: dict[str, str] = {}
        self.channels: set[bytes] = set()
        self.users: set[int] = set()
        self.outgoing: list[bytes] = []
        """Encoded frames for the I/O layer to write, in order."""
        self._messages: list[bytes] = []
        """Publishes for this peer not yet framed: one ``msg`` frame per batch of input, not per publish."""

    def push(self, channel: bytes, data: bytes) -> None:
        self._messages += (channel, data)

    def send(self, message: list[Any]) -> None:
        self.flush()
        self.outgoing.append(hub_wire.encode(message))

    def flush(self) -> None:
        if self._messages:
            self.outgoing.append(hub_wire.encode(["msg", self._messages]))
            self._messages = []

    def take(self) -> list[bytes]:
        self.flush()
        out, self.outgoing = self.outgoing, []
        return out


class HubState:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.peers: list[Peer] = []
        """Connected workers, oldest first (the oldest announces the users of a dead one)."""
        self.channels: dict[bytes, set[Peer]] = {}
        self.online: dict[int, set[Peer]] = {}
        self.buckets: dict[tuple[float, float], Buckets] = {}
        """The shared buckets, by rate (count, per): one :class:`Buckets` per rule the workers apply."""
        self.reaped: set[str] = set()
        """Node ids whose users were announced offline when their connection closed: told so if they come back."""

    def connect(self, peer: Peer) -> None:
        self.peers.append(peer)

    def disconnect(self, peer: Peer) -> None:
        """The worker's connection closed: its users no worker holds any more go to the oldest surviving worker to
        announce (as a reaper does on Redis)."""
        if peer in self.peers:
            self.peers.remove(peer)
        gone = self._drop(peer)
        if peer.node_id is not None and gone:
            self.reaped.add(peer.node_id)
        survivors = [p for p in self.peers if p.node_id is not None]
        if gone and survivors:
            survivors[0].send(["gone", gone])

    def _drop(self, peer: Peer) -> list[int]:
        """Forget the peer's channels and users; returns the users no worker holds any more."""
        for channel in peer.channels:
            _release(self.channels, channel, peer)
        gone = []
        for user_id in peer.users:
            if _release(self.online, user_id, peer):
                gone.append(user_id)
        peer.channels, peer.users = set(), set()
        return sorted(gone)

    def receive(self, peer: Peer, message: list[Any]) -> None:
        """One message from ``peer``; ValueError (the connection is then dropped) if it is malformed."""
        if not message or not isinstance(message[0], str):
            raise ValueError("a message is an array whose first element is its kind")
        kind = message[0]
        if kind == "pub":
            self._publish(_pairs(message))
        elif kind == "sub":
            for channel in _channels(message):
                peer.channels.add(channel)
                self.channels.setdefault(channel, set()).add(peer)
        elif kind == "unsub":
            for channel in _channels(message):
                peer.channels.discard(channel)
                _release(self.channels, channel, peer)
        elif kind == "call":
            if len(message) != 4 or not isinstance(message[1], int) or not isinstance(message[3], list):
                raise ValueError("call: expected [\"call\", id, op, args]")
            _, number, op, args = message
            try:
                result = self._call(peer, op, args)
            except (ValueError, TypeError) as exc:
                peer.send(["fail", number, str(exc)])
            else:
                peer.send(["reply", number, result])
        else:
            raise ValueError(f"unknown message kind {kind!r}")

    # ------------------------------------------------------------------------------------------ calls

    def _call(self, peer: Peer, op: str, args: list[Any]) -> Any:
        if op == "ping":
            return None
        if op == "hello":
            node_id, fields = args
            if not isinstance(node_id, str) or not isinstance(fields, dict):
                raise ValueError("hello: expected [node_id, fields]")
            if any(p.node_id == node_id for p in self.peers if p is not peer):
                raise ValueError(f"node id {node_id!r} is connected already")
            peer.node_id, peer.fields = node_id, fields
            reaped = node_id in self.reaped
            self.reaped.discard(node_id)
            return {"reaped": reaped, "nodes": self._nodes()}
        if peer.node_id is None:
            raise ValueError(f"{op}: say hello first")
        if op == "leave":  # the worker stops: it announces the users it held alone itself
            gone = self._drop(peer)
            peer.node_id = None
            return gone
        if op == "beat":
            (fields,) = args
            if not isinstance(fields, dict):
                raise ValueError("beat: expected [fields]")
            peer.fields = fields
            return self._nodes()
        if op == "apply":
            return self._apply(peer, args)
        if op == "online":
            return [u for u in args if any(p is not peer for p in self.online.get(u, ()))]
        if op == "bucket":
            name, count, per, cost, mode = args
            return self._bucket(str(name), float(count), float(per), float(cost), str(mode))
        raise ValueError(f"unknown call {op!r}")

    def _nodes(self) -> list[dict[str, str]]:
        return [p.fields for p in self.peers if p.node_id is not None]

    def _apply(self, peer: Peer, args: list[Any]) -> list[int]:
        """The APPLY script's verdict (:mod:`pica.cluster.scripts`): for a user who came, alone = no other worker
        holds them; for one who went, alone = no worker holds them any more."""
        if len(args) % 2:
            raise ValueError("apply: expected user id, online, ...")
        out: list[int] = []
        for i in range(0, len(args), 2):
            user_id, online = int(args[i]), bool(args[i + 1])
            if online:
                peer.users.add(user_id)
                holders = self.online.setdefault(user_id, set())
                holders.add(peer)
                alone = len(holders) == 1
            else:
                peer.users.discard(user_id)
                _release(self.online, user_id, peer)
                alone = user_id not in self.online
            out += (user_id, 1 if alone else 0)
        return out

    def _bucket(self, name: str, count: float, per: float, cost: float, mode: str) -> float:
        if count <= 0 or per <= 0:
            raise ValueError("bucket: count and per must be positive")
        buckets = self.buckets.get((count, per))
        if buckets is None:
            buckets = self.buckets[(count, per)] = Buckets("shared", Rate(count, per), _MAX_BUCKETS)
        now = self._clock()
        if mode == "take":
            return buckets.take(name, now, cost)
        if mode == "wait":
            return buckets.wait(name, now)
        if mode == "charge":
            buckets.charge(name, now, cost)
            return 0.0
        raise ValueError(f"bucket: unknown mode {mode!r}")

    def _publish(self, pairs: list[tuple[bytes, bytes]]) -> None:
        channels = self.channels
        for channel, data in pairs:
            for peer in channels.get(channel, ()):
                peer.push(channel, data)


def _release(index: dict[K, set[Peer]], key: K, peer: Peer) -> bool:
    """Take ``peer`` out of ``index[key]``, forgetting the key once no peer is left; whether it was the last."""
    holders = index.get(key)
    if holders is None:
        return False
    holders.discard(peer)
    if holders:
        return False
    del index[key]
    return True


def _channels(message: list[Any]) -> list[bytes]:
    if len(message) != 2 or not isinstance(message[1], list) or not all(isinstance(c, bytes) for c in message[1]):
        raise ValueError(f"{message[0]}: expected a list of channels")
    return message[1]


def _pairs(message: list[Any]) -> list[tuple[bytes, bytes]]:
    if len(message) != 2 or not isinstance(message[1], list) or len(message[1]) % 2:
        raise ValueError("pub: expected [channel, data, ...]")
    flat = message[1]
    return list(zip(flat[::2], flat[1::2], strict=True))


# ====================================================================================================== I/O


class _Connection(asyncio.Protocol):
    def __init__(self, hub: HubState, transports: dict[Peer, asyncio.Transport]) -> None:
        self._hub = hub
        self._transports = transports
        self._reader = hub_wire.Reader()
        self._peer = Peer()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._transports[self._peer] = transport
        self._hub.connect(self._peer)

    def data_received(self, data: bytes) -> None:
        try:
            for message in self._reader.feed(data):
                self._hub.receive(self._peer, message)
        except Exception as exc:  # garbage from a worker: a bug; cut it, it reconnects and resyncs
            log.error("worker hub: dropping a connection after a bad message (%s: %s)", type(exc).__name__, exc)
            assert self._transport is not None
            self._transport.abort()
            return
        _flush(self._hub, self._transports)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transports.pop(self._peer, None)
        self._hub.disconnect(self._peer)
        if self._peer.node_id is not None:
            log.info("worker hub: worker %s left", self._peer.node_id)
        _flush(self._hub, self._transports)


def _flush(hub: HubState, transports: dict[Peer, asyncio.Transport]) -> None:
    """Write what the last input left on every peer (the publisher's subscribers, not only the publisher)."""
    for peer in hub.peers:
        frames = peer.take()
        if not frames:
            continue
        transport = transports.get(peer)
        if transport is None or transport.is_closing():
            continue
        transport.writelines(frames)
        if transport.get_write_buffer_size() > MAX_BUFFERED:
            log.error("worker hub: worker %s is not reading (%d bytes waiting); cutting it, it will resync",
                      peer.node_id, transport.get_write_buffer_size())
            transport.abort()


class HubThread:
    """The hub in a thread of its own, with its own event loop, listening on a Unix socket at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = HubState()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="pica-worker-hub", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the worker hub did not start")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        transports: dict[Peer, asyncio.Transport] = {}
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self._server = loop.run_until_complete(loop.create_unix_server(
                lambda: _Connection(self.state, transports), str(self.path)))
            os.chmod(self.path, 0o600)  # the workers run as this user; nobody else may join the bus
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for transport in list(transports.values()):
                transport.abort()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10.0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
