"""A thin, blocking wrapper of paho-mqtt (a standard client, not ours) for the tests: connect (MQTT 3.1.1 or 5.0),
publish QoS 1 and wait for its PUBACK, subscribe, and collect what arrives. Blocking calls are run in a thread by the
async tests."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pica.client import Login, PicaHttp
from tests.conftest import PASSWORD

TIMEOUT = 10.0


@dataclass(frozen=True)
class User(Login):
    """A login that remembers its user name (the MQTT user name)."""

    username: str = ""


async def new_user(url: str, prefix: str = "u") -> User:
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    async with PicaHttp(url) as http:
        await http.register(name, PASSWORD)
        login = await http.login(name, PASSWORD)
    return User(**{k: getattr(login, k) for k in login.__dataclass_fields__}, username=name)


class Paho:
    def __init__(self, port: int, username: str, password: str, *, client_id: str = "",
                 clean_session: bool = True, protocol: MQTTProtocolVersion = mqtt.MQTTv311,
                 session_expiry: int = 0) -> None:
        """``clean_session`` is Clean Start in MQTT 5.0, where ``session_expiry`` is the Session Expiry Interval."""
        self.v5 = protocol == mqtt.MQTTv5
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or "t-" + uuid.uuid4().hex[:8],
                                  clean_session=clean_session if not self.v5 else None, protocol=protocol)
        self.client.username_pw_set(username, password)
        self.port = port
        self.clean_start = clean_session
        self.session_expiry = session_expiry
        self.connack: queue.Queue[int] = queue.Queue()
        self.connack_properties: dict[str, Any] = {}
        self.messages: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.subacks: queue.Queue[list[int]] = queue.Queue()
        self.pubacks: dict[int, int] = {}
        """Message id → the reason code of its PUBACK (5.0; 0 in 3.1.1)."""
        self.disconnected = threading.Event()
        self.disconnect_reason: int | None = None
        """The reason code of the server's DISCONNECT (5.0), if one came."""
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, msg: self.messages.put((msg.topic, json.loads(msg.payload)))
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subacks.put([x.value for x in codes])
        self.client.on_publish = lambda c, u, mid, rc, props: self.pubacks.__setitem__(mid, rc.value)
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if props is not None and hasattr(props, "json"):
            self.connack_properties = props.json()
        self.connack.put(rc.value)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if self.v5 and getattr(flags, "is_disconnect_packet_from_server", False):
            self.disconnect_reason = rc.value
        self.disconnected.set()

    def connect(self) -> int:
        """The CONNACK's return code."""
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            if self.session_expiry:
                props.SessionExpiryInterval = self.session_expiry
            self.client.connect("127.0.0.1", self.port, keepalive=30, clean_start=self.clean_start,
                                properties=props)
        else:
            self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        return self.connack.get(timeout=TIMEOUT)

    def subscribe(self, topic: str = "msg/#", qos: int = 1) -> list[int]:
        self.client.subscribe(topic, qos)
        return self.subacks.get(timeout=TIMEOUT)

    def send(self, topic: str, body: dict[str, Any], client_msg_id: str | None = None) -> int:
        """PUBLISH QoS 1 and wait for the PUBACK; its reason code."""
        payload = json.dumps({"client_msg_id": client_msg_id or uuid.uuid4().hex, "body": body})
        return self.publish(topic, payload.encode())

    def publish(self, topic: str, payload: bytes) -> int:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), "no PUBACK"
        return self.pubacks[info.mid]

    def receive(self, n: int) -> list[tuple[str, dict[str, Any]]]:
        return [self.messages.get(timeout=TIMEOUT) for _ in range(n)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
