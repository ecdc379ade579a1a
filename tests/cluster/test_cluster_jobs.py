"""The job queue in cluster mode: two nodes on one PostgreSQL schema queue webhook jobs with their messages, and
every job runs once, whether the nodes' own workers claim them (FOR UPDATE SKIP LOCKED: both poll the one queue)
or ``pica worker`` processes do."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from pica.client import PicaHttp
from tests.cluster.conftest import Cluster, register
from tests.webhooks.receiver import SECRET, Receiver, verify, write_config

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

MESSAGES = 40


async def exchange(cluster: Cluster, receiver: Receiver) -> None:
    n1, n2 = cluster.nodes[:2]
    alice, bob = await register(n1.url, "a"), await register(n2.url, "b")

    async def send(url: str, token: str, to: int, i: int) -> None:
        async with PicaHttp(url, token=token) as http:
            await http.request("POST", "/v1/messages", json={"to": to, "client_msg_id": f"m{i}",
                                                            "body": {"text": f"n{i}"}})

    await asyncio.gather(*(send(n1.url, alice.token, bob.user_id, i) if i % 2 else
                           send(n2.url, bob.token, alice.user_id, i) for i in range(MESSAGES)))
    await receiver.wait_for(lambda: len(receiver.unique()) == MESSAGES, timeout=30)
    await asyncio.sleep(1.0)  # two pollers, one queue: nothing is delivered twice
    assert len(receiver.received) == MESSAGES
    assert sorted(r.json["data"]["seq"] for r in receiver.received) == list(range(1, MESSAGES + 1))
    for got in receiver.received:
        verify(SECRET, got.headers, got.body)


def start_worker(cluster: Cluster, config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "pica", "worker", "--config", str(config), "--store", cluster.spec.store],
            stdout=log, stderr=log, env=cluster.spec.env())


async def test_two_nodes_run_each_job_once(cluster: Cluster, tmp_path: Path) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        config = write_config(tmp_path / "pica.toml", receiver.url, poll_interval=0.1, concurrency=4)
        cluster.start("n1", "n2", extra=["--config", str(config)])
        await exchange(cluster, receiver)
    finally:
        await receiver.stop()


async def test_pica_worker_processes_run_the_jobs(cluster: Cluster, tmp_path: Path) -> None:
    receiver = Receiver()
    await receiver.start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        config = write_config(tmp_path / "pica.toml", receiver.url, poll_interval=0.1, concurrency=4)
        cluster.start("n1", "n2", extra=["--config", str(config)], env={"PICA_JOBS_RUN_IN_NODE": "false"})
        workers.extend(start_worker(cluster, config, tmp_path / f"worker{i}.log") for i in range(2))
        await exchange(cluster, receiver)
        for worker in workers:
            worker.terminate()
            assert worker.wait(15) == 0
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
        await receiver.stop()
