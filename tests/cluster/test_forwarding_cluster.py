"""Forwarding, pins and drafts in a cluster on PostgreSQL (docs/protocol.md section 29): a user's two devices on two
nodes, the copies, the pin notices and the ``conversation`` frame crossing the bus."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from pica.client import PicaConnection, PicaHttp
from pica.protocol import frames as f
from tests.cluster.conftest import Cluster, register

pytestmark = [pytest.mark.timeout(90)]

WAIT = 10.0


async def pushed(conn: PicaConnection, kind: type[Any], conversation_id: str) -> Any:
    async with asyncio.timeout(WAIT):
        while True:
            event = await conn.events.get()
            if isinstance(event, kind) and event.conversation_id == conversation_id:
                return event


async def test_forward_pin_and_draft_reach_devices_on_another_node(cluster: Cluster) -> None:
    n1, n2 = cluster.start("n1", "n2")
    alice, bob, carol = (await register(n1.url, "alice"), await register(n1.url, "bob"),
                         await register(n1.url, "carol"))
    async with PicaHttp(n1.url, token=bob.token) as http:
        said = await http.send(alice.user_id, uuid.uuid4().hex, {"text": "the key is under the mat"})
    source = said["conversation_id"]
    async with await PicaConnection.open(n2.url, alice.token, transport="tcp", tcp_port=n2.tcp_port,
                                         device="laptop") as laptop, \
            await PicaConnection.open(n2.url, carol.token, transport="ws") as carol_phone:
        async with PicaHttp(n1.url, token=alice.token) as http:  # alice acts through the other node
            answer = await http.request("POST", "/v1/forward", json={
                "conversation_id": source, "seqs": [said["seq"]], "to": [carol.user_id],
                "client_msg_id": uuid.uuid4().hex})
            (copy,) = answer["copies"]
            pin = await http.request("PUT", f"/v1/conversations/{source}/pins/{said['seq']}")
            await http.request("PUT", f"/v1/conversations/{source}/draft", json={"text": "thanks! I'll"})
        got = await pushed(carol_phone, f.Msg, copy["ack"]["conversation_id"])
        assert got.body == {"text": "the key is under the mat",
                            "forwarded": {"sender": bob.user_id, "ts": said["ts"]}}
        notice = await pushed(laptop, f.Msg, source)
        assert notice.seq == pin["notice"]["seq"] and notice.body["system"]["event"] == "pinned"
        state = await pushed(laptop, f.ConversationState, source)
        assert state.draft == "thanks! I'll"
    async with PicaHttp(n2.url, token=bob.token) as http:
        pins = (await http.request("GET", f"/v1/conversations/{source}/pins"))["pins"]
        assert [p["message"]["seq"] for p in pins] == [said["seq"]]
