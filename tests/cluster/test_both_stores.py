"""Stories told over real sockets on both stores: a node on its embedded SQLite file, and a cluster node on
PostgreSQL. What a user is promised must not depend on the store the operator chose.

- A recall hides the text: the recalled message's earlier edit events lose their text for every reader, in history
  and sync, and search finds none of its words (protocol 13.1).
- A member removed from a group while offline learns of it at their next sync, from their own timeline (12.2).
- A synced message is, byte for byte, the ``msg`` frame pushed live, on JSON and on MessagePack, paged and streamed
  (protocol 9): whatever its body holds (escapes, non-ASCII, nesting), and a message the reader deleted for
  themselves or the sender recalled reads as its tombstone there too.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import msgspec
import pytest

from pica.client import PicaConnection, PicaHttp
from pica.protocol import frames as f
from pica.protocol.codec import Encoding, encode, encode_value
from pica.protocol.framing import FrameReader, frame_bytes
from tests.cluster.conftest import Cluster, register
from tests.conftest import Node

pytestmark = [pytest.mark.timeout(60)]

WAIT = 10.0


async def test_a_recall_hides_the_text_on_the_embedded_store(node: Node) -> None:
    await a_recall_hides_the_text(node.url, node.tcp_port)


async def test_a_recall_hides_the_text_on_postgresql(cluster: Cluster) -> None:
    (n1,) = cluster.start("n1")
    await a_recall_hides_the_text(n1.url, n1.tcp_port)


async def a_recall_hides_the_text(url: str, tcp_port: int) -> None:
    alice, bob = await register(url, "alice"), await register(url, "bob")
    async with await PicaConnection.open(url, alice.token, transport="tcp", tcp_port=tcp_port) as a:
        sent = await a.send(bob.user_id, {"text": "papaya plan"})
        conversation_id = sent.conversation_id
        for text in ("guava plan", "mango plan"):
            await a.request(f.Edit(conversation_id=conversation_id, seq=sent.seq, text=text,
                                   client_msg_id=uuid.uuid4().hex))
        kept = await a.send(bob.user_id, {"text": "kiwi plan"})
        await a.request(f.Recall(conversation_id=conversation_id, seq=sent.seq, client_msg_id=uuid.uuid4().hex))
    expected = [{"recalled": True}, {"edit": {"seq": 1, "recalled": True}}, {"edit": {"seq": 1, "recalled": True}},
                {"text": "kiwi plan"}, {"recall": {"seq": 1}}]
    for reader in (alice, bob):
        async with PicaHttp(url, token=reader.token) as http:
            page = await http.request("GET", f"/v1/conversations/{conversation_id}/messages")
            assert [m["body"] for m in page["messages"]] == expected
            for word in ("papaya", "guava", "mango"):
                assert (await http.request("GET", "/v1/search", params={"q": word}))["messages"] == []
            found = await http.request("GET", "/v1/search", params={"q": "plan"})
            assert [m["seq"] for m in found["messages"]] == [kept.seq]
        async with await PicaConnection.open(url, reader.token, transport="ws", device="new") as fresh:
            assert [m.body for m in await fresh.sync_all() if m.conversation_id == conversation_id] == expected


async def test_an_offline_member_learns_of_their_removal_on_the_embedded_store(node: Node) -> None:
    await an_offline_member_learns_of_their_removal(node.url, node.tcp_port)


async def test_an_offline_member_learns_of_their_removal_on_postgresql(cluster: Cluster) -> None:
    (n1,) = cluster.start("n1")
    await an_offline_member_learns_of_their_removal(n1.url, n1.tcp_port)


async def an_offline_member_learns_of_their_removal(url: str, tcp_port: int) -> None:
    owner, bob = await register(url, "owner"), await register(url, "bob")
    async with PicaHttp(url, token=owner.token) as http:
        group = await http.request("POST", "/v1/groups", json={"name": "book club", "members": [bob.user_id]})
        gid, cid = group["group_id"], group["conversation_id"]
    async with await PicaConnection.open(url, bob.token, transport="tcp", tcp_port=tcp_port) as b:
        seen = {m.conversation_id: m.seq for m in await b.sync_all()}  # bob's device holds the group up to here
    async with PicaHttp(url, token=owner.token) as http:  # while bob is offline
        await http.request("DELETE", f"/v1/groups/{gid}/members/{bob.user_id}")
    async with await PicaConnection.open(url, bob.token, transport="ws") as b:
        synced = (await b.sync(seen)).msgs
    assert [(m.conversation_id, m.sender, m.body) for m in synced] == [
        (f"u:{bob.user_id}", owner.user_id, {"system": {"event": "removed_from_group", "group_id": gid,
                                                        "conversation_id": cid, "name": "book club",
                                                        "by": owner.user_id, "seq": 2}})]


async def test_a_synced_message_is_the_live_one_byte_for_byte_on_the_embedded_store(node: Node) -> None:
    await a_synced_message_is_the_live_one_byte_for_byte(node.url, node.tcp_port)


async def test_a_synced_message_is_the_live_one_byte_for_byte_on_postgresql(cluster: Cluster) -> None:
    (n1,) = cluster.start("n1")
    await a_synced_message_is_the_live_one_byte_for_byte(n1.url, n1.tcp_port)


# Escapes JSON must write (quote, backslash, control characters), ones it may (solidus, U+2028), non-ASCII in and
# beyond the BMP, nesting, every JSON type, numbers at the edges the server accepts.
ODD_BODY: Any = {"custom": {"s": "quote \" back \\ slash / nl \n tab \t bell \u0007 ls \u2028 é 中文 😀",
                            "nested": [{"a": [1, -2.5, 1e-7, 2**53 - 1, -(2**53 - 1)]}, {"b": None, "c": True}],
                            "empty": {}, "list": [], "zero": 0.0},
                 "type": "odd", "text_like": "\u00e9 stays a string"}


class _Head(msgspec.Struct):
    t: str


class _RawSynced(msgspec.Struct):
    """A ``synced`` frame whose messages are kept as the bytes the server wrote."""

    msgs: list[msgspec.Raw]
    more: bool


class _RawWire:
    """A reader's raw socket: frames as the server wrote them, not decoded (TCP MessagePack or WebSocket JSON)."""

    def __init__(self, encoding: Encoding) -> None:
        self.encoding = encoding
        self._frames: list[bytes] = []
        self._reader = FrameReader(1 << 24)
        self._tcp: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def open(self, url: str, tcp_port: int, token: str) -> None:
        if self.encoding is Encoding.MSGPACK:
            self._tcp = await asyncio.open_connection("127.0.0.1", tcp_port)
        else:
            self._session = aiohttp.ClientSession()
            self._ws = await self._session.ws_connect(url.replace("http://", "ws://") + "/v1/ws")
        await self.write(f.Auth(token=token, device="raw"))
        assert (await self.next("ready"))[0] == "ready"

    async def write(self, frame: Any) -> None:
        if self._tcp is not None:
            self._tcp[1].write(frame_bytes(encode(frame, Encoding.MSGPACK)))
        else:
            assert self._ws is not None
            await self._ws.send_str(encode(frame, Encoding.JSON).decode())

    async def _read(self) -> bytes:
        if self._tcp is not None:
            while not self._frames:
                data = await self._tcp[0].read(1 << 16)
                assert data, "the server closed the connection"
                self._frames.extend(self._reader.feed(data))
            return self._frames.pop(0)
        assert self._ws is not None
        message = await self._ws.receive()
        assert message.type is aiohttp.WSMsgType.TEXT, message
        return str(message.data).encode()

    def decode(self, payload: bytes, kind: type[Any]) -> Any:
        if self.encoding is Encoding.MSGPACK:
            return msgspec.msgpack.decode(payload, type=kind)
        return msgspec.json.decode(payload, type=kind)

    async def next(self, *kinds: str) -> tuple[str, bytes]:
        """The next frame of one of these types (others, such as presence, are skipped), and its payload."""
        async with asyncio.timeout(WAIT):
            while True:
                payload = await self._read()
                kind = self.decode(payload, _Head).t
                if kind in kinds:
                    return kind, payload

    async def close(self) -> None:
        if self._tcp is not None:
            self._tcp[1].close()
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()


async def a_synced_message_is_the_live_one_byte_for_byte(url: str, tcp_port: int) -> None:
    alice, bob = await register(url, "alice"), await register(url, "bob")
    wires = [_RawWire(Encoding.MSGPACK), _RawWire(Encoding.JSON)]
    try:
        for wire in wires:
            await wire.open(url, tcp_port, bob.token)
        async with await PicaConnection.open(url, alice.token, transport="tcp", tcp_port=tcp_port) as a:
            bodies = [ODD_BODY, {"text": "to be deleted by bob"}, {"text": "to be recalled"}, {"text": "plain"}]
            sent = [await a.send(bob.user_id, body) for body in bodies]
            live = {wire.encoding: [(await wire.next("msg"))[1] for _ in bodies] for wire in wires}
            conversation_id = sent[0].conversation_id
            await a.request(f.Recall(conversation_id=conversation_id, seq=sent[2].seq, client_msg_id=uuid.uuid4().hex))
        for wire in wires:
            live[wire.encoding].append((await wire.next("msg"))[1])  # the recall event
        async with await PicaConnection.open(url, bob.token, transport="ws") as b:
            await b.request(f.Delete(conversation_id=conversation_id, seq=sent[1].seq))
        for wire in wires:
            await wire.next("msg")  # the deletion notice in bob's own timeline
            # The bytes pushed live for the untouched messages: the first the odd body exactly as encoded.
            first, last = live[wire.encoding][0], live[wire.encoding][3]
            body_bytes = encode_value(ODD_BODY, wire.encoding)
            assert body_bytes in first
            deleted = live[wire.encoding][1].replace(encode_value(bodies[1], wire.encoding),
                                                     encode_value({"deleted": True}, wire.encoding))
            recalled = live[wire.encoding][2].replace(encode_value(bodies[2], wire.encoding),
                                                      encode_value({"recalled": True}, wire.encoding))
            expected = [first, deleted, recalled, last, live[wire.encoding][4]]
            for stream in (False, True):
                await wire.write(f.Sync(cursors={}, limit=2, id=7, stream=stream))
                got: list[bytes] = []
                cursors: dict[str, int] = {}
                while True:
                    page = wire.decode((await wire.next("synced"))[1], _RawSynced)
                    for raw in page.msgs:
                        msg = wire.decode(raw, f.Msg)
                        cursors[msg.conversation_id] = msg.seq
                        if msg.conversation_id == conversation_id:
                            got.append(bytes(raw))
                    if not page.more:
                        break
                    if not stream:
                        await wire.write(f.Sync(cursors=cursors, limit=2, id=7))
                assert got == expected, (wire.encoding, stream)
    finally:
        for wire in wires:
            await wire.close()
