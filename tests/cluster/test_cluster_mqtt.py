"""An MQTT device on one node and a WebSocket device on another chat through the cluster bus: an MQTT connection is
just another connection on the node's hub."""

from __future__ import annotations

import asyncio

import pytest

from pica.client import PicaConnection
from tests.cluster.conftest import Cluster, free_port
from tests.conftest import PASSWORD
from tests.mqtt.paho_client import Paho, new_user

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]


async def test_mqtt_and_websocket_users_on_different_nodes(cluster: Cluster) -> None:
    port = free_port()
    [n1] = cluster.start("n1", extra=["--mqtt-port", str(port)])
    [n2] = cluster.start("n2")
    alice, bob = await new_user(n1.url, "a"), await new_user(n2.url, "b")
    await cluster.formed(alice.token)
    a = Paho(port, alice.username, PASSWORD)
    assert await asyncio.to_thread(a.connect) == 0
    ws = await PicaConnection.open(n2.url, bob.token)
    try:
        assert await asyncio.to_thread(a.subscribe, "msg/#") == [1]
        await asyncio.to_thread(a.send, f"send/u/{bob.user_id}", {"text": "from mqtt on n1"})
        assert (await ws.next_message(timeout=10)).body == {"text": "from mqtt on n1"}
        await ws.send(alice.user_id, {"text": "from ws on n2"})
        [(_, frame)] = await asyncio.to_thread(a.receive, 1)
        assert frame["body"] == {"text": "from ws on n2"} and frame["seq"] == 2
    finally:
        a.close()
        await ws.close()
