"""A Redis Cluster of a test's own: three primaries with one replica each, on free ports under a temporary directory,
started with ``redis-server --cluster-enabled yes`` and joined with ``redis-cli --cluster create``, torn down after.

Failover helpers act as an operator (``CLUSTER FAILOVER`` on a replica) or as a crash (``kill -9`` of a primary, after
which the cluster promotes its replica once ``cluster-node-timeout`` has passed).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.cluster.conftest import START_TIMEOUT, require_binaries

NODE_TIMEOUT_MS = 1000
"""How long a primary may be unreachable before its replica takes over (small: the tests wait for it)."""


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10_000 > 65_535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class PrivateRedisCluster:
    def __init__(self, directory: Path, primaries: int = 3, replicas: int = 1) -> None:
        require_binaries("redis-server", "redis-cli")
        self.directory = directory
        self.ports: list[int] = []
        while len(self.ports) < primaries * (1 + replicas):
            port = _free_cluster_port()
            if port not in self.ports:
                self.ports.append(port)
        self.replicas = replicas
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """The bus URL a node is given: every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def client(self, port: int) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def start(self) -> None:
        for port in self.ports:
            self._launch(port)
        for port in self.ports:
            self._wait_ping(port)
        result = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{port}" for port in self.ports),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
        self.wait_healthy()
        self.wait_replicas_synced()

    def wait_replicas_synced(self, timeout: float = START_TIMEOUT) -> None:
        """Every replica (as many as asked for) is attached and has its primary's data: a primary killed before that
        could not be replaced."""
        deadline = time.monotonic() + timeout
        expected = len(self.ports) * self.replicas // (1 + self.replicas)
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                replicas = [n["port"] for n in self.nodes() if n["role"] == "replica"]
                links = [self.client(port).info("replication").get("master_link_status") for port in replicas]
                if len(links) == expected and all(link == "up" for link in links):
                    return
            time.sleep(0.05)
        raise AssertionError(f"the replicas did not sync within {timeout} s")

    def _launch(self, port: int) -> None:
        home = self.directory / str(port)
        home.mkdir(parents=True, exist_ok=True)
        with open(home / "redis.log", "ab") as log:
            self.procs[port] = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                 "--save", "", "--appendonly", "no", "--dir", str(home),
                 # Replicas sync at once (no 5 s wait for more replicas), and a replica may always take over.
                 "--repl-diskless-sync-delay", "0", "--cluster-replica-validity-factor", "0"],
                stdout=log, stderr=log,
            )

    def _wait_ping(self, port: int) -> None:
        import redis

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if self.client(port).ping():
                    return
            proc = self.procs[port]
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server {port} exited with {proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError(f"redis-server {port} did not start")

    def nodes(self, via: int | None = None) -> list[dict[str, Any]]:
        """``CLUSTER NODES`` as seen by a live node: port, id, role, master id, slot ranges."""
        port = via if via is not None else next(p for p in self.ports if self.alive(p))
        found = []
        for address, node in self.client(port).execute_command("CLUSTER NODES").items():
            flags = node["flags"]
            found.append({
                "id": node["node_id"], "port": int(address.rsplit(":", 1)[1]),
                "role": "primary" if "master" in flags else "replica", "failed": "fail" in flags,
                "master": node["master_id"],
                "slots": [(int(span[0]), int(span[-1])) for span in node["slots"]],
            })
        return found

    def alive(self, port: int) -> bool:
        proc = self.procs.get(port)
        return proc is not None and proc.poll() is None

    def primaries(self) -> list[int]:
        return sorted(n["port"] for n in self.nodes() if n["role"] == "primary" and not n["failed"] and n["slots"])

    def primary_of(self, name: bytes | str) -> int:
        """The port of the primary owning a key's or shard channel's slot."""
        slot = int(self.client(self.primaries()[0]).execute_command("CLUSTER KEYSLOT", name))
        for node in self.nodes():
            if node["role"] != "primary" or node["failed"]:
                continue
            if any(low <= slot <= high for low, high in node["slots"]):
                return int(node["port"])
        raise AssertionError(f"no primary serves slot {slot}")

    def replica_of(self, primary: int) -> int:
        nodes = self.nodes()
        primary_id = next(n["id"] for n in nodes if n["port"] == primary)
        return next(n["port"] for n in nodes if n["master"] == primary_id and not n["failed"])

    def failover(self, primary: int, timeout: float = 20.0) -> int:
        """An operator's failover: the primary's replica takes over (no write lost). Returns the new primary."""
        replica = self.replica_of(primary)
        self.client(replica).execute_command("CLUSTER FAILOVER")
        self._wait_primary(replica, timeout)
        return replica

    def kill_primary(self, primary: int, timeout: float = 20.0) -> int:
        """A crash: kill -9 of the primary; its replica is promoted after the node timeout. Returns it."""
        replica = self.replica_of(primary)
        self.procs[primary].send_signal(signal.SIGKILL)
        self.procs[primary].wait(10)
        self._wait_primary(replica, timeout)
        return replica

    def _wait_primary(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                role = self.client(port).execute_command("ROLE")[0]
                if role in (b"master", "master"):
                    self.wait_healthy(timeout=max(1.0, deadline - time.monotonic()))
                    return
            time.sleep(0.05)
        raise AssertionError(f"redis {port} did not become a primary within {timeout} s")

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Every live node reports ``cluster_state:ok`` and agrees on the primaries."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                live = [p for p in self.ports if self.alive(p)]
                states = [self.client(p).execute_command("CLUSTER INFO")["cluster_state"] for p in live]
                views = {tuple(self.primaries_via(p)) for p in live}
                if set(states) == {"ok"} and len(views) == 1:
                    return
            time.sleep(0.05)
        raise AssertionError(f"the Redis Cluster is not healthy within {timeout} s")

    def primaries_via(self, port: int) -> list[int]:
        return sorted(n["port"] for n in self.nodes(port) if n["role"] == "primary" and not n["failed"] and n["slots"])

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)

