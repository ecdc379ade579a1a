"""The gateway's connection rules: keep-alive, the in-flight window, QoS 0 refused, pipelined packets, client id
take-over, session revocation. Misbehaving clients are raw sockets driven by the codec; the rest is paho-mqtt."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from pica.config import MqttConfig
from pica.protocol import mqtt as m
from tests.conftest import PASSWORD, Node, api, api_error, make_config, running
from tests.mqtt.paho_client import Paho, User, new_user
from tests.mqtt.raw_client import Raw, connect_packet


def mqtt_node_with(tmp_path: Path, **mqtt: int) -> AbstractAsyncContextManager[Node]:
    return running(dataclasses.replace(make_config(tmp_path, auth_timeout=2.0), mqtt=MqttConfig(port=0, **mqtt)))


async def test_keep_alive_closes_after_one_and_a_half_times(tmp_path: Path) -> None:
    async with mqtt_node_with(tmp_path, min_keep_alive=1) as node:
        alice = await new_user(node.url, "a")
        raw = Raw(node.server.mqtt_port)
        sent_at = time.monotonic()  # the server's last packet from us is no earlier than this
        raw.send(connect_packet(alice, keep_alive=1))
        assert await asyncio.to_thread(raw.read) == m.ConnAck(0)
        waited = await asyncio.to_thread(raw.closed_within, 8, sent_at)
        assert 1.5 <= waited < 6  # 1.5 s, plus up to one sweep interval (auth_timeout / 4) and a busy machine


async def test_pipelined_packets_before_connack_are_handled_after_it(mqtt_node: Node) -> None:
    alice = await new_user(mqtt_node.url, "a")
    raw = Raw(mqtt_node.server.mqtt_port)
    raw.send(connect_packet(alice), m.Subscribe(1, (("msg/#", 1),)), m.PingReq())
    assert await asyncio.to_thread(raw.read) == m.ConnAck(0)
    assert await asyncio.to_thread(raw.read) == m.SubAck(1, (1,))
    assert await asyncio.to_thread(raw.read) == m.PingResp()


async def sender_and_raw_subscriber(node: Node) -> tuple[Paho, User, Raw]:
    """Alice on paho, and bob on a raw socket subscribed to all his messages at QoS 1 (acknowledging nothing)."""
    alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
    raw = Raw(node.server.mqtt_port)
    raw.send(connect_packet(bob), m.Subscribe(1, (("msg/#", 1),)))
    assert await asyncio.to_thread(raw.read) == m.ConnAck(0)
    assert await asyncio.to_thread(raw.read) == m.SubAck(1, (1,))
    a = Paho(node.server.mqtt_port, alice.username, PASSWORD)
    assert await asyncio.to_thread(a.connect) == 0
    return a, bob, raw


async def test_a_subscriber_a_little_behind_gets_the_queued_messages_as_it_acknowledges(tmp_path: Path) -> None:
    async with mqtt_node_with(tmp_path, max_inflight_messages=3, max_queued_messages=2) as node:
        a, bob, raw = await sender_and_raw_subscriber(node)
        try:
            for i in range(5):  # three in flight, two waiting behind them
                await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"text": str(i)})
            first = [await asyncio.to_thread(raw.read) for _ in range(3)]
            assert all(isinstance(p, m.Publish) for p in first)
            raw.send(*(m.PubAck(p.packet_id) for p in first if isinstance(p, m.Publish) and p.packet_id))
            rest = [await asyncio.to_thread(raw.read) for _ in range(2)]
            texts = [json.loads(p.payload)["body"]["text"] for p in first + rest if isinstance(p, m.Publish)]
            assert texts == ["0", "1", "2", "3", "4"]
            assert node.server.services is not None and node.server.services.metrics.slow_consumers == 0
        finally:
            a.close()


async def test_a_subscriber_past_the_window_and_the_queue_is_cut(tmp_path: Path) -> None:
    async with mqtt_node_with(tmp_path, max_inflight_messages=3, max_queued_messages=2) as node:
        a, bob, raw = await sender_and_raw_subscriber(node)
        try:
            for i in range(6):  # never acknowledged by bob: three in flight, two queued, one too many
                await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"text": str(i)})
            assert await asyncio.to_thread(raw.closed_within, 5) < 5
            assert node.server.services is not None and node.server.services.metrics.slow_consumers == 1
        finally:
            a.close()


async def test_a_qos_0_send_closes_the_connection_and_stores_nothing(mqtt_node: Node) -> None:
    alice, bob = await new_user(mqtt_node.url, "a"), await new_user(mqtt_node.url, "b")
    a = Paho(mqtt_node.server.mqtt_port, alice.username, PASSWORD)
    assert await asyncio.to_thread(a.connect) == 0
    try:
        a.client.publish(f"send/u/{bob.user_id}", b'{"client_msg_id": "q0", "body": {"text": "x"}}', qos=0)
        assert await asyncio.to_thread(a.disconnected.wait, 10)
    finally:
        a.client.loop_stop()
    cid = f"d:{min(alice.user_id, bob.user_id)}:{max(alice.user_id, bob.user_id)}"
    assert await api_error(mqtt_node, bob, "GET", f"/v1/conversations/{cid}/messages") == (
        404, "conversation_not_found")  # nothing was ever stored between them


async def test_the_same_client_id_takes_the_session_over(mqtt_node: Node) -> None:
    alice = await new_user(mqtt_node.url, "a")
    first = Paho(mqtt_node.server.mqtt_port, alice.username, PASSWORD, client_id="alice-phone")
    second = Paho(mqtt_node.server.mqtt_port, alice.username, PASSWORD, client_id="alice-phone")
    try:
        assert await asyncio.to_thread(first.connect) == 0
        first.client.reconnect_delay_set(60, 60)  # so that paho does not take it back at once
        assert await asyncio.to_thread(second.connect) == 0
        assert await asyncio.to_thread(first.disconnected.wait, 10)
        assert not second.disconnected.is_set()
    finally:
        first.client.loop_stop()
        second.close()


async def test_revoking_the_mqtt_login_session_closes_the_socket(mqtt_node: Node) -> None:
    alice = await new_user(mqtt_node.url, "a")
    a = Paho(mqtt_node.server.mqtt_port, alice.username, PASSWORD)
    assert await asyncio.to_thread(a.connect) == 0
    try:
        sessions = (await api(mqtt_node, alice, "GET", "/v1/sessions"))["sessions"]
        [mqtt_session] = [s for s in sessions if s["user_agent"] == "mqtt"]
        await api(mqtt_node, alice, "DELETE", f"/v1/sessions/{mqtt_session['session_id']}")
        assert await asyncio.to_thread(a.disconnected.wait, 10)
    finally:
        a.client.loop_stop()


async def test_the_session_a_password_connect_opened_ends_with_the_connection(mqtt_node: Node) -> None:
    alice = await new_user(mqtt_node.url, "a")
    for _ in range(3):  # a device reconnecting with its password does not pile up sessions
        a = Paho(mqtt_node.server.mqtt_port, alice.username, PASSWORD)
        assert await asyncio.to_thread(a.connect) == 0
        await asyncio.to_thread(a.close)

    async def mqtt_sessions() -> int:
        sessions = (await api(mqtt_node, alice, "GET", "/v1/sessions"))["sessions"]
        return sum(s["user_agent"] == "mqtt" for s in sessions)

    for _ in range(50):
        if await mqtt_sessions() == 0:
            break
        await asyncio.sleep(0.1)
    assert await mqtt_sessions() == 0


async def test_a_replay_longer_than_the_window_waits_for_acknowledgements(tmp_path: Path) -> None:
    async with mqtt_node_with(tmp_path, max_inflight_messages=4) as node:
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        a = Paho(node.server.mqtt_port, alice.username, PASSWORD)
        assert await asyncio.to_thread(a.connect) == 0
        for i in range(15):  # bob is offline
            await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"text": str(i)}, f"w-{i}")
        b = Paho(node.server.mqtt_port, bob.username, PASSWORD, client_id="bob-1", clean_session=False)
        assert await asyncio.to_thread(b.connect) == 0
        try:
            assert await asyncio.to_thread(b.subscribe, "msg/#") == [1]
            for i in range(15, 20):  # live, during or after the replay: after it in seq order either way
                await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"text": str(i)}, f"w-{i}")
            got = await asyncio.to_thread(b.receive, 20)
            assert [frame["seq"] for _, frame in got] == list(range(1, 21))
            assert not b.disconnected.is_set()
        finally:
            a.close()
            b.close()


def connect_once(port: int, who: User, password: bytes) -> m.Packet:
    raw = Raw(port)
    raw.send(m.Connect("", True, 30, who.username, password))
    return raw.read()


async def test_failed_logins_are_counted_by_the_login_limits(mqtt_node: Node) -> None:
    alice = await new_user(mqtt_node.url, "a")
    port = mqtt_node.server.mqtt_port
    codes = [(await asyncio.to_thread(connect_once, port, alice, b"wrong")) for _ in range(12)]
    # rates.login_failures_per_account (10 per 15 min): then "server unavailable", even for the right password
    assert codes[:10] == [m.ConnAck(m.BAD_USERNAME_OR_PASSWORD)] * 10
    assert codes[10:] == [m.ConnAck(m.SERVER_UNAVAILABLE)] * 2
    assert await asyncio.to_thread(connect_once, port, alice, PASSWORD.encode()) == m.ConnAck(m.SERVER_UNAVAILABLE)


async def test_a_ban_closes_the_connection_and_refuses_the_next_connect(mqtt_node: Node) -> None:
    alice = await new_user(mqtt_node.url, "a")
    a = Paho(mqtt_node.server.mqtt_port, alice.username, PASSWORD)
    assert await asyncio.to_thread(a.connect) == 0
    a.client.reconnect_delay_set(60, 60)
    try:
        await mqtt_node.server.store.set_banned(alice.user_id, True)
        assert await asyncio.to_thread(a.disconnected.wait, 10)  # by the ban sweep
    finally:
        a.client.loop_stop()
    assert await asyncio.to_thread(connect_once, mqtt_node.server.mqtt_port, alice, PASSWORD.encode()) == \
        m.ConnAck(m.NOT_AUTHORIZED)
