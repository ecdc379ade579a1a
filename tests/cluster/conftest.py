"""Cluster fixtures: Pica nodes as separate processes sharing one PostgreSQL schema and one Redis key prefix.

Every test gets its own schema (``t_<hex>``, dropped after) in the shared PostgreSQL at 127.0.0.1:5432 (database
``test``) and its own key prefix (``pica-test-<hex>:``, its keys deleted after) in the shared Redis at 127.0.0.1:6379.
Tests that restart a service start a private one instead (:class:`PrivateRedis`, :class:`PrivatePostgres`): the
shared instances are never stopped. A missing service or binary skips the test with a reason naming it (under
``CI=true`` the root conftest turns skips into failures).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pica.client import Connected, Login, MessageEvent, PicaClient, PicaHttp
from pica.protocol import frames as f
from tests.conftest import PASSWORD

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_DATABASE = "test"
REDIS_PORT = 6379
PG_BIN = Path("/usr/lib/postgresql/15/bin")
START_TIMEOUT = 30.0

SHARED_PG = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{PG_DATABASE}"
SHARED_REDIS = f"redis://127.0.0.1:{REDIS_PORT}/0"

# Node settings for tests: a dead node leaves the registry within 2 s; small pools, since the shared PostgreSQL
# (max_connections 100) serves several engineers' tests at once. Cheap password hashes come with the environment
# (CHEAP_HASHING_ENV in tests/conftest.py).
TEST_NODE_ENV = {
    "PICA_REDIS_HEARTBEAT_INTERVAL": "0.5",
    "PICA_REDIS_NODE_TTL": "2.0",
    "PICA_POSTGRES_POOL_SIZE": "3",
    "PICA_POSTGRES_WRITE_LANES": "2",
    "PICA_AUTH_HASH_CONCURRENCY": "2",
    "PICA_LOG_LEVEL": "INFO",
}


# ---------------------------------------------------------------------------------------------- services


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def pg_execute(dsn: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def pg_fetch(dsn: str, query: str, *args: Any, schema: str | None = None) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5, server_settings={"search_path": schema} if schema else None)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def require_postgres(dsn: str = SHARED_PG) -> None:
    try:
        await pg_execute(dsn, "SELECT 1")
    except Exception as exc:
        pytest.skip(f"CLUSTER TESTS NEED PostgreSQL at {dsn}, which is not reachable: {exc!r}")


def require_redis(port: int = REDIS_PORT) -> None:
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping()
    except Exception as exc:
        pytest.skip(f"CLUSTER TESTS NEED Redis at 127.0.0.1:{port}, which is not reachable: {exc!r}")


def require_binaries(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None and not (PG_BIN / name).exists()]
    if missing:
        pytest.skip(f"CLUSTER TESTS NEED the binaries {', '.join(missing)}, which are not installed")


def redis_delete_prefix(prefix: str, port: int = REDIS_PORT) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


class PrivateRedis:
    """A redis-server of this test alone (no persistence), so that it can be killed and started again."""

    def __init__(self, directory: Path) -> None:
        require_binaries("redis-server")
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", "--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--port", str(self.port),
                 "--dir", str(self.directory)],
                stdout=log, stderr=log,
            )
        import redis

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1).ping():
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see {self.directory}/redis.log")
            time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self, down_for: float = 0.0) -> None:
        self.kill()
        time.sleep(down_for)
        self.start()

    def client(self) -> Any:
        """A synchronous client of this server (for test control: CLIENT PAUSE, PUBSUB, …)."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)


class PrivatePostgres:
    """A PostgreSQL 15 cluster of this test alone, run as the ``postgres`` OS user (initdb refuses root), listening
    on 127.0.0.1 and a free port, with fsync on. ``crash()`` is ``pg_ctl stop -m immediate`` (no checkpoint: the
    next start replays the WAL, as after a power cut of the database alone)."""

    def __init__(self) -> None:
        require_binaries("initdb", "pg_ctl", "runuser")
        try:
            self._user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("CLUSTER TESTS NEED an OS user 'postgres' to run a private PostgreSQL")
        # Under /tmp rather than pytest's tmp_path: the postgres user cannot enter root's 0700 directories.
        self.directory = Path(tempfile.mkdtemp(prefix="pica-pg-", dir="/tmp"))
        os.chown(self.directory, self._user.pw_uid, self._user.pw_gid)
        self.data = self.directory / "data"
        self.port = free_port()

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *argv: str, timeout: float = 60.0) -> None:
        result = subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                                timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr[-2000:]}")

    def init(self) -> None:
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                          "--no-sync", "-E", "UTF8", "--locale=C")

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.directory} "
                   f"-c fsync=on -c max_connections=60 -c shared_buffers=32MB")
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.directory / "postgres.log"),
                          "-o", options, "-w", "-t", "30", "start")

    def crash(self) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- cluster of nodes


@dataclass
class ClusterSpec:
    """Where the nodes of one test keep their state: a store URL + schema, a bus URL + key prefix, one token secret
    shared by every node (a token issued by one node is accepted by all)."""

    store: str
    bus: str
    schema: str = field(default_factory=lambda: f"t_{secrets.token_hex(6)}")
    prefix: str = field(default_factory=lambda: f"pica-test-{secrets.token_hex(6)}:")
    secret: str = field(default_factory=lambda: secrets.token_hex(32))

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            **TEST_NODE_ENV,
            "PICA_POSTGRES_SCHEMA": self.schema,
            "PICA_REDIS_PREFIX": self.prefix,
            "PICA_AUTH_TOKEN_SECRET": self.secret,
            **extra,
        }


@dataclass
class NodeProcess:
    """One ``pica serve`` process (or a ``--workers`` supervisor) of a cluster."""

    node_id: str
    proc: subprocess.Popen[bytes]
    http_port: int
    tcp_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def migrate(spec: ClusterSpec) -> None:
    """``pica migrate`` on the spec's store and schema, as an operator runs it before starting nodes."""
    result = subprocess.run([sys.executable, "-m", "pica", "migrate", "--store", spec.store], env=spec.env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"pica migrate failed ({result.returncode}): {result.stderr[-3000:]}"


def start_nodes(spec: ClusterSpec, tmp_path: Path, names: Sequence[str], extra: Sequence[str] = (),
                env: dict[str, str] | None = None) -> list[NodeProcess]:
    """Start one node per name at once (they start in parallel), return them once every one listens."""
    launched: list[tuple[str, subprocess.Popen[bytes], Path, Path]] = []
    for name in names:
        home = tmp_path / name
        home.mkdir(parents=True, exist_ok=True)
        ready = home / f"ready-{secrets.token_hex(4)}"
        log_path = home / "server.log"
        with open(log_path, "ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [sys.executable, "-m", "pica", "serve", "--host", "127.0.0.1", "--port", "0", "--tcp-port", "0",
                 "--data-dir", str(home / "data"), "--ready-file", str(ready), "--node-id", name,
                 "--store", spec.store, "--cluster", spec.bus, *extra],
                stdout=log, stderr=log, env=env or spec.env(),
            )
        launched.append((name, proc, ready, log_path))
    nodes: list[NodeProcess] = []
    deadline = time.monotonic() + START_TIMEOUT
    try:
        for name, proc, ready, log_path in launched:
            while True:
                text = ready.read_text() if ready.exists() else ""
                if text.strip() and len(text.split()) >= 2:
                    http, tcp = map(int, text.split()[:2])
                    nodes.append(NodeProcess(name, proc, http, tcp, log_path))
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"node {name} exited with {proc.returncode}:\n{_tail(log_path)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {name} did not start within {START_TIMEOUT} s:\n{_tail(log_path)}")
                time.sleep(0.05)
    except BaseException:
        for _, proc, _, _ in launched:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        raise
    return nodes


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_nodes(nodes: Sequence[NodeProcess]) -> None:
    for node in nodes:
        if node.alive:
            node.proc.send_signal(signal.SIGTERM)
    for node in nodes:
        try:
            node.proc.wait(15)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait(10)


@dataclass
class Cluster:
    spec: ClusterSpec
    tmp_path: Path
    nodes: list[NodeProcess] = field(default_factory=list)

    def start(self, *names: str, extra: Sequence[str] = (), env: dict[str, str] | None = None
              ) -> list[NodeProcess]:
        """``env``: variables to set for these nodes on top of the spec's."""
        started = start_nodes(self.spec, self.tmp_path, names, extra, self.spec.env(**env) if env else None)
        self.nodes.extend(started)
        return started

    def node(self, node_id: str) -> NodeProcess:
        (found,) = [n for n in self.nodes if n.node_id == node_id]
        return found

    @property
    def live(self) -> list[NodeProcess]:
        return [n for n in self.nodes if n.alive]

    def logs(self) -> str:
        return "\n\n".join(f"--- {n.node_id} ---\n{n.log_tail()}" for n in self.nodes)

    async def formed(self, token: str, timeout: float = 10.0) -> None:
        """Wait until every live node's ``GET /v1/gateway`` lists every live node (the registry is refreshed by
        heartbeats, so a node started a moment ago may not be listed yet). ``--workers`` nodes are left out."""
        live = [n for n in self.live if "--workers" not in n.proc.args]  # type: ignore[operator]

        async def complete() -> bool:
            for node in live:
                async with PicaHttp(node.url, token=token) as http:
                    if {n.node_id for n in await http.gateway()} != {n.node_id for n in live}:
                        return False
            return True

        await eventually(complete, timeout, "every node lists every live node")


@contextlib.asynccontextmanager
async def cluster_on(tmp_path: Path, store_dsn: str, bus_url: str, *, redis_port: int,
                     cleanup_schema: bool = True) -> AsyncIterator[Cluster]:
    """A migrated schema and a key prefix of their own on the given store and bus; nodes are started by the test
    (``cluster.start("n1", "n2")``) and stopped, schema dropped and keys deleted afterwards."""
    spec = ClusterSpec(store=store_dsn, bus=bus_url)
    await pg_execute(store_dsn, f'CREATE SCHEMA "{spec.schema}"')
    cluster = Cluster(spec, tmp_path)
    try:
        migrate(spec)
        yield cluster
    finally:
        stop_nodes(cluster.nodes)
        if cleanup_schema:
            with contextlib.suppress(Exception):
                await pg_execute(store_dsn, f'DROP SCHEMA IF EXISTS "{spec.schema}" CASCADE')
        with contextlib.suppress(Exception):
            redis_delete_prefix(spec.prefix, redis_port)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """Nodes on the shared PostgreSQL and Redis (own schema and prefix)."""
    await require_postgres()
    require_redis()
    async with cluster_on(tmp_path, SHARED_PG, SHARED_REDIS, redis_port=REDIS_PORT) as made:
        yield made


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()


# ---------------------------------------------------------------------------------------------- users and checks


async def register(url: str, prefix: str = "u") -> Login:
    name = f"{prefix}{secrets.token_hex(5)}"
    async with PicaHttp(url) as http:
        await http.register(name, PASSWORD)
        return await http.login(name, PASSWORD)


async def register_many(urls: Sequence[str], count: int, prefix: str = "u") -> list[Login]:
    """``count`` users, registered round-robin on the given nodes (any node serves any user)."""
    return list(await asyncio.gather(*(register(urls[i % len(urls)], f"{prefix}{i}_") for i in range(count))))


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(step)


async def full_history(url: str, token: str, conversation_id: str) -> list[dict[str, Any]]:
    """Every message of a conversation the reader can see, ascending, read page by page over HTTP."""
    messages: list[dict[str, Any]] = []
    after = 0
    async with PicaHttp(url, token=token) as http:
        for _ in range(10_000):
            page = await http.history(conversation_id, after_seq=after, limit=100)
            messages.extend(page["messages"])
            if not page["messages"] or not page["more"]:
                return messages
            after = int(page["messages"][-1]["seq"])
    raise AssertionError(f"history of {conversation_id} did not end")


def check_timeline(conversation_id: str, messages: Sequence[dict[str, Any]],
                   acked: dict[str, tuple[str, int]]) -> None:
    """The stored timeline of one conversation: seqs 1..N without a gap, each client id once, every acked message
    of it at its acked seq."""
    seqs = [int(m["seq"]) for m in messages]
    assert seqs == list(range(1, len(seqs) + 1)), f"{conversation_id}: seqs not gap-free 1..N: {seqs[:20]}..."
    twice = [cmid for cmid, n in Counter(m["client_msg_id"] for m in messages).items() if n > 1]
    assert not twice, f"{conversation_id}: client ids stored twice: {twice[:5]}"
    where = {m["client_msg_id"]: int(m["seq"]) for m in messages}
    mine = {cmid: seq for cmid, (cid, seq) in acked.items() if cid == conversation_id}
    lost = [cmid for cmid in mine if cmid not in where]
    assert not lost, f"{conversation_id}: {len(lost)} acked messages lost, e.g. {lost[:5]}"
    moved = [cmid for cmid, seq in mine.items() if where[cmid] != seq]
    assert not moved, f"{conversation_id}: acked messages stored at another seq: {moved[:5]}"


# ---------------------------------------------------------------------------------------------- load with checks


@dataclass
class Chatter:
    """One user's SDK client under load, with what it sent, what was acked and every message it was handed."""

    name: str
    login: Login
    client: PicaClient
    received: list[f.Msg] = field(default_factory=list)
    connects: list[Connected] = field(default_factory=list)
    acked: dict[str, tuple[str, int]] = field(default_factory=dict)
    attempted: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client.on(MessageEvent, lambda event: self.received.append(event.message))
        self.client.on(Connected, self.connects.append)

    @property
    def node_id(self) -> str:
        return self.client.node.node_id if self.client.node is not None else ""


Target = tuple[int | None, int | None]
"""(to, group_id) of a send."""


class ChatLoad:
    """Closed-loop senders over PicaClients: each sends ``count`` messages, ``window`` at a time, to its targets in
    turn, with client ids of its own; then the checks of the issue: every acked message stored once at its acked
    seq, gap-free timelines, every reader handed every message once in order, and re-sending changes nothing."""

    def __init__(self, chatters: Sequence[Chatter], targets: dict[str, list[Target]]) -> None:
        self.chatters = list(chatters)
        self.targets = targets
        self.intent: dict[str, tuple[Chatter, Target]] = {}
        self.group_ids: set[int] = set()
        for goals in targets.values():
            self.group_ids.update(g for _, g in goals if g is not None)

    @property
    def acked(self) -> dict[str, tuple[str, int]]:
        return {cmid: where for c in self.chatters for cmid, where in c.acked.items()}

    async def run(self, count: int, window: int, *, pause: float = 0.0, send_timeout: float = 30.0,
                  tag: str = "m") -> None:
        """``pause``: seconds each sender waits after an ack before its next send (spreads the load over time)."""
        await asyncio.gather(*(self._one(c, count, window, pause, send_timeout, tag) for c in self.chatters))

    async def _one(self, chatter: Chatter, count: int, window: int, pause: float, send_timeout: float,
                   tag: str) -> None:
        slots = asyncio.Semaphore(window)
        goals = self.targets[chatter.name]

        async def send(k: int) -> None:
            to, group_id = goals[k % len(goals)]
            cmid = f"{chatter.name}-{tag}{k}"
            chatter.attempted.append(cmid)
            self.intent[cmid] = (chatter, (to, group_id))
            try:
                ack = await chatter.client.send(to=to, group_id=group_id, text=cmid, client_msg_id=cmid,
                                                timeout=send_timeout)
            except Exception as exc:
                chatter.failures.append(f"{cmid}: {exc!r}")
            else:
                chatter.acked[cmid] = (ack.conversation_id, ack.seq)

        async def slot(k: int) -> None:
            async with slots:
                await send(k)
                await asyncio.sleep(pause)

        await asyncio.gather(*(slot(k) for k in range(count)))

    def conversations_of(self, chatter: Chatter) -> set[str]:
        ids = {f"g:{g}" for g in self.group_ids}
        for other in self.chatters:
            if other is not chatter:
                a, b = sorted((chatter.login.user_id, other.login.user_id))
                ids.add(f"d:{a}:{b}")
        return ids

    async def stored(self, url: str) -> dict[str, list[dict[str, Any]]]:
        """Every conversation that got a message, read over HTTP from ``url`` (as one of its members)."""
        histories: dict[str, list[dict[str, Any]]] = {}
        conversation_ids = {cid for cid, _ in self.acked.values()} | {f"g:{g}" for g in self.group_ids}
        for cid in sorted(conversation_ids):
            reader = next(c for c in self.chatters if cid in self.conversations_of(c))
            histories[cid] = await full_history(url, reader.login.token, cid)
        return histories

    def check_stored(self, histories: dict[str, list[dict[str, Any]]]) -> None:
        acked = self.acked
        for cid, messages in histories.items():
            check_timeline(cid, messages, acked)
        stored_ids = {m["client_msg_id"] for messages in histories.values() for m in messages}
        unknown = [cmid for cmid in stored_ids if not cmid.startswith("~") and cmid not in self.intent]
        assert not unknown, f"stored messages nobody sent: {unknown[:5]}"

    async def check_database(self, spec: ClusterSpec, histories: dict[str, list[dict[str, Any]]]) -> None:
        """The rows in PostgreSQL itself are what the API served: same (seq, client id) per conversation."""
        rows = await pg_fetch(spec.store, "SELECT conversation_id, seq, client_msg_id FROM messages "
                                          "WHERE conversation_id = ANY($1::text[]) ORDER BY 1, 2",
                              list(histories), schema=spec.schema)
        in_db: dict[str, list[tuple[int, str]]] = {}
        for row in rows:
            in_db.setdefault(row["conversation_id"], []).append((int(row["seq"]), row["client_msg_id"]))
        for cid, messages in histories.items():
            served = [(int(m["seq"]), m["client_msg_id"]) for m in messages]
            assert in_db.get(cid, []) == served, f"{cid}: the database holds other rows than the API served"

    def seen(self, chatter: Chatter, cid: str) -> dict[int, str]:
        """seq -> client id of what this reader knows of a conversation: handed to it, or sent by it and acked."""
        known = {m.seq: m.client_msg_id for m in chatter.received if m.conversation_id == cid}
        for cmid, (acked_cid, seq) in chatter.acked.items():
            if acked_cid == cid:
                known.setdefault(seq, cmid)
        return known

    async def wait_readers(self, histories: dict[str, list[dict[str, Any]]], timeout: float) -> None:
        async def complete() -> bool:
            return all(len(self.seen(c, cid)) >= len(histories[cid])
                       for c in self.chatters for cid in self.conversations_of(c) if cid in histories)

        with contextlib.suppress(AssertionError):
            await eventually(complete, timeout, "every reader has every message")

    def check_readers(self, histories: dict[str, list[dict[str, Any]]]) -> None:
        for chatter in self.chatters:
            for cid in sorted(self.conversations_of(chatter)):
                if cid not in histories:
                    continue
                handed = [m.seq for m in chatter.received if m.conversation_id == cid]
                assert handed == sorted(set(handed)), f"{chatter.name} was handed {cid} out of order or twice"
                want = {int(m["seq"]): m["client_msg_id"] for m in histories[cid]}
                got = self.seen(chatter, cid)
                missing = sorted(set(want) - set(got))
                assert not missing, f"{chatter.name} never got {cid} seqs {missing[:10]} (of {len(want)})"
                assert got == want, f"{chatter.name} sees {cid} in another order than stored"

    async def resend_everything(self, timeout: float = 30.0) -> None:
        """Send every attempted id again, as a client that lost all its acks would: all duplicates, same place."""
        acked = self.acked

        async def again(cmid: str) -> None:
            chatter, (to, group_id) = self.intent[cmid]
            ack = await chatter.client.send(to=to, group_id=group_id, text=cmid, client_msg_id=cmid,
                                            timeout=timeout)
            assert ack.duplicate, f"{cmid} was stored again"
            if cmid in acked:
                assert (ack.conversation_id, ack.seq) == acked[cmid], f"{cmid} moved"

        slots = asyncio.Semaphore(32)

        async def limited(cmid: str) -> None:
            async with slots:
                await again(cmid)

        await asyncio.gather(*(limited(cmid) for cmid in list(self.intent)))


def pairs_and_group(chatters: Sequence[Chatter], group_id: int | None) -> dict[str, list[Target]]:
    """Chatter i talks with the chatter half-way round the ring (1:1), and every third message goes to the group."""
    n = len(chatters)
    targets: dict[str, list[Target]] = {}
    for i, chatter in enumerate(chatters):
        peer = chatters[(i + n // 2) % n] if n > 1 else chatter
        goals: list[Target] = [(peer.login.user_id, None), (peer.login.user_id, None)]
        if group_id is not None:
            goals.append((None, group_id))
        targets[chatter.name] = goals
    return targets


async def close_all(chatters: Sequence[Chatter]) -> None:
    for chatter in chatters:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(chatter.client.close(), 10)
