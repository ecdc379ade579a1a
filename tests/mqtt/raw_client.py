"""A blocking raw MQTT socket, driven by Pica's own codec, for clients that misbehave on purpose or look at the exact
packets (paho-mqtt does the well-behaved rest)."""

from __future__ import annotations

import socket
import time
from typing import Any

from pica.protocol import mqtt as m
from tests.conftest import PASSWORD
from tests.mqtt.paho_client import User


class Raw:
    """A blocking raw MQTT socket for clients that misbehave on purpose."""

    def __init__(self, port: int, level: int = m.PROTOCOL_LEVEL) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.level = level
        self.reader = m.PacketReader(1 << 20, level)
        self.packets: list[m.Packet] = []

    def send(self, *packets: m.Packet) -> None:
        self.sock.sendall(b"".join(m.encode(p, self.level) for p in packets))

    def read(self) -> m.Packet:
        while not self.packets:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.packets += self.reader.feed(data)
        return self.packets.pop(0)

    def closed_within(self, seconds: float, since: float | None = None) -> float:
        """Seconds from ``since`` (default: now) until the server closed the socket (reading and dropping what it
        sends meanwhile)."""
        start = time.monotonic() if since is None else since
        self.sock.settimeout(seconds)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass  # a slow consumer's unread bytes are dropped with a reset
        return time.monotonic() - start


def connect_packet(who: User, keep_alive: int = 30, client_id: str = "raw", level: int = m.PROTOCOL_LEVEL,
                   password: bytes = PASSWORD.encode(), **connect: Any) -> m.Connect:
    return m.Connect(client_id, True, keep_alive, who.username, password, level=level, **connect)
