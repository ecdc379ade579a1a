"""A reader that stops reading is cut (close 4002) instead of making the server buffer without bound; the sender
is unaffected and the cut reader catches up by sync."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from pica.app import PicaServer
from pica.client import PicaHttp
from pica.protocol import frames as f
from pica.protocol.close_codes import CloseCode
from pica.protocol.codec import Encoding, decode_server_frame, encode
from pica.protocol.framing import FrameReader, frame_bytes
from tests.conftest import connect, make_config, new_user


async def test_slow_reader_is_cut_and_recovers_by_sync(tmp_path: Path) -> None:
    server = PicaServer(make_config(tmp_path, max_outbound_bytes=32_768))
    await server.start()
    url = f"http://127.0.0.1:{server.http_port}"
    try:
        alice, bob = await new_user(url), await new_user(url)
        # Bob's raw socket with a tiny receive buffer; he authenticates, then stops reading.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.tcp_port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(frame_bytes(encode(f.Auth(token=bob.token), Encoding.MSGPACK)))
        frames = FrameReader(1 << 20)

        sender = await connect(url, alice, "tcp", server.tcp_port)
        async with sender:
            text = "x" * 4_000
            for i in range(5_000):  # up to 20 MB towards a reader that reads nothing (kernel buffers take some MB)
                await sender.send(bob.user_id, {"text": text}, client_msg_id=f"m{i}")
                if server.services is not None and server.services.metrics.slow_consumers:
                    break
            assert server.services is not None and server.services.metrics.slow_consumers == 1
            acked = i + 1

        # Bob reads what reached him: the tail of the stream is the close notice 4002 (or the socket was dropped).
        seen_close = None
        try:
            async with asyncio.timeout(5):
                while True:
                    data = await reader.read(65_536)
                    if not data:
                        break
                    for payload in frames.feed(data):
                        frame = decode_server_frame(payload, Encoding.MSGPACK)
                        if isinstance(frame, f.Close):
                            seen_close = frame.code
        except (ConnectionError, TimeoutError):
            pass
        writer.close()
        assert seen_close == CloseCode.SLOW_CONSUMER  # it read its backlog within the linger time

        # Nothing was lost: reconnecting and syncing gives every acked message.
        async with PicaHttp(url, token=bob.token) as http:
            page = await http.history(f"d:{alice.user_id}:{bob.user_id}", after_seq=0, limit=100)
        assert page["messages"][0]["client_msg_id"] == "m0"
        bob_again = await connect(url, bob)
        async with bob_again:
            synced = await bob_again.sync_all()
        assert [m.seq for m in synced] == list(range(1, acked + 1))
    finally:
        await server.stop()
