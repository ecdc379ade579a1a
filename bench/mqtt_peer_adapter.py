"""A peer-bench adapter for Pica's MQTT gateway, so that Pica and mosquitto run under the same load generator.

peer-bench (``../shared/peer-bench``, outside this repository) drives brokers through ``loadgen.py --adapter NAME``;
its ``mqtt`` adapter speaks anonymous MQTT 3.1.1 on topics ``u/<i>``. Pica's gateway needs what its protocol says
(docs/protocol.md, section 25): a user name and password (here the account's access token), sends on
``send/u/<user_id>`` with a JSON payload ``{"client_msg_id", "body": {"text"}}``, and messages arriving on
``msg/<conversation_id>`` as JSON ``msg`` frames. This adapter is peer-bench's ``mqtt`` adapter with those three
differences; the accounts (harness user i = ``u<i>``, created over HTTP and cached) are peer-bench's ``pica``
adapter's. Both sides use QoS 1; Pica's PUBACK leaves after the durable commit, mosquitto's from memory.

``PICA_MQTT_SUB_QOS=0`` subscribes at QoS 0 instead (a diagnostic: no PUBACK from the receivers, hence none of the
delivered-cursor writes they cause). Run from the repository root, with ``bench`` on the module path and the
accounts made first (see BENCHMARKS.md, "MQTT")::

    PYTHONPATH=bench PICA_HTTP_PORT=18080 PICA_ACCOUNTS=/tmp/pm/accounts.json \\
        .venv/bin/python ../shared/peer-bench/loadgen.py --adapter mqtt_peer_adapter --port 18883 \\
        --server-pid PID pairs --duration 10
"""

import os

import mqtt as peer_mqtt  # peer-bench's MQTT adapter: its parser and packet helpers (loadgen's folder is first)
from loadgen import open_conn

import pica as peer_pica  # peer-bench's Pica adapter (not the pica package): accounts over HTTP, and their cache

TEXT = b'"body":{"text":"'
"""What precedes the harness payload in a ``msg`` frame (Pica writes ``body`` last, ``text`` its only key)."""


class PicaMqttConn(peer_mqtt.MqttConn):
    def feed(self, data):
        handler = self.on_message

        def text_of(frame):  # the JSON msg frame → the bytes the harness sent, unchanged (ASCII, nothing escaped)
            handler(frame[frame.rfind(TEXT) + len(TEXT):-3])

        self.on_message = text_of
        try:
            super().feed(data)
        finally:
            self.on_message = handler


class Adapter(peer_pica.Adapter):
    name = "pica-mqtt"

    def __init__(self, args):
        super().__init__(args)
        self._send_topic = {}
        self._sub_qos = bytes((int(os.environ.get("PICA_MQTT_SUB_QOS", "1")),))

    async def connect(self, i, src=None):
        _, token, _ = await self.ensure(i)
        c = await open_conn(PicaMqttConn, self.host, self.port, src)
        body = (peer_mqtt._str(b"MQTT") + b"\x04\xc2\x00\x00" + peer_mqtt._str(b"b%d" % i)
                + peer_mqtt._str(self.user(i).encode()) + peer_mqtt._str(token.encode()))
        c.write(b"\x10" + peer_mqtt._varint(len(body)) + body)
        await c.expect(b"\x20\x02\x00\x00")
        pid = c.next_pid()
        sub = pid + peer_mqtt._str(b"msg/#") + self._sub_qos
        c.write(b"\x82" + peer_mqtt._varint(len(sub)) + sub)
        await c.expect(b"\x90\x03" + pid + self._sub_qos)
        c.ready = True
        c.feed(b"")
        return c

    def send(self, conn, to, payload):
        topic = self._send_topic.get(to)
        if topic is None:
            topic = self._send_topic[to] = peer_mqtt._str(b"send/u/%d" % self.uid(to))
        self.n += 1
        data = b'{"client_msg_id":"%s%x","body":{"text":"%s"}}' % (self.cmid, self.n, payload)
        conn.transport.write(b"\x32" + peer_mqtt._varint(len(topic) + 2 + len(data)) + topic + conn.next_pid()
                             + data)

    async def join_group(self, conn, group, owner=False):
        raise NotImplementedError("pica-mqtt: only the 1:1 workloads (pairs, rate, idle)")

    def send_group(self, conn, group, payload):
        raise NotImplementedError("pica-mqtt: only the 1:1 workloads (pairs, rate, idle)")

    def close(self, conn):
        if not conn.closed:
            conn.transport.write(b"\xe0\x00")
            conn.transport.close()
