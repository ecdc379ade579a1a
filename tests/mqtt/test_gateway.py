"""The MQTT gateway with paho-mqtt, a standard client: CONNECT with a password or a token, 1:1 and group sends with
their PUBACK, subscriptions and their limits, an MQTT user and a WebSocket user chatting, malformed packets."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.conftest import PASSWORD, Node, api, connect
from tests.mqtt.paho_client import Paho, User, new_user


async def connected(node: Node, who: User, password: str = PASSWORD, **kwargs: object) -> Paho:
    client = Paho(node.server.mqtt_port, who.username, password, **kwargs)  # type: ignore[arg-type]
    assert await asyncio.to_thread(client.connect) == 0
    return client


async def test_one_to_one_with_a_password_and_a_token(mqtt_node: Node) -> None:
    alice, bob = await new_user(mqtt_node.url, "a"), await new_user(mqtt_node.url, "b")
    a = await connected(mqtt_node, alice)
    b = await connected(mqtt_node, bob, password=bob.token)  # an access token as the password
    try:
        assert await asyncio.to_thread(b.subscribe, "msg/#") == [1]
        await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"text": "hi bob"}, "m-1")
        [(topic, frame)] = await asyncio.to_thread(b.receive, 1)
        cid = f"d:{min(alice.user_id, bob.user_id)}:{max(alice.user_id, bob.user_id)}"
        assert topic == f"msg/{cid}"
        assert frame == {"t": "msg", "conversation_id": cid, "seq": 1, "sender": alice.user_id,
                         "client_msg_id": "m-1", "ts": frame["ts"], "body": {"text": "hi bob"}}
    finally:
        a.close()
        b.close()


async def test_group_send(mqtt_node: Node) -> None:
    owner, m1, m2 = [await new_user(mqtt_node.url, p) for p in ("o", "m", "n")]
    group = await api(mqtt_node, owner, "POST", "/v1/groups",
                      json={"name": "g", "members": [m1.user_id, m2.user_id]})
    gid = group["group_id"]
    clients = [await connected(mqtt_node, who) for who in (owner, m1, m2)]
    try:
        for c in clients[1:]:
            assert await asyncio.to_thread(c.subscribe, f"msg/g:{gid}") == [1]
        await asyncio.to_thread(clients[0].send, f"send/g/{gid}", {"text": "hello all"})
        for c in clients[1:]:
            [(topic, frame)] = await asyncio.to_thread(c.receive, 1)
            assert topic == f"msg/g:{gid}" and frame["body"] == {"text": "hello all"}
    finally:
        for c in clients:
            c.close()


async def test_mqtt_and_websocket_users_chat(mqtt_node: Node) -> None:
    alice, bob = await new_user(mqtt_node.url, "a"), await new_user(mqtt_node.url, "b")
    a = await connected(mqtt_node, alice)
    ws = await connect(mqtt_node.url, bob)
    try:
        await asyncio.to_thread(a.subscribe)
        await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"text": "from mqtt"})
        pushed = await asyncio.wait_for(ws.next_message(), 10)
        assert pushed.body == {"text": "from mqtt"}
        await ws.send(alice.user_id, {"text": "from ws"})
        [(_, frame)] = await asyncio.to_thread(a.receive, 1)
        assert frame["body"] == {"text": "from ws"} and frame["seq"] == 2
    finally:
        a.close()
        await ws.close()


@pytest.mark.parametrize("password", ["wrong password", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"])
async def test_bad_credentials_get_connack_4(mqtt_node: Node, password: str) -> None:
    alice = await new_user(mqtt_node.url, "a")
    client = Paho(mqtt_node.server.mqtt_port, alice.username, password)
    try:
        # paho 2 reports the 3.1.1 code 4 "bad user name or password" as MQTT 5's equivalent, 0x86
        assert await asyncio.to_thread(client.connect) == 0x86
    finally:
        client.client.loop_stop()


async def test_another_users_token_is_refused(mqtt_node: Node) -> None:
    alice, bob = await new_user(mqtt_node.url, "a"), await new_user(mqtt_node.url, "b")
    client = Paho(mqtt_node.server.mqtt_port, alice.username, bob.token)
    try:
        assert await asyncio.to_thread(client.connect) == 0x86
    finally:
        client.client.loop_stop()


async def test_subscriptions_outside_the_users_tree_are_refused(mqtt_node: Node) -> None:
    alice = await new_user(mqtt_node.url, "a")
    a = await connected(mqtt_node, alice)
    try:
        other = alice.user_id + 1000
        for topic in ("#", "send/#", f"msg/d:{other}:{other + 1}", f"msg/u:{other}", "msg/g:x", "msg/+/x"):
            assert await asyncio.to_thread(a.subscribe, topic) == [0x80], topic
        assert await asyncio.to_thread(a.subscribe, f"msg/u:{alice.user_id}", 0) == [0]
    finally:
        a.close()


async def test_the_connack_code_on_the_wire(mqtt_node: Node) -> None:
    alice = await new_user(mqtt_node.url, "a")
    name = alice.username.encode()
    body = (b"\x00\x04MQTT\x04\xc2\x00\x3c" + b"\x00\x02id" + len(name).to_bytes(2, "big") + name
            + b"\x00\x05wrong")
    connect = bytes((0x10, len(body))) + body
    assert await asyncio.to_thread(_raw, mqtt_node.server.mqtt_port, connect) == b"\x20\x02\x00\x04"


def _raw(port: int, data: bytes) -> bytes:
    """Send raw bytes, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
        return b"".join(chunks)


async def test_a_malformed_packet_closes_only_its_connection(mqtt_node: Node) -> None:
    alice, bob = await new_user(mqtt_node.url, "a"), await new_user(mqtt_node.url, "b")
    b = await connected(mqtt_node, bob)
    try:
        await asyncio.to_thread(b.subscribe)
        port = mqtt_node.server.mqtt_port
        assert await asyncio.to_thread(_raw, port, b"\x10\xff\xff\xff\xff\x01") == b""  # 5 length bytes
        assert await asyncio.to_thread(_raw, port, b"\x30\x03\x00\x01a") == b""  # PUBLISH before CONNECT
        # a level 5 CONNECT whose property list is malformed: closed without a CONNACK
        assert await asyncio.to_thread(_raw, port, bytes.fromhex("100f00044d5154540502003c0300000000")) == b""
        # MQTT 6 (no such thing yet): CONNACK 0x01 "unacceptable protocol version"
        assert await asyncio.to_thread(_raw, port, bytes.fromhex("100f00044d5154540602003c0300000000")) == \
            b"\x20\x02\x00\x01"
        # MQTT 3.1 (MQIsdp, level 3): CONNACK 0x01 "unacceptable protocol version"
        assert await asyncio.to_thread(_raw, port, bytes.fromhex("100c00064d514973647003020000")) == \
            b"\x20\x02\x00\x01"
        a = await connected(mqtt_node, alice)
        await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"text": "still here"})
        [(_, frame)] = await asyncio.to_thread(b.receive, 1)
        assert frame["body"] == {"text": "still here"}
        a.close()
    finally:
        b.close()


async def test_a_refused_send_closes_the_connection(mqtt_node: Node) -> None:
    alice, bob = await new_user(mqtt_node.url, "a"), await new_user(mqtt_node.url, "b")
    a = await connected(mqtt_node, alice)
    try:
        a.client.publish(f"send/u/{bob.user_id}", b'{"client_msg_id": "x", "body": {"nope": 1}}', qos=1)
        assert await asyncio.to_thread(a.disconnected.wait, 10)
    finally:
        a.client.loop_stop()
