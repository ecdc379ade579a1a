"""The gateway with the ``mosquitto_pub`` and ``mosquitto_sub`` commands (Debian's mosquitto-clients)."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from tests.conftest import PASSWORD, Node
from tests.mqtt.paho_client import new_user

pytestmark = pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto-clients not installed")


async def run(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_mosquitto_pub_and_sub(mqtt_node: Node) -> None:
    alice, bob = await new_user(mqtt_node.url, "a"), await new_user(mqtt_node.url, "b")
    port = str(mqtt_node.server.mqtt_port)
    sub = await asyncio.create_subprocess_exec(
        "mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-u", bob.username, "-P", PASSWORD, "-q", "1",
        "-t", "msg/#", "-C", "2", "-v", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await asyncio.sleep(0.5)  # mosquitto_sub has no "subscribed" signal
        for i in range(2):
            payload = json.dumps({"client_msg_id": f"mp-{i}", "body": {"text": f"hello {i}"}})
            code, _, err = await run("mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-u", alice.username,
                                     "-P", PASSWORD, "-q", "1", "-t", f"send/u/{bob.user_id}", "-m", payload)
            assert code == 0, err  # mosquitto_pub exits 0 once the PUBACK came
        out, _ = await asyncio.wait_for(sub.communicate(), 20)
    finally:
        if sub.returncode is None:
            sub.kill()
            await sub.wait()
    lines = out.decode().splitlines()
    cid = f"d:{min(alice.user_id, bob.user_id)}:{max(alice.user_id, bob.user_id)}"
    assert [line.split(" ", 1)[0] for line in lines] == [f"msg/{cid}"] * 2
    assert [json.loads(line.split(" ", 1)[1])["body"]["text"] for line in lines] == ["hello 0", "hello 1"]


async def test_mosquitto_pub_with_a_wrong_password(mqtt_node: Node) -> None:
    alice = await new_user(mqtt_node.url, "a")
    code, _, err = await run("mosquitto_pub", "-h", "127.0.0.1", "-p", str(mqtt_node.server.mqtt_port),
                             "-u", alice.username, "-P", "not it", "-q", "1", "-t", "send/u/1", "-m", "{}")
    assert code != 0
    assert "bad user name or password" in err.lower()


async def test_mosquitto_pub_and_sub_speaking_mqtt5(mqtt_node: Node) -> None:
    alice, bob = await new_user(mqtt_node.url, "a"), await new_user(mqtt_node.url, "b")
    port = str(mqtt_node.server.mqtt_port)
    sub = await asyncio.create_subprocess_exec(
        "mosquitto_sub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", port, "-u", bob.username, "-P", PASSWORD,
        "-q", "1", "-t", "msg/#", "-C", "1", "-F", "%t %p", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        await asyncio.sleep(0.5)  # mosquitto_sub has no "subscribed" signal
        payload = json.dumps({"client_msg_id": "mp5-1", "body": {"text": "hello in 5.0"}})
        code, _, err = await run("mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", port, "-u", alice.username,
                                 "-P", PASSWORD, "-q", "1", "-t", f"send/u/{bob.user_id}", "-m", payload)
        assert code == 0, err
        out, _ = await asyncio.wait_for(sub.communicate(), 20)
    finally:
        if sub.returncode is None:
            sub.kill()
            await sub.wait()
    topic, frame = out.decode().strip().split(" ", 1)
    assert topic == f"msg/d:{min(alice.user_id, bob.user_id)}:{max(alice.user_id, bob.user_id)}"
    assert json.loads(frame)["body"] == {"text": "hello in 5.0"}


async def test_mosquitto_pub_speaking_mqtt5_sees_the_reason_code_of_a_refused_send(mqtt_node: Node) -> None:
    alice = await new_user(mqtt_node.url, "a")
    _, out, err = await run("mosquitto_pub", "-V", "mqttv5", "-d", "-h", "127.0.0.1",
                            "-p", str(mqtt_node.server.mqtt_port), "-u", alice.username, "-P", PASSWORD,
                            "-q", "1", "-t", f"send/u/{alice.user_id + 1000}", "-m", "not json")
    assert "received PUBACK (Mid: 1, RC:153)" in out  # 0x99, and the connection stayed open for its DISCONNECT
    assert "Publish 1 failed: Payload format invalid" in err
    assert "malformed send payload" in err  # the Reason String


async def test_mosquitto_pub_speaking_mqtt5_with_a_wrong_password(mqtt_node: Node) -> None:
    alice = await new_user(mqtt_node.url, "a")
    code, _, err = await run("mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(mqtt_node.server.mqtt_port),
                             "-u", alice.username, "-P", "not it", "-q", "1", "-t", "send/u/1", "-m", "{}")
    assert code != 0
    assert "bad user name or password" in err.lower()
