"""/metrics as an operator's Prometheus sees it: scraped over HTTP and read by prometheus_client's own text parser,
while users send messages over real sockets. The histograms move when messages flow; a bad request moves the
errors counter, a rate limit the refusals; the Grafana dashboard in docs/ asks only for metrics that exist."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from pica.client import PicaHttp
from pica.client.connection import RequestFailed
from pica.config import JobsConfig, MetricsConfig, MqttConfig, load_config
from pica.metrics import NodeMetrics
from tests.conftest import PASSWORD, TEST_RATES, Node, connect, make_config, new_user, running
from tests.mqtt.paho_client import Paho
from tests.mqtt.paho_client import new_user as mqtt_user
from tests.prometheus import Scrape, parse, scrape
from tests.webhooks.receiver import Receiver, write_config

ROOT = Path(__file__).resolve().parent.parent.parent
WAIT = 10.0


async def until(node: Node, check: Callable[[Scrape], bool]) -> Scrape:
    """Scrape until ``check(scrape)`` holds."""
    async with asyncio.timeout(WAIT):
        while True:
            metrics = await scrape(node.url)
            if check(metrics):
                return metrics
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("writer", ["process", "thread"])
async def test_messages_over_tcp_ws_and_http_move_the_send_commit_and_delivery_histograms(
        tmp_path: Path, writer: str) -> None:
    config = make_config(tmp_path)
    config = dataclasses.replace(config, sqlite=dataclasses.replace(config.sqlite, writer=writer),  # type: ignore[arg-type]
                                 metrics=MetricsConfig(loop_lag_interval=0.02))
    async with running(config) as node:
        alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
        before = await scrape(node.url)
        assert before.types["pica_send_ack_seconds"] == "histogram"
        assert before.types["pica_errors"] == "counter" and before.types["pica_connections"] == "gauge"

        # Alice on the TCP gateway, Bob in a browser tab (WebSocket): both are counted by transport.
        sender = await connect(node.url, alice, "tcp", tcp_port=node.tcp_port)
        reader = await connect(node.url, bob, "ws")
        try:
            connected = await scrape(node.url)
            assert connected.value("pica_connections", transport="tcp") == 1
            assert connected.value("pica_connections", transport="ws") == 1
            assert connected.value("pica_connections", transport="mqtt") == 0

            # Five messages from Alice, each acked after its commit and pushed to Bob's socket.
            for i in range(5):
                await sender.send(bob.user_id, {"text": f"hello {i}"}, client_msg_id=f"tcp-{i}")
            for _ in range(5):
                await reader.next_message()
            # And one more over HTTP, as a bot would send it.
            async with PicaHttp(node.url, token=alice.token) as http:
                await http.send(bob.user_id, "http-1", {"text": "from a script"})
            await reader.next_message()

            after = await until(node, lambda m: m.value(
                "pica_store_commit_operations_sum") - before.value("pica_store_commit_operations_sum") >= 6)
        finally:
            await sender.close()
            await reader.close()

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    # send -> ack, per transport: every ack observed once, in positive seconds.
    assert moved("pica_send_ack_seconds_count", transport="tcp") == 5
    assert moved("pica_send_ack_seconds_count", transport="http") == 1
    assert moved("pica_send_ack_seconds_count", transport="ws") == 0
    assert 0 < moved("pica_send_ack_seconds_sum", transport="tcp") < 5 * WAIT
    assert moved("pica_messages_acked_total") == 6
    # Commit -> a socket: six messages reached Bob's device, and the HTTP one Alice's TCP socket too (her other
    # device; the socket a message was sent on gets its ack instead).
    assert moved("pica_delivery_seconds_count") == 7
    # The writer's transactions: at least one commit holding the six appends, each timed, the fsync within it.
    commits = moved("pica_store_commit_seconds_count")
    assert commits >= 1 and moved("pica_store_commit_fsync_seconds_count") == commits
    assert moved("pica_store_commit_operations_count") == commits
    assert moved("pica_store_commit_operations_sum") >= 6
    assert 0 < moved("pica_store_commit_fsync_seconds_sum") <= moved("pica_store_commit_seconds_sum")
    # Buckets are cumulative: +Inf holds every observation.
    assert after.value("pica_store_commit_seconds_bucket", le="+Inf") == after.value("pica_store_commit_seconds_count")
    # The sampler ran while all this happened.
    assert after.value("pica_event_loop_lag_seconds_count") > 0
    # Every HTTP request by its route's template, never its raw path.
    assert moved("pica_http_request_duration_seconds_count", method="POST", route="/v1/messages") == 1
    routes = {s.labels["route"] for s in after.samples if s.name == "pica_http_request_duration_seconds_count"}
    assert "/metrics" in routes and not any(str(bob.user_id) in route for route in routes)
    # Nothing waits any more.
    assert after.value("pica_store_write_queue") == 0 and after.value("pica_sends_in_flight") == 0


async def test_error_responses_and_frames_are_counted_by_code_and_transport(tmp_path: Path) -> None:
    async with running(make_config(tmp_path)) as node:
        alice = await new_user(node.url, "alice")
        async with aiohttp.ClientSession() as session:
            # A script posts nonsense, then asks for a route that does not exist.
            headers = {"Authorization": f"Bearer {alice.token}"}
            async with session.post(node.url + "/v1/messages", data=b"{not json", headers=headers) as resp:
                assert resp.status == 400
            async with session.get(node.url + f"/nowhere/{uuid.uuid4().hex}") as resp:
                assert resp.status == 404
        # A socket sends to a user who does not exist.
        conn = await connect(node.url, alice, "tcp", tcp_port=node.tcp_port)
        try:
            with pytest.raises(RequestFailed):
                await conn.send(2**40, {"text": "anyone there?"})
        finally:
            await conn.close()
        metrics = await scrape(node.url)

    assert metrics.value("pica_errors_total", code="bad_request", transport="http") == 1
    assert metrics.value("pica_errors_total", code="not_found", transport="http") == 1
    assert metrics.value("pica_errors_total", code="user_not_found", transport="tcp") == 1
    # The unknown path is one bounded series, whatever was asked for.
    assert metrics.value("pica_http_request_duration_seconds_count", method="GET", route="unmatched") == 1
    assert metrics.value("pica_refusals_total") == 0  # none of these was a limit


async def test_a_rate_limited_sender_moves_the_refusals_of_that_limit(tmp_path: Path) -> None:
    config = dataclasses.replace(make_config(tmp_path), rates=dataclasses.replace(TEST_RATES, sends_per_user="3/min"))
    async with running(config) as node:
        alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
        conn = await connect(node.url, alice, "ws")
        try:
            for i in range(3):
                await conn.send(bob.user_id, {"text": f"ok {i}"})
            with pytest.raises(RequestFailed) as refused:
                await conn.send(bob.user_id, {"text": "one too many"})
            assert refused.value.code == "rate_limited"
        finally:
            await conn.close()
        # The same user tries again over HTTP: refused by the same limit.
        async with aiohttp.ClientSession() as session, session.post(
                node.url + "/v1/messages", json={"to": bob.user_id, "client_msg_id": "h", "body": {"text": "x"}},
                headers={"Authorization": f"Bearer {alice.token}"}) as resp:
            assert resp.status == 429
        metrics = await scrape(node.url)

    assert metrics.value("pica_refusals_total", limit="rates.sends_per_user") == 2
    assert metrics.value("pica_errors_total", code="rate_limited", transport="ws") == 1
    assert metrics.value("pica_errors_total", code="rate_limited", transport="http") == 1
    assert metrics.value("pica_send_ack_seconds_count", transport="ws") == 3


async def test_an_oversized_websocket_frame_is_a_refusal_of_max_frame_bytes(tmp_path: Path) -> None:
    async with running(make_config(tmp_path, max_frame_bytes=1024)) as node:
        alice = await new_user(node.url, "alice")
        async with aiohttp.ClientSession() as session, session.ws_connect(
                node.url.replace("http", "ws") + "/v1/ws", headers={"Authorization": f"Bearer {alice.token}"}) as ws:
            assert json.loads((await ws.receive()).data)["t"] == "ready"
            await ws.send_str(json.dumps({"t": "ping", "id": 1, "pad": "x" * 4096}))
            closed = await ws.receive()
            assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 1009
        metrics = await until(node, lambda m: m.value("pica_refusals_total") > 0)
    assert metrics.value("pica_refusals_total", limit="limits.max_frame_bytes") == 1


def series_names(metrics: Scrape) -> set[str]:
    """The series names a query may use: every sample's, and those of families without samples yet (a labelled
    counter before its first increment)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    found = {s.name for s in metrics.samples}
    for family, kind in metrics.types.items():
        found |= {family + suffix for suffix in suffixes.get(kind, ("",))}
    return found


async def test_the_grafana_dashboard_asks_only_for_metrics_that_exist(tmp_path: Path) -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 12
    # What a single node exports after some traffic, and what cluster mode adds (a node's metrics with a bus).
    async with running(make_config(tmp_path)) as node:
        alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
        async with PicaHttp(node.url, token=alice.token) as http:
            await http.send(bob.user_id, "m1", {"text": "hi"})
        exported = series_names(await scrape(node.url))
    clustered = NodeMetrics()
    clustered.sources.cluster = dict
    exported |= series_names(parse(clustered.render().decode()))

    for expr in exprs:
        names = set(re.findall(r"\b((?:pica|process|python)_[a-z_]+)\b", expr))
        assert names, f"no metric in {expr!r}"
        assert names <= exported, f"{expr!r} names {sorted(names - exported)}, which /metrics does not export"


async def test_a_device_on_mqtt_is_counted_like_any_other(tmp_path: Path) -> None:
    config = dataclasses.replace(make_config(tmp_path), mqtt=MqttConfig(port=0))
    async with running(config) as node:
        alice, bob = await mqtt_user(node.url, "alice"), await mqtt_user(node.url, "bob")
        sensor = Paho(node.server.mqtt_port, alice.username, PASSWORD)
        phone = Paho(node.server.mqtt_port, bob.username, PASSWORD)
        assert await asyncio.to_thread(sensor.connect) == 0 and await asyncio.to_thread(phone.connect) == 0
        try:
            assert await asyncio.to_thread(phone.subscribe) == [1]
            assert (await scrape(node.url)).value("pica_connections", transport="mqtt") == 2
            for i in range(3):  # each waits for its PUBACK, written after the commit
                await asyncio.to_thread(sensor.send, f"send/u/{bob.user_id}", {"text": f"reading {i}"})
            assert len(await asyncio.to_thread(phone.receive, 3)) == 3
            metrics = await scrape(node.url)
        finally:
            sensor.close()
            phone.close()
    assert metrics.value("pica_send_ack_seconds_count", transport="mqtt") == 3
    assert metrics.value("pica_delivery_seconds_count") == 3
    assert metrics.value("pica_frames_in_total") >= 5  # two CONNECTs, a SUBSCRIBE, three PUBLISHes


def start_worker(toml: Path, data_dir: Path, metrics_port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pica", "worker", "--config", str(toml), "--data-dir",
                             str(data_dir), "--metrics-port", str(metrics_port)])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_pica_worker_serves_its_job_metrics(tmp_path: Path) -> None:
    """A node that leaves its webhooks to a ``pica worker`` process; the worker's own /metrics shows what it
    delivered (its counters), the queue it shares, and its process, nothing of a gateway it does not have."""
    receiver = Receiver()
    await receiver.start()
    toml = write_config(tmp_path / "pica.toml", receiver.url, poll_interval=0.1)
    config = dataclasses.replace(load_config(config_file=toml), port=0, tcp_port=0, data_dir=tmp_path / "data",
                                 auth=make_config(tmp_path).auth, rates=TEST_RATES,
                                 jobs=JobsConfig(run_in_node=False, poll_interval=0.1))
    port = free_port()
    worker = None
    try:
        async with running(config) as node:
            worker = start_worker(toml, tmp_path / "data", port)
            alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
            async with PicaHttp(node.url, token=alice.token) as http:
                await http.send(bob.user_id, "m1", {"text": "to the webhook"})
            await receiver.wait_for(lambda: len(receiver.received) == 1)
            url = f"http://127.0.0.1:{port}"
            async with asyncio.timeout(WAIT):
                while True:
                    with contextlib.suppress(aiohttp.ClientConnectionError):
                        metrics = await scrape(url)
                        if metrics.value("pica_jobs_done_total") == 1:
                            break
                    await asyncio.sleep(0.1)
        assert metrics.has("pica_jobs_queued") and metrics.value("pica_jobs_dead") == 0
        assert metrics.value("process_cpu_seconds_total") > 0
        assert not metrics.has("pica_connections") and not metrics.has("pica_send_ack_seconds_count")
        worker.terminate()
        assert await asyncio.to_thread(worker.wait, 15) == 0
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait(10)
        await receiver.stop()
