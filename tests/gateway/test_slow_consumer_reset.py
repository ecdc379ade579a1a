"""A cut slow consumer really lets go. After the linger its socket is reset: the kernel drops what the client never
read instead of keeping it (and the socket) in FIN-WAIT-1 until the client reads or TCP gives up, and the node holds
nothing of the connection any more. A client that reads in time still gets the 4002 notice
(tests/gateway/test_backpressure.py)."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
import weakref
from pathlib import Path

import pytest

from pica.client import Login
from pica.gateway.tcp import CLOSE_LINGER
from pica.protocol import frames as f
from pica.protocol.codec import Encoding, encode
from pica.protocol.framing import frame_bytes
from tests.conftest import Node, connect, new_user, started
from tests.gateway.test_liveness import wait_for

_TCP_STATES = {1: "ESTABLISHED", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT",
               9: "LAST_ACK", 11: "CLOSING"}


def kernel_socket(local_port: int, remote_port: int) -> tuple[str, int] | None:
    """(state, bytes in the send queue) of the loopback IPv4 socket local_port -> remote_port as the kernel holds
    it, orphaned or not (/proc/net/tcp lists sockets no process owns any more); None when it is gone."""
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote, state, queues = fields[1], fields[2], int(fields[3], 16), fields[4]
            if int(local.split(":")[1], 16) == local_port and int(remote.split(":")[1], 16) == remote_port:
                return _TCP_STATES.get(state, str(state)), int(queues.split(":")[0], 16)
    return None


async def silent_reader(node: Node, who: Login, transport: str) -> socket.socket:
    """A client socket that authenticates and then reads nothing (a bare socket: an asyncio stream would read ahead
    into its own buffer). Its receive buffer is tiny, so that the backlog waits on the node's side."""
    port = node.tcp_port if transport == "tcp" else node.server.http_port
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    if transport == "tcp":
        await loop.sock_sendall(sock, frame_bytes(encode(f.Auth(token=who.token), Encoding.MSGPACK)))
    else:  # the token in the upgrade request: no frame to send, nothing to read
        await loop.sock_sendall(sock, (
            f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {who.token}\r\n\r\n"
        ).encode())
    return sock


@pytest.mark.parametrize("transport", ["tcp", "ws"])
async def test_a_client_that_never_reads_is_reset_after_the_linger_and_nothing_of_it_stays(
    tmp_path: Path, transport: str
) -> None:
    async with started(tmp_path) as node:  # the default limit: cut beyond 1 MiB unsent
        services = node.server.services
        assert services is not None
        alice, bob = await new_user(node.url), await new_user(node.url)
        bob_socket = await silent_reader(node, bob, transport)
        bob_port, server_port = bob_socket.getsockname()[1], bob_socket.getpeername()[1]
        await wait_for(lambda: node.server.hub.is_online(bob.user_id), timeout=5)
        bob_on_the_node = weakref.ref(next(c for c in node.server.hub.connections() if c.user_id == bob.user_id))

        # Alice floods Bob with 8 KB messages, 32 at a time, until the node cuts him.
        sender = await connect(node.url, alice, "tcp", node.tcp_port)
        async with sender:
            text = "x" * 8_000
            for batch in range(100):  # at most 25 MB
                await asyncio.gather(*(sender.send(bob.user_id, {"text": text}, client_msg_id=f"m{batch}.{i}")
                                       for i in range(32)))
                if services.metrics.slow_consumers:
                    break
        assert services.metrics.slow_consumers == 1
        cut_at = time.monotonic()

        # During the linger the socket is still there, its send queue full of what Bob did not read...
        held = kernel_socket(server_port, bob_port)
        assert held is not None and held[1] > 0, held
        # ...and when the linger ends it is reset: gone from the kernel's table, no FIN-WAIT-1 holding the bytes.
        await wait_for(lambda: kernel_socket(server_port, bob_port) is None, timeout=CLOSE_LINGER + 3)
        assert time.monotonic() - cut_at > CLOSE_LINGER / 2

        # Bob finds a reset, not his backlog, once he reads the little his own buffer held.
        received = 0
        with bob_socket, pytest.raises(ConnectionResetError):
            async with asyncio.timeout(5):
                while data := await asyncio.get_running_loop().sock_recv(bob_socket, 1 << 16):
                    received += len(data)
        assert received < 1 << 16

        # The node lets go of the connection, and with it of the backlog it had buffered (on a loaded machine the
        # WebSocket handler may take a few loop turns to return after the reset).
        def released() -> bool:
            gc.collect()
            return bob_on_the_node() is None

        await wait_for(released, timeout=5)
