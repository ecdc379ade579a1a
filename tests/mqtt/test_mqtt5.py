"""MQTT 5.0 clients: paho-mqtt speaking 5.0 sends and receives 1:1 and in a group, a refused send is answered with
the reason code in its PUBACK and the connection stays; raw 5.0 sockets look at the exact CONNACK properties, the
client's Receive Maximum, and the DISCONNECT reason codes of the server's closes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from pica.config import MqttConfig
from pica.protocol import mqtt as m
from tests.conftest import PASSWORD, TEST_RATES, Node, api, make_config, running
from tests.mqtt.paho_client import Paho, User, new_user
from tests.mqtt.raw_client import Raw, connect_packet

R = m.Reason
V5 = m.MQTT5_LEVEL


def node_with(tmp_path: Path, sends_per_user: str = TEST_RATES.sends_per_user, **mqtt_limits: int
              ) -> AbstractAsyncContextManager[Node]:
    config = make_config(tmp_path, auth_timeout=2.0)
    return running(dataclasses.replace(config, mqtt=MqttConfig(port=0, **mqtt_limits),
                                       rates=dataclasses.replace(TEST_RATES, sends_per_user=sends_per_user)))


async def connected5(node: Node, who: User, **kwargs: Any) -> Paho:
    client = Paho(node.server.mqtt_port, who.username, PASSWORD, protocol=mqtt.MQTTv5, **kwargs)
    assert await asyncio.to_thread(client.connect) == 0
    return client


def direct(a: User, b: User) -> str:
    return f"d:{min(a.user_id, b.user_id)}:{max(a.user_id, b.user_id)}"


async def raw5(node: Node, who: User, **connect: Any) -> tuple[Raw, m.ConnAck]:
    raw = Raw(node.server.mqtt_port, V5)
    raw.send(connect_packet(who, level=V5, **connect))
    connack = await asyncio.to_thread(raw.read)
    assert isinstance(connack, m.ConnAck)
    return raw, connack


async def test_one_to_one_and_group_over_mqtt5(mqtt_node: Node) -> None:
    alice, bob, carol = [await new_user(mqtt_node.url, p) for p in ("a", "b", "c")]
    group = await api(mqtt_node, alice, "POST", "/v1/groups", json={"name": "g", "members": [bob.user_id,
                                                                                             carol.user_id]})
    a, b, c = [await connected5(mqtt_node, who) for who in (alice, bob, carol)]
    try:
        assert a.connack_properties["ReceiveMaximum"] == 256  # limits.max_inflight_requests
        assert a.connack_properties["MaximumQoS"] == 1 and a.connack_properties["RetainAvailable"] == 0
        assert await asyncio.to_thread(b.subscribe, "msg/#") == [1]
        assert await asyncio.to_thread(c.subscribe, f"msg/g:{group['group_id']}") == [1]
        assert await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"text": "hi bob"}, "m5-1") == 0
        [(topic, frame)] = await asyncio.to_thread(b.receive, 1)
        assert topic == f"msg/{direct(alice, bob)}"
        assert frame["client_msg_id"] == "m5-1" and frame["body"] == {"text": "hi bob"} and frame["seq"] == 1
        assert await asyncio.to_thread(a.send, f"send/g/{group['group_id']}", {"text": "hi all"}) == 0
        for client in (b, c):
            [(topic, frame)] = await asyncio.to_thread(client.receive, 1)
            assert topic == f"msg/g:{group['group_id']}" and frame["body"] == {"text": "hi all"}
    finally:
        for client in (a, b, c):
            client.close()


async def test_refused_sends_get_their_reason_code_and_the_connection_stays(mqtt_node: Node) -> None:
    alice, bob, carol = [await new_user(mqtt_node.url, p) for p in ("a", "b", "c")]
    await api(mqtt_node, carol, "PUT", f"/v1/blocks/{alice.user_id}")
    a = await connected5(mqtt_node, alice)
    try:
        refused = {
            "not JSON": await asyncio.to_thread(a.publish, f"send/u/{bob.user_id}", b"hello"),
            "a bad body": await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"nope": 1}),
            "nobody": await asyncio.to_thread(a.send, f"send/u/{bob.user_id + 10_000}", {"text": "x"}),
            "not a send topic": await asyncio.to_thread(a.send, f"msg/{direct(alice, bob)}", {"text": "x"}),
            "blocked": await asyncio.to_thread(a.send, f"send/u/{carol.user_id}", {"text": "x"}),
        }
        assert refused == {"not JSON": R.PAYLOAD_FORMAT_INVALID, "a bad body": R.PAYLOAD_FORMAT_INVALID,
                           "nobody": R.TOPIC_NAME_INVALID, "not a send topic": R.TOPIC_NAME_INVALID,
                           "blocked": R.NOT_AUTHORIZED}
        assert await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"text": "still connected"}) == 0
        assert not a.disconnected.is_set()
    finally:
        a.close()
    page = await api(mqtt_node, bob, "GET", f"/v1/conversations/{direct(alice, bob)}/messages")
    assert [msg["body"]["text"] for msg in page["messages"]] == ["still connected"]


async def test_a_send_over_the_rate_limit_gets_quota_exceeded(tmp_path: Path) -> None:
    async with node_with(tmp_path, sends_per_user="2/min") as node:
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        a = await connected5(node, alice)
        try:
            codes = [await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"text": str(i)}) for i in range(3)]
            assert codes == [0, 0, R.QUOTA_EXCEEDED]
            assert not a.disconnected.is_set()
        finally:
            a.close()


async def test_the_connack_announces_the_servers_limits(tmp_path: Path) -> None:
    async with node_with(tmp_path, min_keep_alive=5, max_packet_bytes=1000) as node:
        alice = await new_user(node.url, "a")
        _, connack = await raw5(node, alice, keep_alive=2, client_id="")
        assert connack.return_code == R.SUCCESS and not connack.session_present
        props = connack.properties
        assert props.assigned_client_id is not None and props.assigned_client_id.startswith("auto-")
        assert dataclasses.replace(props, assigned_client_id=None) == m.Properties(
            server_keep_alive=5,  # raised to mqtt.min_keep_alive
            receive_maximum=256, topic_alias_maximum=0, maximum_qos=1, retain_available=0,
            maximum_packet_size=1003,  # the first byte, 2 length bytes, 1000
            wildcard_available=1, subscription_ids_available=0, shared_available=0)
        _, kept = await raw5(node, alice, keep_alive=30)
        assert kept.properties.server_keep_alive is None  # within the bounds: the client's own


async def test_subscriptions_and_their_reason_codes(mqtt_node: Node) -> None:
    alice = await new_user(mqtt_node.url, "a")
    raw, _ = await raw5(mqtt_node, alice)
    no_local = 0b100
    raw.send(m.Subscribe(1, (("msg/#", 1 | no_local), ("$share/g/msg/#", 1), ("#", 1), ("msg/" + "x" * 200, 1),
                             (f"msg/u:{alice.user_id}", 0))))
    assert await asyncio.to_thread(raw.read) == m.SubAck(1, (
        R.GRANTED_QOS_1, R.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED, R.NOT_AUTHORIZED, R.TOPIC_FILTER_INVALID,
        R.SUCCESS))
    raw.send(m.Unsubscribe(2, ("msg/#", "msg/+")))
    assert await asyncio.to_thread(raw.read) == m.UnsubAck(2, (R.SUCCESS, R.NO_SUBSCRIPTION_EXISTED))


async def test_the_clients_receive_maximum_bounds_what_it_is_sent_unacknowledged(mqtt_node: Node) -> None:
    alice, bob = await new_user(mqtt_node.url, "a"), await new_user(mqtt_node.url, "b")
    raw, _ = await raw5(mqtt_node, bob, properties=m.Properties(receive_maximum=2))
    raw.send(m.Subscribe(1, (("msg/#", 1),)))
    assert await asyncio.to_thread(raw.read) == m.SubAck(1, (1,))
    a = await connected5(mqtt_node, alice)
    try:
        for i in range(4):
            assert await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"text": str(i)}) == 0
        first = [await asyncio.to_thread(raw.read) for _ in range(2)]
        raw.sock.settimeout(0.5)
        try:
            more = raw.sock.recv(65536)
        except TimeoutError:
            more = b""
        assert more == b""  # two unacknowledged: the third waits
        raw.sock.settimeout(10)
        assert all(isinstance(p, m.Publish) for p in first)
        publish = first[0]
        assert isinstance(publish, m.Publish) and publish.packet_id is not None
        assert publish.properties == m.Properties(payload_format=1, content_type="application/json")
        raw.send(m.PubAck(publish.packet_id))
        third = await asyncio.to_thread(raw.read)
        assert isinstance(third, m.Publish) and json.loads(third.payload)["body"] == {"text": "2"}
    finally:
        a.close()


async def test_what_the_connack_said_is_not_taken_closes_with_its_reason_code(mqtt_node: Node) -> None:
    alice, bob = await new_user(mqtt_node.url, "a"), await new_user(mqtt_node.url, "b")
    payload = json.dumps({"client_msg_id": "x", "body": {"text": "x"}}).encode()
    topic = f"send/u/{bob.user_id}"
    closing: list[tuple[m.Packet, m.Reason]] = [
        (m.Publish(topic, payload, 2, 1), R.QOS_NOT_SUPPORTED),
        (m.Publish(topic, payload, 1, 1, retain=True), R.RETAIN_NOT_SUPPORTED),
        (m.Publish(topic, payload, 1, 1, properties=m.Properties(topic_alias=1)), R.TOPIC_ALIAS_INVALID),
        (m.Publish(topic, payload, 0), R.IMPLEMENTATION_SPECIFIC_ERROR),  # QoS 0: a send needs its PUBACK
        (m.Subscribe(1, (("msg/#", 1),), m.Properties(subscription_ids=(1,))),
         R.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED),
        (m.Auth(R.RE_AUTHENTICATE), R.PROTOCOL_ERROR),
    ]
    for packet, reason in closing:
        raw, _ = await raw5(mqtt_node, alice)
        raw.send(packet)
        disconnect = await asyncio.to_thread(raw.read)
        assert isinstance(disconnect, m.Disconnect) and disconnect.reason_code == reason, packet
        assert disconnect.properties.reason_string
        assert await asyncio.to_thread(raw.closed_within, 5) < 5


async def test_connects_refused_in_mqtt5(mqtt_node: Node) -> None:
    alice = await new_user(mqtt_node.url, "a")
    refused: list[tuple[dict[str, Any], m.Reason]] = [
        ({"will_topic": "send/u/1", "will_qos": 1, "will_retain": True}, R.RETAIN_NOT_SUPPORTED),
        ({"will_topic": "send/u/1", "will_qos": 2}, R.QOS_NOT_SUPPORTED),
        ({"properties": m.Properties(auth_method="SCRAM-SHA-1")}, R.BAD_AUTHENTICATION_METHOD),
        ({"client_id": "x" * 65}, R.CLIENT_IDENTIFIER_NOT_VALID),
        ({"password": b"wrong"}, R.BAD_USER_NAME_OR_PASSWORD),
    ]
    for connect, reason in refused:
        _, connack = await raw5(mqtt_node, alice, **connect)
        assert connack.return_code == reason, connect
    # a will of QoS 0 or 1 is accepted, and never published
    _, connack = await raw5(mqtt_node, alice, will_topic="send/u/1", will_payload=b"bye", will_qos=1,
                            will_properties=m.Properties(will_delay=0))
    assert connack.return_code == R.SUCCESS


async def test_server_closes_say_why(tmp_path: Path) -> None:
    async with node_with(tmp_path, min_keep_alive=1) as node:
        alice = await new_user(node.url, "a")
        # the keep-alive: 1.5 times 1 s of silence
        idle, _ = await raw5(node, alice, keep_alive=1, client_id="idle")
        sent_at = time.monotonic()
        disconnect = await asyncio.to_thread(idle.read)
        assert disconnect == m.Disconnect(R.KEEP_ALIVE_TIMEOUT)
        assert 1.4 <= time.monotonic() - sent_at < 6
        # the same client id connecting again takes the session over
        first, _ = await raw5(node, alice, client_id="phone")
        second, _ = await raw5(node, alice, client_id="phone")
        assert await asyncio.to_thread(first.read) == m.Disconnect(R.SESSION_TAKEN_OVER)
        # a ban
        await node.server.store.set_banned(alice.user_id, True)
        disconnect = await asyncio.to_thread(second.read)
        assert isinstance(disconnect, m.Disconnect) and disconnect.reason_code == R.NOT_AUTHORIZED
        bob = await new_user(node.url, "b")
        last, _ = await raw5(node, bob)
    # the node shutting down
    assert await asyncio.to_thread(last.read) == m.Disconnect(R.SERVER_SHUTTING_DOWN)


async def test_a_subscriber_past_the_window_and_the_queue_is_told_quota_exceeded(tmp_path: Path) -> None:
    async with node_with(tmp_path, max_inflight_messages=2, max_queued_messages=1) as node:
        alice, bob = await new_user(node.url, "a"), await new_user(node.url, "b")
        raw, _ = await raw5(node, bob)
        raw.send(m.Subscribe(1, (("msg/#", 1),)))
        assert await asyncio.to_thread(raw.read) == m.SubAck(1, (1,))
        a = await connected5(node, alice)
        try:
            for i in range(4):  # never acknowledged: two in flight, one queued, one too many
                await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"text": str(i)})
            got = [await asyncio.to_thread(raw.read) for _ in range(3)]
            assert [type(p) for p in got] == [m.Publish, m.Publish, m.Disconnect]
            assert isinstance(got[2], m.Disconnect) and got[2].reason_code == R.QUOTA_EXCEEDED
        finally:
            a.close()


async def test_clean_start_0_is_persistent_only_with_a_session_expiry(mqtt_node: Node) -> None:
    alice, bob = await new_user(mqtt_node.url, "a"), await new_user(mqtt_node.url, "b")
    a = await connected5(mqtt_node, alice)
    try:
        await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"text": "while bob was away"})
    finally:
        a.close()
    for expiry, replayed in ((0, False), (3600, True)):
        props = m.Properties(session_expiry=expiry) if expiry else m.NO_PROPERTIES
        raw = Raw(mqtt_node.server.mqtt_port, V5)
        raw.send(m.Connect(f"bob-{expiry}", False, 30, bob.username, PASSWORD.encode(), level=V5, properties=props),
                 m.Subscribe(1, (("msg/#", 1),)), m.PingReq())
        connack = await asyncio.to_thread(raw.read)
        assert isinstance(connack, m.ConnAck) and connack.return_code == 0 and not connack.session_present
        assert await asyncio.to_thread(raw.read) == m.SubAck(1, (1,))
        assert await asyncio.to_thread(raw.read) == m.PingResp()
        if replayed:
            message = await asyncio.to_thread(raw.read)
            assert isinstance(message, m.Publish) and json.loads(message.payload)["body"] == {
                "text": "while bob was away"}
        else:
            raw.send(m.PingReq())  # the PINGRESP comes, and no message before it
            assert await asyncio.to_thread(raw.read) == m.PingResp()
        raw.send(m.Disconnect())


async def test_no_reason_strings_when_the_client_asks_for_none(mqtt_node: Node) -> None:
    alice = await new_user(mqtt_node.url, "a")
    raw, _ = await raw5(mqtt_node, alice, properties=m.Properties(request_problem_info=0))
    raw.send(m.Publish("send/u/1", b"not json", 1, 7))
    assert await asyncio.to_thread(raw.read) == m.PubAck(7, R.PAYLOAD_FORMAT_INVALID)  # code, no Reason String
    talkative, _ = await raw5(mqtt_node, alice, client_id="other")
    talkative.send(m.Publish("send/u/1", b"not json", 1, 7))
    puback = await asyncio.to_thread(talkative.read)
    assert isinstance(puback, m.PubAck) and puback.properties.reason_string
