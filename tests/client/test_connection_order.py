"""What the connection hands the application when the server's frames come in an awkward order: a device's own
message never comes back to it as received, and a push that skips ahead waits briefly for the late one before
costing a sync.

In a cluster the server commits a send, then answers a sync and the send in either order (a sync reply may carry the
message before its ack does), and pushes committed on different nodes can swap places. These tests play such a
server over a real TCP socket, frame by frame, so the order is exact rather than left to chance.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from pica.client import PicaConnection
from pica.client.connection import GAP_WAIT
from pica.protocol import frames as f
from pica.protocol.codec import Encoding, decode_client_frame, encode
from pica.protocol.framing import FrameReader, frame_bytes

ME, PEER = 1, 2
ROOM = f"d:{ME}:{PEER}"


class ScriptedPeer:
    """The server's side of one TCP connection, driven by the test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._frames = FrameReader(1 << 20)
        self._ready: list[bytes] = []

    async def read(self) -> f.ClientFrame:
        while not self._ready:
            data = await asyncio.wait_for(self._reader.read(65_536), 5)
            assert data, "the client hung up"
            self._ready.extend(self._frames.feed(data))
        return decode_client_frame(self._ready.pop(0), Encoding.MSGPACK)

    async def expect(self, kind: type[f.ClientFrame]) -> f.ClientFrame:
        while True:
            frame = await self.read()
            if isinstance(frame, kind):
                return frame
            assert isinstance(frame, f.Recv | f.Pong), f"expected {kind.__name__}, got {frame!r}"

    async def write(self, *frames: f.ServerFrame) -> None:
        for frame in frames:
            self._writer.write(frame_bytes(encode(frame, Encoding.MSGPACK)))
        await self._writer.drain()


Scripted = tuple[Callable[[], Awaitable[ScriptedPeer]], int]
"""How to accept the client's next connection (already authenticated), and the port to dial."""


def msg(seq: int, sender: int, cmid: str) -> f.Msg:
    return f.Msg(conversation_id=ROOM, seq=seq, sender=sender, client_msg_id=cmid, ts=1_000 + seq,
                 body={"text": cmid})


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    accepted: asyncio.Queue[ScriptedPeer] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(ScriptedPeer(reader, writer))

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def next_peer() -> ScriptedPeer:
        """Accept the client's next connection and answer its auth."""
        peer = await asyncio.wait_for(accepted.get(), 5)
        await peer.expect(f.Auth)
        await peer.write(f.Ready(v=1, user_id=ME, device="phone", session="s", heartbeat=25, idle_timeout=60,
                                 max_frame=1 << 20, time=0))
        return peer

    try:
        yield next_peer, port
    finally:
        server.close()


async def handed(conn: PicaConnection) -> list[tuple[int, str]]:
    """Everything next_message() has for the application right now."""
    out: list[tuple[int, str]] = []
    while True:
        try:
            m = await conn.next_message(timeout=0.3)
        except TimeoutError:
            return out
        out.append((m.seq, m.client_msg_id))


async def open_on(scripted: Scripted, gap_wait: float = GAP_WAIT) -> tuple[PicaConnection, ScriptedPeer]:
    next_peer, port = scripted
    opening = asyncio.create_task(PicaConnection.open(f"http://127.0.0.1:{port}", "token", transport="tcp",
                                                      tcp_port=port, gap_wait=gap_wait))
    peer = await next_peer()
    return await opening, peer


async def no_frame_for(peer: ScriptedPeer, seconds: float) -> bool:
    try:
        frame = await asyncio.wait_for(peer.read(), seconds)
    except TimeoutError:
        return True
    return isinstance(frame, f.Recv | f.Pong)


async def open_and_send(scripted: Scripted) -> tuple[PicaConnection, ScriptedPeer, asyncio.Task[f.Sent], f.Send]:
    """Bob's message 1 is in; this device sends message 2, and Bob's 3 is pushed before anything is answered."""
    conn, peer = await open_on(scripted)
    await peer.write(msg(1, PEER, "bob-1"))
    sending = asyncio.create_task(conn.request(f.Send(client_msg_id="mine", to=PEER, body={"text": "mine"})))
    send = await peer.expect(f.Send)
    assert isinstance(send, f.Send)
    await peer.write(msg(3, PEER, "bob-3"))  # seq 2 (ours) not acked yet: a gap, the client syncs
    return conn, peer, sending, send


async def test_a_sync_reply_that_carries_our_message_before_its_ack_does_not_hand_it_out(scripted: Scripted) -> None:
    conn, peer, sending, send = await open_and_send(scripted)
    try:
        sync = await peer.expect(f.Sync)
        assert isinstance(sync, f.Sync) and sync.cursors == {ROOM: 1}
        await peer.write(f.Synced(msgs=[msg(2, ME, "mine"), msg(3, PEER, "bob-3")], more=False, ref=sync.id),
                         f.Sent(client_msg_id="mine", conversation_id=ROOM, seq=2, ts=1_002, ref=send.id))
        assert (await sending).seq == 2
        assert await handed(conn) == [(1, "bob-1"), (3, "bob-3")]
        assert conn.cursors.cursor(ROOM) == 3
    finally:
        await conn.close()


async def test_an_early_ack_still_skips_our_message_when_the_sync_brings_it(scripted: Scripted) -> None:
    conn, peer, sending, send = await open_and_send(scripted)
    try:
        sync = await peer.expect(f.Sync)
        assert isinstance(sync, f.Sync)
        # Seq 2 is ours, but pretend a message of Bob's sits before it: the ack arrives while the cursor is behind.
        await peer.write(f.Sent(client_msg_id="mine", conversation_id=ROOM, seq=2, ts=1_002, ref=send.id))
        assert (await sending).seq == 2
        await peer.write(f.Synced(msgs=[msg(2, ME, "mine"), msg(3, PEER, "bob-3")], more=False, ref=sync.id))
        assert await handed(conn) == [(1, "bob-1"), (3, "bob-3")]
    finally:
        await conn.close()


async def test_a_message_from_our_other_device_is_handed_out(scripted: Scripted) -> None:
    conn, peer, sending, send = await open_and_send(scripted)
    try:
        sync = await peer.expect(f.Sync)
        assert isinstance(sync, f.Sync)
        # Seq 2 was sent by the same user from another device (another client id): it is news to this one.
        await peer.write(f.Synced(msgs=[msg(2, ME, "tablet-1"), msg(3, PEER, "bob-3")], more=False, ref=sync.id),
                         f.Sent(client_msg_id="mine", conversation_id=ROOM, seq=4, ts=1_004, ref=send.id))
        assert (await sending).seq == 4
        assert await handed(conn) == [(1, "bob-1"), (2, "tablet-1"), (3, "bob-3")]
        # Our 4 was acked while 2 and 3 were missing: held like a push, it moved the cursor once they came.
        assert conn.cursors.cursor(ROOM) == 4
        await peer.write(msg(5, PEER, "bob-5"))
        assert await handed(conn) == [(5, "bob-5")]
        assert await no_frame_for(peer, 0.5), "no sync: nothing was missing"
        assert conn.cursors.cursor(ROOM) == 5
    finally:
        await conn.close()


async def test_a_push_that_arrives_late_but_within_the_wait_needs_no_sync(scripted: Scripted) -> None:
    conn, peer = await open_on(scripted, gap_wait=3.0)  # far longer than the test needs, even on a busy machine
    try:
        await peer.write(msg(1, PEER, "bob-1"), msg(3, PEER, "bob-3"))
        await asyncio.sleep(0.1)
        await peer.write(msg(2, PEER, "bob-2"))
        assert await handed(conn) == [(1, "bob-1"), (2, "bob-2"), (3, "bob-3")]
        assert await no_frame_for(peer, 1.2), "no sync: the gap closed by itself"
        assert conn.gap_stats == {"filled_live": 1, "synced": 0}
    finally:
        await conn.close()


async def test_a_gap_still_open_after_the_wait_is_synced(scripted: Scripted) -> None:
    conn, peer = await open_on(scripted, gap_wait=0.5)
    try:
        await peer.write(msg(1, PEER, "bob-1"))
        assert await handed(conn) == [(1, "bob-1")]
        pushed = time.monotonic()
        await peer.write(msg(3, PEER, "bob-3"), msg(4, PEER, "bob-4"))
        sync = await peer.expect(f.Sync)
        assert time.monotonic() - pushed >= 0.45, "the client waited for the missing push first"
        assert isinstance(sync, f.Sync) and sync.cursors == {ROOM: 1}
        await peer.write(f.Synced(msgs=[msg(2, PEER, "bob-2"), msg(3, PEER, "bob-3")], more=False, ref=sync.id))
        # 4 was held: it goes out after the synced ones without being fetched again.
        assert await handed(conn) == [(2, "bob-2"), (3, "bob-3"), (4, "bob-4")]
        assert conn.gap_stats == {"filled_live": 0, "synced": 1}
    finally:
        await conn.close()


async def test_without_a_wait_a_gap_is_synced_at_once(scripted: Scripted) -> None:
    conn, peer = await open_on(scripted, gap_wait=0)
    try:
        await peer.write(msg(1, PEER, "bob-1"), msg(3, PEER, "bob-3"))
        sync = await peer.expect(f.Sync)
        assert isinstance(sync, f.Sync) and sync.cursors == {ROOM: 1}
        await peer.write(f.Synced(msgs=[msg(2, PEER, "bob-2"), msg(3, PEER, "bob-3")], more=False, ref=sync.id))
        assert await handed(conn) == [(1, "bob-1"), (2, "bob-2"), (3, "bob-3")]
    finally:
        await conn.close()


async def test_a_conversation_new_to_the_device_is_synced_at_once(scripted: Scripted) -> None:
    """Added to a group, the first push is the notice at some seq above 1: only a sync says where to start."""
    conn, peer = await open_on(scripted, gap_wait=5.0)
    try:
        await peer.write(msg(7, PEER, "added"))
        sync = await asyncio.wait_for(peer.expect(f.Sync), 2.0)
        assert isinstance(sync, f.Sync) and sync.cursors == {}
        await peer.write(f.Synced(msgs=[msg(7, PEER, "added")], more=False, ref=sync.id))
        assert await handed(conn) == [(7, "added")]
    finally:
        await conn.close()


async def test_a_held_push_that_a_complete_sync_does_not_return_is_dropped_not_waited_for(scripted: Scripted) -> None:
    """The notice of one's own removal from a group is pushed once and never synced: held behind a push that never
    comes, it must not make the client sync again every gap_wait."""
    conn, peer = await open_on(scripted, gap_wait=0.2)
    try:
        await peer.write(msg(1, PEER, "bob-1"))
        assert await handed(conn) == [(1, "bob-1")]
        await peer.write(msg(3, PEER, "removed"))
        sync = await peer.expect(f.Sync)
        assert isinstance(sync, f.Sync) and sync.cursors == {ROOM: 1}
        await peer.write(f.Synced(msgs=[], more=False, ref=sync.id))  # the user can see nothing more of it
        assert await no_frame_for(peer, 1.0), "no second sync"
        assert await handed(conn) == []
        assert conn.gap_stats == {"filled_live": 0, "synced": 1}
    finally:
        await conn.close()


async def test_next_message_cancelled_as_its_message_arrives_ends_cancelled(scripted: Scripted) -> None:
    """A task cancelled while it waits in next_message() ends cancelled, whichever loop turn the message lands in,
    and the message stays for the next call. On Python 3.11 asyncio.wait_for dropped a cancellation that came in the
    turn the message did: the SDK's pump went on waiting and PicaClient.close() hung. Each round cancels one turn
    later than the last, so that some round lands in that turn."""
    conn, peer = await open_on(scripted)
    try:
        for turns in range(12):
            seq = turns + 1
            waiting = asyncio.create_task(conn.next_message(timeout=3600))
            await asyncio.sleep(0)  # it waits on the queue
            await peer.write(msg(seq, PEER, f"bob-{seq}"))
            for _ in range(turns):
                await asyncio.sleep(0)
            if waiting.cancel():
                async with asyncio.timeout(5):
                    with pytest.raises(asyncio.CancelledError):
                        await waiting
                got = await conn.next_message(timeout=5)
            else:
                got = waiting.result()
            assert got.seq == seq
    finally:
        await conn.close()
